using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using ModelSmith.Evaluation;
using ModelSmith.Models;
using ModelSmith.Registry;
using ModelSmith.Tokenization;
using Spectre.Console;

namespace ModelSmith.Cli.Commands;

/// <summary>`smith bench MODEL`: prefill and decode tokens/s with llama-bench's conventions, load time, size, peak memory.</summary>
internal static class BenchCommand
{
    /// <summary>Where the side-by-side comparison with llama.cpp lives (the CLI does not load llama.cpp).</summary>
    public const string LlamaCppComparison = "dotnet run -c Release --project bench/ModelSmith.Bench -- llama MODEL";

    public static Command Create()
    {
        var model = new Argument<FileInfo>("model") { Description = "The GGUF model to time (llama or gpt2)." };
        var prompt = new Option<int>("--pp", "-p") { Description = "Prompt tokens processed in one batch (0 skips the prefill test).", DefaultValueFactory = _ => 512 };
        var generate = new Option<int>("--tg", "-n") { Description = "Tokens generated one at a time (0 skips the decode test).", DefaultValueFactory = _ => 128 };
        var reps = new Option<int>("--reps", "-r") { Description = "Timed repetitions of each test (after untimed warm-up runs until the runtime stops recompiling, at most 1 s).", DefaultValueFactory = _ => 5 };
        var threads = new Option<int>("--threads", "-t") { Description = "Threads (default: all cores).", DefaultValueFactory = _ => Environment.ProcessorCount };
        var json = new Option<bool>("--json") { Description = "Print the results as JSON (no progress bar)." };
        var noRecord = new Option<bool>("--no-record") { Description = "Do not record the results in the workspace's registry." };
        var workspace = WorkspaceOption.Create();
        var vsLlamaCpp = new Option<bool>("--vs-llama-cpp") { Description = $"Not part of smith, which never loads llama.cpp; the side-by-side comparison is `{LlamaCppComparison}`." };
        var command = new Command("bench", $"""
            Time a model as llama-bench does: prefill (pp) decodes --pp random tokens in one batch (BOS first when the
            vocabulary adds one), decode (tg) runs --tg single-token forward passes; each test runs untimed until the
            .NET runtime stops recompiling hot code (at most 1 s), then --reps times from an empty cache, and reports
            the mean and standard deviation of tokens per second.
            Also reports the load time, the file size and the process's peak resident memory.
            The results are recorded in the workspace's registry with this machine (a model not registered yet is
            registered as a base model); --no-record skips that.

            Examples:
              smith bench model.gguf
              smith bench model-q4_k_m.gguf --pp 256 --tg 64 --reps 10 --threads 2
              smith bench model.gguf --tg 0 --json                  (prefill only)

            Against llama.cpp on the same file (LLamaSharp is used only by the benchmark project):
              {LlamaCppComparison}

            Exit codes: 0 done, 1 the model cannot be run (the message says why), 2 bad usage.
            """)
        {
            model, prompt, generate, reps, threads, json, vsLlamaCpp, noRecord, workspace,
        };
        command.SetAction(parse => Run(
            parse.GetValue(model)!, parse.GetValue(prompt), parse.GetValue(generate), parse.GetValue(reps), parse.GetValue(threads),
            parse.GetValue(json), parse.GetValue(vsLlamaCpp), parse.GetValue(noRecord) ? null : Workspace.ResolveRoot(parse.GetValue(workspace))));
        return command;
    }

