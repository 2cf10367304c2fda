using System.Diagnostics;
using System.Globalization;
using LLama.Native;
using ModelSmith.Formats;
using ModelSmith.Interop.Tests;
using ModelSmith.Quantization;
using Spectre.Console;

namespace ModelSmith.Bench;

/// <summary>
/// Whole-file quantization time, ours (<see cref="ModelQuantizer.Quantize"/>, the path `smith quantize`
/// takes) against llama.cpp's llama_model_quantize with llama-quantize's defaults, on the same input at the
/// same thread count. Each (type, threads) pair gets one untimed run of each quantizer, then
/// <c>reps</c> timed runs with the two alternating so that a burst of load on the machine hits both.
/// The last outputs are compared byte for byte: whole file, and the fraction of tensor bytes that agree.
/// </summary>
internal static class QuantizeBench
{
    internal sealed record Result(
        QuantFileType Type,
        int Threads,
        double OursMin,
        double OursMedian,
        double LlamaMin,
        double LlamaMedian,
        long OursBytes,
        long LlamaBytes,
        bool Identical,
        double SameTensorBytes);

    public static void Run(Options options)
    {
        string? model = options.Positional;
        int[] threads = options.Threads;
        int reps = options.Int("reps", 3);
        string typeList = options.String("types", "q8_0,q4_0,q4_k_m,q6_k");
        var sourceType = options.Choice("source", "f32", ["f32", "f16"]) == "f16" ? GgmlType.F16 : GgmlType.F32;
        options.ThrowOnUnused();
        QuantFileType[] types = ParseTypes(typeList);
        if (model is not null && !File.Exists(model))
        {
            throw new UsageException($"model '{model}' does not exist.");
        }

        string dir = Path.Combine(Path.GetTempPath(), $"modelsmith-qbench-{Environment.ProcessId}");
        Directory.CreateDirectory(dir);
        try
        {
            string input = model ?? Synthesize(dir, sourceType);
            var results = new List<Result>();
            foreach (QuantFileType type in types)
            {
                foreach (int t in threads)
                {
                    results.Add(Measure(input, dir, type, t, reps));
                }
            }
            AnsiConsole.Write(Table(Path.GetFileName(model) ?? $"synthetic 100M Llama ({sourceType})", reps, results));
            AnsiConsole.MarkupLine("[grey]times: whole file, open to closed output, min / median seconds. ratio: llama.cpp median ÷ ours median " +
                "(above 1 means ours is faster; min ratio in brackets). same tensor bytes: bytes equal at the same offset of the same tensor in both files (100% when the files are identical).[/]");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static string Synthesize(string dir, GgmlType sourceType)
    {
        var config = new ModelSmith.Models.ModelConfig
        {
            Architecture = ModelSmith.Models.ModelArchitecture.Llama,
            VocabSize = 32000,
            ContextLength = 1024,
            EmbeddingLength = 768,
            BlockCount = 12,
            FeedForwardLength = 2048,
            HeadCount = 12,
            KvHeadCount = 4,
            HeadDim = 64,
            RopeDims = 64,
            NormEpsilon = 1e-5f,
            TiedOutput = true,
        };
        string path = Path.Combine(dir, $"llama100m-{sourceType.ToString().ToLowerInvariant()}.gguf");
        ModelSmith.Models.SyntheticModel.Write(path, config, sourceType, seed: 100);
        AnsiConsole.MarkupLine($"[grey]input: {config.ParameterCount:N0} parameters, {sourceType}, {new FileInfo(path).Length:N0} bytes[/]");
        return path;
    }

    private static Result Measure(string input, string dir, QuantFileType type, int threads, int reps)
    {
        string ours = Path.Combine(dir, $"ours-{type}-{threads}.gguf");
        string theirs = Path.Combine(dir, $"llama-{type}-{threads}.gguf");
        var options = new QuantizeOptions { FileType = type, Threads = threads };
        var ftype = (LLamaFtype)(int)type;
        double RunOurs() => Time(() => ModelQuantizer.Quantize(input, ours, options));
        double RunLlama() => Time(() => LlamaCppOracle.Quantize(input, theirs, ftype, threads));

        RunOurs();
        RunLlama();
        var oursSeconds = new double[reps];
        var llamaSeconds = new double[reps];
        for (int r = 0; r < reps; r++)
        {
            // Alternate which goes first so neither always follows the other's page-cache and frequency state.
            if (r % 2 == 0)
            {
                oursSeconds[r] = RunOurs();
                llamaSeconds[r] = RunLlama();
            }
            else
            {
                llamaSeconds[r] = RunLlama();
                oursSeconds[r] = RunOurs();
            }
        }
        var (oursMin, oursMedian) = ModelSmith.Bench.Measure.MinMedian(oursSeconds);
        var (llamaMin, llamaMedian) = ModelSmith.Bench.Measure.MinMedian(llamaSeconds);
        long oursBytes = new FileInfo(ours).Length;
        long llamaBytes = new FileInfo(theirs).Length;
        bool identical = oursBytes == llamaBytes && File.ReadAllBytes(ours).AsSpan().SequenceEqual(File.ReadAllBytes(theirs));
        double same = identical ? 1.0 : SameTensorBytes(ours, theirs);
        File.Delete(ours);
        File.Delete(theirs);
        AnsiConsole.MarkupLine($"[grey]{type} t{threads}: ours {oursMedian:F2} s, llama.cpp {llamaMedian:F2} s[/]");
        return new Result(type, threads, oursMin, oursMedian, llamaMin, llamaMedian, oursBytes, llamaBytes, identical, same);
    }

    private static double Time(Action run)
    {
        long start = Stopwatch.GetTimestamp();
        run();
        return Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    /// <summary>Fraction of tensor bytes (summed over tensors of the same name, type and size) that are equal
    /// position by position; a tensor missing from either file or of a different type or size counts as all different.</summary>
    private static double SameTensorBytes(string oursPath, string theirsPath)
    {
        using GgufFile ours = GgufFile.Open(oursPath);
        using GgufFile theirs = GgufFile.Open(theirsPath);
        long same = 0;
        long total = 0;
        foreach (GgufTensorInfo b in theirs.Tensors)
        {
            ReadOnlySpan<byte> bd = theirs.GetTensorData(b).Span;
            total += bd.Length;
            GgufTensorInfo? a = ours.FindTensor(b.Name);
            if (a is null || a.Type != b.Type)
            {
                continue;
            }
            ReadOnlySpan<byte> ad = ours.GetTensorData(a).Span;
            if (ad.Length != bd.Length)
            {
                continue;
            }
            for (int i = 0; i < bd.Length; i++)
            {
                if (ad[i] == bd[i])
                {
                    same++;
                }
            }
        }
        return total == 0 ? 1.0 : (double)same / total;
    }

    private static QuantFileType[] ParseTypes(string list)
    {
        var parts = list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (parts.Length == 0)
        {
            throw new UsageException("--types: give at least one file type, e.g. q8_0,q4_k_m.");
        }
        var types = new QuantFileType[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!Enum.TryParse(parts[i], ignoreCase: true, out types[i]) || !Enum.IsDefined(types[i]) || int.TryParse(parts[i], out _))
            {
                throw new UsageException($"--types: '{parts[i]}' is not a llama.cpp file type (e.g. q8_0, q4_0, q4_k_m, q6_k).");
            }
        }
        return types;
    }

    private static Table Table(string model, int reps, List<Result> results)
    {
        var table = new Table().Title($"{model}: whole-file quantization, {reps} repetitions after one warm-up");
        table.AddColumns("type", "threads", "ours s min / median", "llama.cpp s min / median", "ratio median (min)",
            "MiB ours / llama.cpp", "identical file", "same tensor bytes");
        foreach (var r in results)
        {
            table.AddRow(
                r.Type.ToString(),
                r.Threads.ToString(CultureInfo.InvariantCulture),
                $"{S(r.OursMin)} / {S(r.OursMedian)}",
                $"{S(r.LlamaMin)} / {S(r.LlamaMedian)}",
                $"{(r.LlamaMedian / r.OursMedian).ToString("F2", CultureInfo.InvariantCulture)} ({(r.LlamaMin / r.OursMin).ToString("F2", CultureInfo.InvariantCulture)})",
                $"{Mib(r.OursBytes)} / {Mib(r.LlamaBytes)}",
                r.Identical ? "yes" : "no",
                r.SameTensorBytes == 1.0 ? "100%" : r.SameTensorBytes.ToString("P3", CultureInfo.InvariantCulture));
        }
        return table;
    }

    private static string Mib(long bytes) => (bytes / (double)(1 << 20)).ToString("F2", CultureInfo.InvariantCulture);

    private static string S(double seconds) => seconds.ToString("F2", CultureInfo.InvariantCulture);
}
