using System.Globalization;
using System.Runtime.Intrinsics;
using ModelSmith.LlamaCpp;
using Spectre.Console;

namespace ModelSmith.Bench;

/// <summary>
/// dotnet run -c Release --project bench/ModelSmith.Bench -- &lt;suite&gt; [options]
///   bandwidth   memory read bandwidth (GB/s)
///   flops       peak FMA throughput (GFLOP/s)
///   llama       prefill (pp) and decode (tg) tokens/s of every registered decoder, side by side
///   train       training step time, tokens/s, MFU and peak memory: full vs LoRA on a 10M Llama
///   quantize    whole-file quantization time, ours vs llama.cpp's llama_model_quantize
/// Exit codes: 0 ok, 1 failed, 2 bad usage.
/// </summary>
internal static class Program
{
    private const string Usage = """
        usage: ModelSmith.Bench <suite> [options]

        suites:
          bandwidth  [--size-mib 1024] [--threads 1,2] [--reps 5]
                     memory read bandwidth: a buffer summed with 512-bit loads
          flops      [--threads 1,2] [--reps 5] [--steps 200000000]
                     peak FP32 FMA throughput, 512- and 256-bit vectors, operands in registers
          llama      [MODEL.gguf] [--threads 1,2] [--reps 5] [--pp 512] [--tg 128] [--rounds 1]
                     [--kv f16|f32] [--fa auto|on|off] [--bandwidth-mib 1024 | --no-bandwidth] [--cpu-time] [--paired]
                     prefill (pp, one batch) and decode (tg, one token per call) tokens/s, llama-bench style;
                     MODEL defaults to models/stories260K.gguf; pp is capped at the model's context;
                     --rounds N repeats the whole comparison N times, the engines' order swapped every other round,
                     and ends with each speed ratio's median and range over the rounds;
                     --cpu-time adds decode t/s by CPU time; --paired times only decode, the two engines
                     alternating token by token, and prints per-repetition speed ratios (for a busy machine)
          train      [--threads 1,2] [--reps 5] [--warmup 2] [--batch 4] [--seq 128] [--ranks 8,16]
                     training steps of a 10.6M-parameter Llama: full vs LoRA (all linear layers) at each rank;
                     step time min/median, tokens/s, MFU against the measured FMA peak, peak RSS
                     (each method and thread count in its own child process)
          quantize   [MODEL.gguf] [--types q8_0,q4_0,q4_k_m,q6_k] [--threads 1,2] [--reps 3] [--source f32|f16]
                     whole-file quantization time, ours vs llama.cpp (llama-quantize's defaults), same threads;
                     MODEL defaults to the synth Llama of about 100M parameters written to a temp file
                     in --source type; outputs are compared byte for byte and deleted

        tools:
          gemv       [--threads 1,2] [--reps 20] [--type f16|f32|bf16|q8_0|q4_0|q4_k|q6_k] [--resident]
                     the decode matvec alone over every linear layer of the 100M Llama (random weights),
                     tokens/s by wall clock and by CPU time per thread, and the weight read rate
          handoff    [--threads 1,2] [--reps 10] [--items 8] [--calls 20000]
                     the compute pool's fixed cost per job: empty jobs back to back, µs per job (best, median,
                     worst of the runs); a decode step issues about ten jobs a layer
          residence  MODEL.gguf [--threads 1] [--reps 20]
                     the decode matvec over the file's own matrices, held as the file's memory map, the
                     private huge-page block a model loads into, and managed arrays, alternating per token
          synth      --out FILE.gguf [--type f32|f16|bf16] [--arch llama|gpt2]
                     writes a random-weight model of about 100M parameters (llama: 12 layers, width 768,
                     12 query / 4 key-value heads, feed-forward 2048, vocabulary 32000, context 1024, tied output)

        examples:
          dotnet run -c Release --project bench/ModelSmith.Bench -- bandwidth
          dotnet run -c Release --project bench/ModelSmith.Bench -- synth --out /tmp/llama100m-f16.gguf --type f16
          dotnet run -c Release --project bench/ModelSmith.Bench -- llama models/stories260K.gguf --reps 10
          dotnet run -c Release --project bench/ModelSmith.Bench -- train --threads 1,2 --reps 5
          dotnet run -c Release --project bench/ModelSmith.Bench -- quantize --types q4_k_m,q6_k --reps 5
        """;

