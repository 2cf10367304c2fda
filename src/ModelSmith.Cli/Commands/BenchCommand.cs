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

/// <summary>`smith bench MODEL`: prefill and decode tokens/s with llama-bench's conventions, load time, size, peak memory;
/// with --vs-llama-cpp the same tests on llama.cpp and the ratio.</summary>
internal static class BenchCommand
{
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
        var vsLlamaCpp = new Option<bool>("--vs-llama-cpp") { Description = "Then run the same tests on llama.cpp (same file, threads, token counts, repetitions) and print both with the ratio smith / llama.cpp." };
        var command = new Command("bench", $"""
            Time a model as llama-bench does: prefill (pp) decodes --pp random tokens in one batch (BOS first when the
            vocabulary adds one), decode (tg) runs --tg single-token forward passes; each test runs untimed until the
            .NET runtime stops recompiling hot code (at most 1 s), then --reps times from an empty cache, and reports
            the mean and standard deviation of tokens per second.
            Also reports the load time, the file size and the process's peak resident memory.
            The results are recorded in the workspace's registry with this machine (a model not registered yet is
            registered as a base model); --no-record skips that.

            --vs-llama-cpp then loads llama.cpp (the LLamaSharp CPU build, in this process; it is not loaded
            otherwise) and times the same tests on the same file with the same threads, token counts, repetitions
            and warm-up, with llama-bench's defaults: F16 KV cache, flash attention auto, n_ubatch 512, mmap.
            The table gets llama.cpp's tokens/s and the ratio smith / llama.cpp for each test (above 1: smith is
            faster); --json gets a "llama_cpp" object with its settings, load time and tests, each with "ratio".
            The peak resident memory is smith's own, measured before llama.cpp was loaded. Only smith's numbers
            are recorded in the registry. If llama.cpp cannot load or run the file, smith's numbers are still
            printed (and recorded), the error names the file, and the exit code is 1.

            Examples:
              smith bench model.gguf
              smith bench model-q4_k_m.gguf --pp 256 --tg 64 --reps 10 --threads 2
              smith bench model.gguf --tg 0 --json                  (prefill only)
              smith bench model-q4_k_m.gguf --vs-llama-cpp          (side by side with llama.cpp)

            Exit codes: 0 done, 1 the model cannot be run, or with --vs-llama-cpp llama.cpp cannot run it (the
            message says why), 2 bad usage.
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
            return Program.Fail($"{modelFile}: {e.Message}");
        }
        TimeSpan loadTime = Stopwatch.GetElapsedTime(loadStart);
        ModelConfig config = lm.Config;
        threads = lm.Threads; // what the model runs on; llama.cpp gets the same
        var tests = new List<(SpeedTestKind Kind, int Tokens)>();
        if (prompt > 0) tests.Add((SpeedTestKind.Prompt, prompt));
        if (generate > 0) tests.Add((SpeedTestKind.Generation, generate));
        var results = new List<SpeedTestResult>();
        long peak;
        ModelVariant? recorded;
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
                    return Program.Fail($"{modelFile}: the vocabulary cannot be read: {e.Message}");
                }
            }

            WithProgress(json, progress =>
            {
                foreach (var (kind, tokens) in tests)
                    results.Add(SpeedBenchmark.Run(lm, kind, tokens, reps, firstToken, progress: progress((kind == SpeedTestKind.Prompt ? "pp" : "tg") + tokens.ToString(CultureInfo.InvariantCulture), reps)));
            });
            // Before llama.cpp (if asked for) loads into this process: the peak is smith's alone.
            peak = SpeedBenchmark.PeakResidentBytes();
            recorded = workspacePath == null ? null : WorkspaceOption.Record(() =>
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
                    Threads = threads,
                    Repetitions = reps,
                });
                return variant;
            });
        }

        // smith's model is unloaded first, so that the two engines never hold the weights in memory at once.
        LlamaCppBenchResult? theirs = null;
        string? theirError = null;
        if (vsLlamaCpp)
        {
            try
            {
                WithProgress(json, progress => theirs = LlamaCppBench.Run(modelFile.FullName, threads, tests, reps, progress));
            }
            catch (LlamaCppRefusedException e)
            {
                theirError = $"{e.Message.TrimEnd('.')}. smith's own numbers {(json ? "" : "above ")}stand{(recorded != null ? " and are recorded" : "")}.";
            }
        }

        if (json)
            WriteJson(modelFile, config, threads, loadTime, peak, reps, results, recorded, theirs, theirError);
        else
            WriteTable(modelFile, config, threads, loadTime, peak, reps, results, recorded, workspacePath, theirs);
        return theirError == null ? Program.Ok : Program.Fail(theirError);
    }

    /// <summary>Runs <paramref name="body"/> with a progress bar on stderr, or without one for --json or a redirected
    /// stderr; body's argument makes the progress sink of one test from its name and repetitions.</summary>
    private static void WithProgress(bool json, Action<Func<string, int, IProgress<int>?>> body)
    {
        if (json || Console.IsErrorRedirected)
        {
            body((_, _) => null);
            return;
        }
        IAnsiConsole err = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        err.Progress()
            .AutoClear(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .Start(ctx => body((name, reps) =>
            {
                ProgressTask task = ctx.AddTask(Markup.Escape(name), maxValue: reps);
                return new InlineProgress<int>(r => task.Value = r);
            }));
    }

    /// <summary>llama-bench's table; with llama.cpp's numbers, a narrower one (model, test, both t/s, ratio) with the
    /// size, parameters and threads moved to the lines under it.</summary>
    private static void WriteTable(FileInfo modelFile, ModelConfig config, int threads, TimeSpan loadTime, long peak, int reps, List<SpeedTestResult> results,
        ModelVariant? recorded, string? workspacePath, LlamaCppBenchResult? theirs)
    {
        var table = new Table().Border(TableBorder.Rounded).AddColumn("model");
        if (theirs == null)
        {
            table.AddColumn(new TableColumn("size").RightAligned()).AddColumn(new TableColumn("params").RightAligned())
                .AddColumn(new TableColumn("threads").RightAligned()).AddColumn(new TableColumn("test").RightAligned())
                .AddColumn(new TableColumn("t/s").RightAligned());
            foreach (SpeedTestResult r in results)
            {
                table.AddRow(
                    Markup.Escape(modelFile.Name),
                    Units.Bytes(modelFile.Length),
                    Units.Count(config.ParameterCount),
                    threads.ToString(CultureInfo.InvariantCulture),
                    r.Name,
                    MeanAndDeviation(r));
            }
        }
        else
        {
            table.AddColumn(new TableColumn("test").RightAligned()).AddColumn(new TableColumn("smith t/s").RightAligned())
                .AddColumn(new TableColumn("llama.cpp t/s").RightAligned()).AddColumn(new TableColumn("ratio").RightAligned());
            for (int i = 0; i < results.Count; i++)
            {
                table.AddRow(
                    Markup.Escape(modelFile.Name),
                    results[i].Name,
                    MeanAndDeviation(results[i]),
                    MeanAndDeviation(theirs.Tests[i]),
                    string.Create(CultureInfo.InvariantCulture, $"{Ratio(results[i], theirs.Tests[i]):0.00}"));
            }
        }
        AnsiConsole.Write(table);
        if (theirs != null)
        {
            AnsiConsole.MarkupLine(Markup.Escape(string.Create(CultureInfo.InvariantCulture,
                $"ratio = smith / llama.cpp (above 1: smith is faster); threads {threads}; params {Units.Count(config.ParameterCount)}")));
            AnsiConsole.MarkupLine(Markup.Escape($"llama.cpp: {theirs.Settings}"));
        }
        string theirLoad = theirs == null ? "" : string.Create(CultureInfo.InvariantCulture, $" (llama.cpp {theirs.LoadTime.TotalMilliseconds:0.0} ms)");
        AnsiConsole.MarkupLine(Markup.Escape(string.Create(CultureInfo.InvariantCulture,
            $"load {loadTime.TotalMilliseconds:0.0} ms{theirLoad}; file {Units.Bytes(modelFile.Length)}; peak resident memory {Units.Bytes(peak)}{(theirs != null ? " (smith, before llama.cpp was loaded)" : "")}; {reps} repetitions after warm-up")));
        if (recorded != null)
            AnsiConsole.MarkupLine(Markup.Escape($"recorded for {recorded.Name} ({recorded.Id}) in {workspacePath}"));
    }

    private static string MeanAndDeviation(SpeedTestResult r) =>
        string.Create(CultureInfo.InvariantCulture, $"{r.MeanTokensPerSecond:0.00} ± {r.StdDevTokensPerSecond:0.00}");

    /// <summary>smith's mean tokens/s over llama.cpp's: above 1, smith is faster.</summary>
    private static double Ratio(SpeedTestResult ours, SpeedTestResult theirs) => ours.MeanTokensPerSecond / theirs.MeanTokensPerSecond;

    private static void WriteJson(FileInfo modelFile, ModelConfig config, int threads, TimeSpan loadTime, long peak, int reps, List<SpeedTestResult> results,
        ModelVariant? recorded, LlamaCppBenchResult? theirs, string? theirError)
    {
        using var stream = Console.OpenStandardOutput();
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        w.WriteStartObject();
        w.WriteString("model", modelFile.FullName);
        w.WriteString("architecture", config.ArchitectureName);
        w.WriteNumber("file_size", modelFile.Length);
        w.WriteNumber("parameters", config.ParameterCount);
        w.WriteNumber("threads", threads);
        w.WriteNumber("load_seconds", loadTime.TotalSeconds);
        w.WriteNumber("peak_resident_bytes", peak);
        w.WriteNumber("reps", reps);
        if (recorded != null) w.WriteString("variant_id", recorded.Id);
        w.WriteStartArray("tests");
        foreach (SpeedTestResult r in results)
        {
            w.WriteStartObject();
            WriteTest(w, r);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        if (theirs != null)
        {
            w.WriteStartObject("llama_cpp");
            w.WriteString("kv_type", theirs.KvCacheType);
            w.WriteString("flash_attn", theirs.FlashAttention);
            w.WriteNumber("n_ubatch", theirs.MicroBatchSize);
            w.WriteBoolean("mmap", theirs.MemoryMapped);
            w.WriteString("native_library", theirs.NativeLibrary);
            w.WriteNumber("load_seconds", theirs.LoadTime.TotalSeconds);
            w.WriteStartArray("tests");
            for (int i = 0; i < theirs.Tests.Count; i++)
            {
                w.WriteStartObject();
                WriteTest(w, theirs.Tests[i]);
                w.WriteNumber("ratio", Ratio(results[i], theirs.Tests[i]));
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        else if (theirError != null)
        {
            w.WriteStartObject("llama_cpp");
            w.WriteString("error", theirError);
            w.WriteEndObject();
        }
        w.WriteEndObject();
        w.Flush();
        stream.WriteByte((byte)'\n');
    }

    /// <summary>One test's fields, named as llama-bench's JSON names them.</summary>
    private static void WriteTest(Utf8JsonWriter w, SpeedTestResult r)
    {
        w.WriteString("name", r.Name);
        w.WriteNumber("n_prompt", r.Kind == SpeedTestKind.Prompt ? r.Tokens : 0);
        w.WriteNumber("n_gen", r.Kind == SpeedTestKind.Generation ? r.Tokens : 0);
        w.WriteNumber("avg_ts", r.MeanTokensPerSecond);
        w.WriteNumber("stddev_ts", r.StdDevTokensPerSecond);
        w.WriteStartArray("samples_ns");
        foreach (TimeSpan t in r.Samples) w.WriteNumberValue((long)(t.TotalMilliseconds * 1e6));
        w.WriteEndArray();
    }
}