    private static int Run(FileInfo modelFile, int prompt, int generate, int reps, int threads, bool json, bool vsLlamaCpp, string? workspacePath)
    {
        if (vsLlamaCpp)
        {
            throw new UsageException($"--vs-llama-cpp is not part of smith (the CLI never loads llama.cpp). The side-by-side comparison with llama.cpp lives in bench/ModelSmith.Bench; from the repository root run: {LlamaCppComparison.Replace("MODEL", modelFile.ToString(), StringComparison.Ordinal)}");
        }
        if (prompt < 0) throw new UsageException($"--pp {prompt} must be 0 or more.");
        if (generate < 0) throw new UsageException($"--tg {generate} must be 0 or more.");
        if (prompt == 0 && generate == 0) throw new UsageException("--pp 0 and --tg 0 leave nothing to time; give at least one of them.");
        if (reps < 1) throw new UsageException($"--reps {reps} must be at least 1.");
        if (threads < 1) throw new UsageException($"--threads {threads} must be at least 1.");
        if (!modelFile.Exists) throw new FileNotFoundException($"Model '{modelFile.FullName}' does not exist.", modelFile.FullName);

        long loadStart = Stopwatch.GetTimestamp();
        LanguageModel lm;
        try
        {
            lm = LanguageModel.Load(modelFile.FullName, threads);
        }
        catch (NotSupportedException e)
        {
            return Fail($"{modelFile}: {e.Message}");
        }
        TimeSpan loadTime = Stopwatch.GetElapsedTime(loadStart);
        using (lm)
        {
            int longest = Math.Max(prompt, generate);
            if (lm.Config.Architecture == ModelArchitecture.Gpt2 && longest > lm.Config.ContextLength)
                throw new UsageException($"GPT-2 has learned positions for {lm.Config.ContextLength} tokens; use --pp and --tg of at most {lm.Config.ContextLength}.");
            int firstToken = -1;
            if (lm.File!.HasKey(GgufTokenizer.TokensKey))
            {
                try
                {
                    Tokenizer tokenizer = GgufTokenizer.Load(lm.File);
                    firstToken = tokenizer.AddBos ? tokenizer.Bos : -1;
                }
                catch (Exception e) when (e is ArgumentException or NotSupportedException)
                {
                    return Fail($"{modelFile}: the vocabulary cannot be read: {e.Message}");
                }
            }

            var tests = new List<(SpeedTestKind Kind, int Tokens)>();
            if (prompt > 0) tests.Add((SpeedTestKind.Prompt, prompt));
            if (generate > 0) tests.Add((SpeedTestKind.Generation, generate));
            var results = new List<SpeedTestResult>();
            if (json || Console.IsErrorRedirected)
            {
                foreach (var (kind, tokens) in tests)
                    results.Add(SpeedBenchmark.Run(lm, kind, tokens, reps, firstToken));
            }
            else
            {
                IAnsiConsole err = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
                err.Progress()
                    .AutoClear(true)
                    .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                    .Start(ctx =>
                    {
                        foreach (var (kind, tokens) in tests)
                        {
                            ProgressTask task = ctx.AddTask((kind == SpeedTestKind.Prompt ? "pp" : "tg") + tokens.ToString(CultureInfo.InvariantCulture), maxValue: reps);
                            results.Add(SpeedBenchmark.Run(lm, kind, tokens, reps, firstToken, progress: new InlineProgress<int>(r => task.Value = r)));
                        }
                    });
            }
            long peak = SpeedBenchmark.PeakResidentBytes();
            ModelVariant? recorded = workspacePath == null ? null : WorkspaceOption.Record(() =>
            {
                Workspace workspace = Workspace.Open(workspacePath);
                ModelVariant variant = WorkspaceOption.VariantOf(workspace, modelFile.FullName);
                SpeedTestResult? pp = results.Find(r => r.Kind == SpeedTestKind.Prompt);
                SpeedTestResult? tg = results.Find(r => r.Kind == SpeedTestKind.Generation);
                workspace.RecordBench(variant.Id, new BenchResult
                {
                    PromptTokens = pp?.Tokens ?? 0,
                    PrefillTokensPerSecond = pp?.MeanTokensPerSecond,
                    PrefillStdDev = pp?.StdDevTokensPerSecond,
                    GeneratedTokens = tg?.Tokens ?? 0,
                    DecodeTokensPerSecond = tg?.MeanTokensPerSecond,
                    DecodeStdDev = tg?.StdDevTokensPerSecond,
                    LoadSeconds = loadTime.TotalSeconds,
                    PeakResidentBytes = peak,
                    Threads = lm.Threads,
                    Repetitions = reps,
                });
                return variant;
            });

            if (json)
            {
                WriteJson(modelFile, lm, loadTime, peak, reps, results, recorded);
                return Program.Ok;
            }
            var table = new Table().Border(TableBorder.Rounded)
                .AddColumn("model").AddColumn(new TableColumn("size").RightAligned()).AddColumn(new TableColumn("params").RightAligned())
                .AddColumn(new TableColumn("threads").RightAligned()).AddColumn(new TableColumn("test").RightAligned()).AddColumn(new TableColumn("t/s").RightAligned());
            foreach (SpeedTestResult r in results)
            {
                table.AddRow(
                    Markup.Escape(modelFile.Name),
                    Units.Bytes(modelFile.Length),
                    Units.Count(lm.Config.ParameterCount),
                    lm.Threads.ToString(CultureInfo.InvariantCulture),
                    r.Name,
                    string.Create(CultureInfo.InvariantCulture, $"{r.MeanTokensPerSecond:0.00} ± {r.StdDevTokensPerSecond:0.00}"));
            }
            AnsiConsole.Write(table);
            AnsiConsole.MarkupLine(Markup.Escape(string.Create(CultureInfo.InvariantCulture,
                $"load {loadTime.TotalMilliseconds:0.0} ms; file {Units.Bytes(modelFile.Length)}; peak resident memory {Units.Bytes(peak)}; {reps} repetitions after warm-up")));
            if (recorded != null)
                AnsiConsole.MarkupLine(Markup.Escape($"recorded for {recorded.Name} ({recorded.Id}) in {workspacePath}"));
            return Program.Ok;
        }
    }

    private static void WriteJson(FileInfo modelFile, LanguageModel lm, TimeSpan loadTime, long peak, int reps, List<SpeedTestResult> results, ModelVariant? recorded)
    {
        using var stream = Console.OpenStandardOutput();
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        w.WriteStartObject();
        w.WriteString("model", modelFile.FullName);
        w.WriteString("architecture", lm.Config.ArchitectureName);
        w.WriteNumber("file_size", modelFile.Length);
        w.WriteNumber("parameters", lm.Config.ParameterCount);
        w.WriteNumber("threads", lm.Threads);
        w.WriteNumber("load_seconds", loadTime.TotalSeconds);
        w.WriteNumber("peak_resident_bytes", peak);
        w.WriteNumber("reps", reps);
        if (recorded != null) w.WriteString("variant_id", recorded.Id);
        w.WriteStartArray("tests");
        foreach (SpeedTestResult r in results)
        {
            w.WriteStartObject();
            w.WriteString("name", r.Name);
            w.WriteNumber("n_prompt", r.Kind == SpeedTestKind.Prompt ? r.Tokens : 0);
            w.WriteNumber("n_gen", r.Kind == SpeedTestKind.Generation ? r.Tokens : 0);
            w.WriteNumber("avg_ts", r.MeanTokensPerSecond);
            w.WriteNumber("stddev_ts", r.StdDevTokensPerSecond);
            w.WriteStartArray("samples_ns");
            foreach (TimeSpan t in r.Samples) w.WriteNumberValue((long)(t.TotalMilliseconds * 1e6));
            w.WriteEndArray();
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
        w.Flush();
        stream.WriteByte((byte)'\n');
    }

    private static int Fail(string message)
    {
        Console.Error.WriteLine($"error: {message}");
        return Program.Failed;
    }
}