    private static int Main(string[] args)
    {
        try
        {
            if (args.Length == 0 || args[0] is "-h" or "--help")
            {
                Console.WriteLine(Usage);
                return args.Length == 0 ? 2 : 0;
            }
            // Piped output (a log, CI) keeps the tables whole instead of wrapping them at 80 columns.
            if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = Math.Max(AnsiConsole.Profile.Width, 220);
            var options = Options.Parse(args.AsSpan(1));
            switch (args[0])
            {
                case "bandwidth":
                    RunBandwidth(options);
                    break;
                case "flops":
                    RunFlops(options);
                    break;
                case "llama":
                    RunSpeed(options);
                    break;
                case "gemv":
                    GemvBench.Run(options);
                    break;
                case "handoff":
                    HandoffBench.Run(options);
                    break;
                case "residence":
                    ResidenceBench.Run(options);
                    break;
                case "synth":
                    RunSynth(options);
                    break;
                case "train":
                    TrainBench.Run(options);
                    break;
                case "quantize":
                    QuantizeBench.Run(options);
                    break;
                case "train-step":
                    TrainBench.RunStep(options);
                    return 0;
                default:
                    throw new UsageException($"unknown suite '{args[0]}' (expected bandwidth, flops, gemv, handoff, llama, quantize, residence, synth or train).");
            }
            AnsiConsole.MarkupLine($"[grey]{Markup.Escape(MachineLine())}[/]");
            return 0;
        }
        catch (UsageException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            Console.Error.WriteLine(Usage);
            return 2;
        }
        catch (Exception e) when (e is IOException or InvalidDataException or InvalidOperationException or PlatformNotSupportedException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }

    private static void RunBandwidth(Options options)
    {
        int[] threads = options.Threads;
        int reps = options.Int("reps", 5);
        long bytes = options.Int("size-mib", 1024) * (1L << 20);
        options.ThrowOnUnused();
        var table = new Table().Title($"memory read bandwidth, {bytes >> 20} MiB summed with Vector512 loads, {reps} runs");
        table.AddColumns("threads", "best GB/s", "median GB/s", "min GB/s");
        using var buffer = new Bandwidth(bytes);
        foreach (int t in threads)
        {
            var (best, median, worst) = Repeat(reps, () => buffer.Run(t), warmUp: true);
            table.AddRow(t.ToString(CultureInfo.InvariantCulture), Gb(best), Gb(median), Gb(worst));
        }
        AnsiConsole.Write(table);
    }

    private static void RunFlops(Options options)
    {
        int[] threads = options.Threads;
        int reps = options.Int("reps", 5);
        long steps = options.Int("steps", 200_000_000);
        options.ThrowOnUnused();
        var table = new Table().Title($"peak FP32 FMA throughput, 12 independent accumulators, {steps:N0} steps, {reps} runs");
        table.AddColumns("vector", "threads", "best GFLOP/s", "median GFLOP/s", "GFLOP/s per thread");
        int[] widths = Vector512.IsHardwareAccelerated ? [512, 256] : [256];
        foreach (int bits in widths)
        {
            foreach (int t in threads)
            {
                var (best, median, _) = Repeat(reps, () => Flops.Run(t, bits, steps), warmUp: true);
                table.AddRow($"Vector{bits}", t.ToString(CultureInfo.InvariantCulture),
                    (best / 1e9).ToString("F1", CultureInfo.InvariantCulture),
                    (median / 1e9).ToString("F1", CultureInfo.InvariantCulture),
                    (best / 1e9 / t).ToString("F1", CultureInfo.InvariantCulture));
            }
        }
        AnsiConsole.Write(table);
    }

    private static void RunSynth(Options options)
    {
        string output = options.String("out", "");
        if (output.Length == 0) throw new UsageException("synth needs --out FILE.gguf.");
        var type = options.Choice("type", "f32", ["f32", "f16", "bf16"]) switch
        {
            "f16" => ModelSmith.Formats.GgmlType.F16,
            "bf16" => ModelSmith.Formats.GgmlType.BF16,
            _ => ModelSmith.Formats.GgmlType.F32,
        };
        bool gpt2 = options.Choice("arch", "llama", ["llama", "gpt2"]) == "gpt2";
        options.ThrowOnUnused();
        var config = new ModelSmith.Models.ModelConfig
        {
            Architecture = gpt2 ? ModelSmith.Models.ModelArchitecture.Gpt2 : ModelSmith.Models.ModelArchitecture.Llama,
            VocabSize = 32000,
            ContextLength = 1024,
            EmbeddingLength = 768,
            BlockCount = 12,
            FeedForwardLength = gpt2 ? 3072 : 2048,
            HeadCount = 12,
            KvHeadCount = gpt2 ? 12 : 4,
            HeadDim = 64,
            RopeDims = 64,
            NormEpsilon = 1e-5f,
            TiedOutput = true,
        };
        ModelSmith.Models.SyntheticModel.Write(output, config, type, seed: 100);
        AnsiConsole.MarkupLine($"wrote {Markup.Escape(output)}: {config.ParameterCount:N0} parameters, {type}, {new FileInfo(output).Length:N0} bytes");
    }

    private static void RunSpeed(Options options)
    {
        string model = options.Positional ?? DefaultModel();
        if (!File.Exists(model))
        {
            throw new UsageException($"model '{model}' does not exist.");
        }
        int[] threads = options.Threads;
        int reps = options.Int("reps", 5);
        int ppRequested = options.Int("pp", 512);
        int tg = options.Int("tg", 128);
        bool f32Kv = options.Choice("kv", "f16", ["f16", "f32"]) == "f32";
        bool? flash = options.Choice("fa", "auto", ["auto", "on", "off"]) switch { "on" => true, "off" => false, _ => null };
        bool measureBandwidth = !options.Flag("no-bandwidth");
        bool cpuTime = options.Flag("cpu-time");
        bool paired = options.Flag("paired");
        int roundCount = options.Int("rounds", 1);
        long bandwidthBytes = options.Int("bandwidth-mib", 1024) * (1L << 20);
        options.ThrowOnUnused();
        if (ppRequested < 1 || tg < 1)
        {
            throw new UsageException("--pp and --tg must be at least 1.");
        }
        if (roundCount < 1)
        {
            throw new UsageException("--rounds must be at least 1.");
        }

        int trainContext;
        using (var probe = new LlamaCppModel(model))
        {
            trainContext = probe.TrainContextSize;
        }
        int pp = Math.Min(ppRequested, trainContext);
        if (tg > trainContext)
        {
            throw new UsageException($"--tg {tg} exceeds the model's context of {trainContext} tokens.");
        }
        // Each decoder gets a context as llama-bench sizes it: room for the longer of the two tests.
        int context = Math.Max(pp, tg);
        var decoders = new List<DecoderFactory>
        {
            (path, t) => new LlamaCppDecoder(path, t, context, f32Kv, flash),
            (path, t) => new ModelSmithDecoder(path, t, context),
        };

        var bandwidth = new Dictionary<int, double>();
        if (measureBandwidth)
        {
            using var buffer = new Bandwidth(bandwidthBytes);
            foreach (int t in threads)
            {
                bandwidth[t] = Repeat(3, () => buffer.Run(t), warmUp: true).Best;
            }
        }

        if (paired)
        {
            RunPaired(model, threads, context, tg, reps, decoders);
            return;
        }

        var rounds = new List<List<SpeedBench.Result>>();
        for (int round = 0; round < roundCount; round++)
        {
            // Odd rounds run the engines in the opposite order, so a machine that speeds up or slows down
            // during a round favours neither.
            var results = new List<SpeedBench.Result>();
            foreach (int t in threads)
            {
                var byIndex = new SpeedBench.Result[decoders.Count];
                for (int i = 0; i < decoders.Count; i++)
                {
                    int d = round % 2 == 0 ? i : decoders.Count - 1 - i;
                    using var decoder = decoders[d](model, t);
                    byIndex[d] = SpeedBench.Run(decoder, t, pp, tg, reps, seed: 1234);
                }
                results.AddRange(byIndex);
            }
            rounds.Add(results);
            string title = roundCount > 1 ? $"round {round + 1} of {roundCount}, " : "";
            AnsiConsole.Write(SpeedTable(title + Path.GetFileName(model), pp, tg, reps, threads, results, bandwidth, cpuTime));
        }
        if (roundCount > 1)
        {
            AnsiConsole.Write(RoundsTable(Path.GetFileName(model), pp, tg, threads, rounds));
        }
        var first = rounds[0];
        foreach (var name in first.Select(r => r.Decoder).Distinct())
        {
            AnsiConsole.MarkupLine($"[grey]{Markup.Escape(name)}: {Markup.Escape(first.First(r => r.Decoder == name).Settings)}[/]");
        }
        AnsiConsole.MarkupLine("[grey]t/s cells: median (best) over the repetitions. bytes/token: weights + KV cache read per decode step, " +
            "averaged over the tg positions. BW share: bytes/token × median tg t/s ÷ best measured read bandwidth at that thread count " +
            "(above 100% means the working set lives in cache)." +
            (cpuTime ? " t/cpu-s: decode tokens per second of process CPU time per thread (threads × tokens ÷ CPU seconds), " +
                "steadier than the wall clock on a busy machine; it counts spin-waiting as work." : "") + "[/]");
    }

    /// <summary>ModelSmith's decode against llama.cpp's in alternating repetitions (see <see cref="PairedDecodeBench"/>).</summary>
    private static void RunPaired(string model, int[] threads, int context, int tg, int reps, List<DecoderFactory> decoders)
    {
        var table = new Table().Title($"{Path.GetFileName(model)}: tg{tg}, ModelSmith and llama.cpp alternating per token, {reps} repetitions after one warm-up");
        table.AddColumn("threads");
        table.AddColumn("t/cpu-s llama.cpp median (best)");
        table.AddColumn("t/cpu-s ModelSmith median (best)");
        table.AddColumn("speed ModelSmith/llama.cpp by CPU time: median (min..max)");
        table.AddColumn("by wall clock: median (min..max)");
        foreach (int t in threads)
        {
            using var reference = decoders[0](model, t);
            using var ours = decoders[1](model, t);
            var r = PairedDecodeBench.Run(reference, ours, t, tg, reps, seed: 1234);
            var (cpuMin, cpuMedian) = Measure.MinMedian(r.CpuRatios);
            var (wallMin, wallMedian) = Measure.MinMedian(r.WallRatios);
            var (_, refMedian) = Measure.MinMedian(r.FirstCpuTps);
            var (_, oursMedian) = Measure.MinMedian(r.SecondCpuTps);
            table.AddRow(
                t.ToString(CultureInfo.InvariantCulture),
                $"{Tps(refMedian)} ({Tps(r.FirstCpuTps.Max())})",
                $"{Tps(oursMedian)} ({Tps(r.SecondCpuTps.Max())})",
                $"{cpuMedian:F2} ({cpuMin:F2}..{r.CpuRatios.Max():F2})",
                $"{wallMedian:F2} ({wallMin:F2}..{r.WallRatios.Max():F2})");
        }
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine("[grey]Each repetition decodes the same tg tokens with both engines from empty caches, alternating token by token; a ratio " +
            "above 1 means ModelSmith is faster. t/cpu-s: threads × tokens ÷ process CPU seconds.[/]");
    }

    /// <summary>
    /// The speed ratios of every decoder against the first (llama.cpp) over the rounds, each round's ratio
    /// taken from its two medians: on a machine whose memory speed drifts over minutes, the ratio of two runs
    /// made seconds apart is far steadier than either speed.
    /// </summary>
    private static Table RoundsTable(string model, int pp, int tg, int[] threads, List<List<SpeedBench.Result>> rounds)
    {
        var names = rounds[0].Select(r => r.Decoder).Distinct().ToList();
        var table = new Table().Title($"{model}: ratios over {rounds.Count} rounds, median (min..max)");
        table.AddColumn("threads");
        foreach (var name in names.Skip(1))
        {
            table.AddColumn($"pp{pp} {name}/{names[0]}");
            table.AddColumn($"tg{tg} {name}/{names[0]}");
        }
        foreach (int t in threads)
        {
            var row = new List<string> { t.ToString(CultureInfo.InvariantCulture) };
            foreach (var name in names.Skip(1))
            {
                var pps = new double[rounds.Count];
                var tgs = new double[rounds.Count];
                for (int r = 0; r < rounds.Count; r++)
                {
                    var reference = rounds[r].First(x => x.Threads == t && x.Decoder == names[0]);
                    var other = rounds[r].First(x => x.Threads == t && x.Decoder == name);
                    pps[r] = other.PpMedian / reference.PpMedian;
                    tgs[r] = other.TgMedian / reference.TgMedian;
                }
                row.Add(Spread(pps));
                row.Add(Spread(tgs));
            }
            table.AddRow(row.ToArray());
        }
        return table;

        static string Spread(double[] values)
        {
            var (min, median) = Measure.MinMedian(values);
            return string.Create(CultureInfo.InvariantCulture, $"{median:F2} ({min:F2}..{values.Max():F2})");
        }
    }

    /// <summary>One row per thread count; per decoder pp and tg cells, ratio columns against the first
    /// decoder (llama.cpp) for every other one, and the decode bytes/token and bandwidth share.</summary>
    private static Table SpeedTable(string model, int pp, int tg, int reps, int[] threads, List<SpeedBench.Result> results, Dictionary<int, double> bandwidth, bool cpuTime)
    {
        var names = results.Select(r => r.Decoder).Distinct().ToList();
        var table = new Table().Title($"{model}: pp{pp} / tg{tg}, {reps} repetitions after warm-up");
        table.AddColumn("threads");
        foreach (var name in names)
        {
            table.AddColumn($"pp{pp} t/s {name}");
            table.AddColumn($"tg{tg} t/s {name}");
        }
        foreach (var name in names.Skip(1))
        {
            table.AddColumn($"pp {name}/{names[0]}");
            table.AddColumn($"tg {name}/{names[0]}");
        }
        if (cpuTime)
        {
            foreach (var name in names)
            {
                table.AddColumn($"tg{tg} t/cpu-s {name}");
            }
            foreach (var name in names.Skip(1))
            {
                table.AddColumn($"tg cpu {name}/{names[0]}");
            }
        }
        foreach (var name in names)
        {
            table.AddColumn($"bytes/token {name}");
            if (bandwidth.Count > 0)
            {
                table.AddColumn($"BW share {name}");
            }
        }
        if (bandwidth.Count > 0)
        {
            table.AddColumn("read GB/s");
        }
        foreach (int t in threads)
        {
            var row = new List<string> { t.ToString(CultureInfo.InvariantCulture) };
            var byName = results.Where(r => r.Threads == t).ToDictionary(r => r.Decoder);
            foreach (var name in names)
            {
                var r = byName[name];
                row.Add($"{Tps(r.PpMedian)} ({Tps(r.PpBest)})");
                row.Add($"{Tps(r.TgMedian)} ({Tps(r.TgBest)})");
            }
            var reference = byName[names[0]];
            foreach (var name in names.Skip(1))
            {
                row.Add((byName[name].PpMedian / reference.PpMedian).ToString("F2", CultureInfo.InvariantCulture));
                row.Add((byName[name].TgMedian / reference.TgMedian).ToString("F2", CultureInfo.InvariantCulture));
            }
            if (cpuTime)
            {
                foreach (var name in names)
                {
                    row.Add($"{Tps(byName[name].TgCpuMedian)} ({Tps(byName[name].TgCpuBest)})");
                }
                foreach (var name in names.Skip(1))
                {
                    row.Add((byName[name].TgCpuMedian / reference.TgCpuMedian).ToString("F2", CultureInfo.InvariantCulture));
                }
            }
            foreach (var name in names)
            {
                var r = byName[name];
                row.Add(Bytes(r.DecodeBytesPerToken));
                if (bandwidth.Count > 0)
                {
                    row.Add((r.DecodeBytesPerToken * r.TgMedian / bandwidth[t]).ToString("P0", CultureInfo.InvariantCulture));
                }
            }
            if (bandwidth.Count > 0)
            {
                row.Add(Gb(bandwidth[t]));
            }
            table.AddRow(row.ToArray());
        }
        return table;
    }

    /// <summary>Runs <paramref name="run"/> (which returns a rate) <paramref name="reps"/> times after an
    /// optional untimed warm-up; returns the best, median and worst rate.</summary>
    private static (double Best, double Median, double Worst) Repeat(int reps, Func<double> run, bool warmUp)
    {
        if (reps < 1)
        {
            throw new UsageException("--reps must be at least 1.");
        }
        if (warmUp)
        {
            run();
        }
        var rates = new double[reps];
        for (int i = 0; i < reps; i++)
        {
            rates[i] = run();
        }
        var (worst, median) = Measure.MinMedian(rates);
        return (rates.Max(), median, worst);
    }

    /// <summary>CPU count and, on Linux, the 1-minute load average: other processes on the same cores
    /// are the usual reason two runs disagree.</summary>
    private static string MachineLine()
    {
        string load = File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Split(' ')[0] : "n/a";
        return $"machine: {Environment.ProcessorCount} logical CPUs, Vector512 {(Vector512.IsHardwareAccelerated ? "on" : "off")}, load average (1 min) {load}";
    }

    private static string DefaultModel()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "ModelSmith.sln")))
            {
                return Path.Combine(dir.FullName, "models", "stories260K.gguf");
            }
        }
        throw new UsageException("no MODEL.gguf given and no ModelSmith.sln above the benchmark binaries to find models/stories260K.gguf.");
    }

    private static string Gb(double bytesPerSecond) => (bytesPerSecond / 1e9).ToString("F1", CultureInfo.InvariantCulture);

    private static string Tps(double tokensPerSecond) => tokensPerSecond.ToString(tokensPerSecond >= 100 ? "F0" : "F1", CultureInfo.InvariantCulture);

    private static string Bytes(double bytes) => bytes >= 1 << 20
        ? (bytes / (1 << 20)).ToString("F2", CultureInfo.InvariantCulture) + " MiB"
        : (bytes / 1024).ToString("F1", CultureInfo.InvariantCulture) + " KiB";
}
