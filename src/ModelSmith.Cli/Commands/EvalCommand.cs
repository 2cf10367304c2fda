using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using ModelSmith.Evaluation;
using ModelSmith.Models;
using ModelSmith.Registry;
using ModelSmith.Tokenization;
using Spectre.Console;

namespace ModelSmith.Cli.Commands;

/// <summary>`smith eval MODEL --data FILE...`: perplexity per data file, KL divergence against a parent, multiple-choice accuracy.</summary>
internal static class EvalCommand
{
    public static Command Create()
    {
        var model = new Argument<FileInfo>("model") { Description = "The GGUF model to evaluate (llama or gpt2)." };
        var data = new Option<FileInfo[]>("--data", "-f") { Description = "Text to measure perplexity on: .txt or .jsonl (\"text\" field) files, optionally .gz; one result per file.", AllowMultipleArgumentsPerToken = true };
        var context = new Option<int>("--ctx", "-c") { Description = "Tokens per chunk; the second half of each chunk is scored.", DefaultValueFactory = _ => 512 };
        var chunks = new Option<int?>("--chunks") { Description = "Evaluate at most this many chunks of each file (default: all the text gives)." };
        var parent = new Option<FileInfo?>("--parent") { Description = "The model this one was derived from (same vocabulary): adds KL divergence and top-1 agreement against its logits." };
        var tasks = new Option<FileInfo[]>("--task") { Description = "Multiple-choice tasks: .jsonl files, one {\"context\", \"choices\", \"answer\"} object a line.", AllowMultipleArgumentsPerToken = true };
        var threads = new Option<int>("--threads", "-t") { Description = "Threads (default: all cores).", DefaultValueFactory = _ => Environment.ProcessorCount };
        var json = new Option<bool>("--json") { Description = "Print the results as JSON (no progress bar)." };
        var noRecord = new Option<bool>("--no-record") { Description = "Do not record the results in the workspace's registry." };
        var workspace = WorkspaceOption.Create();
        var command = new Command("eval", """
            Measure a model: perplexity on each data file by llama.cpp's method (the text tokenized once, cut into
            chunks of --ctx tokens, each run from an empty cache with BOS first when the vocabulary adds one, only
            the second half of each chunk scored; PPL = exp(mean negative log-likelihood) ± its standard error).
            With --parent, also the KL divergence of the parent's next-token distribution to this model's at every
            scored token (mean, percentiles, maximum) and how often both rank the same token first, as llama.cpp's
            --kl-divergence reports them. With --task, multiple-choice accuracy scored as lm-evaluation-harness
            does: acc = the choice with the highest log-likelihood of " " + choice after the context, acc_norm =
            the highest log-likelihood per character.
            The results are recorded in the workspace's registry with the data's hash and token count and this
            machine (a model not registered yet is registered as a base model); --no-record skips that.

            Examples:
              smith eval model.gguf --data data/brown/learned.txt.gz
              smith eval model-q4_k_m.gguf --data wiki.txt --parent model-f16.gguf
              smith eval model.gguf --data a.txt b.jsonl.gz --ctx 256 --chunks 20 --json
              smith eval model.gguf --task questions.jsonl

            A task line: {"context": "The capital of France is", "choices": ["Paris", "Rome"], "answer": 0}

            Exit codes: 0 done, 1 a model, text or task file cannot be used (the message says why), 2 bad usage.
            """)
        {
            model, data, context, chunks, parent, tasks, threads, json, noRecord, workspace,
        };
        command.SetAction(parse => Run(
            parse.GetValue(model)!, parse.GetValue(data) ?? [], parse.GetValue(context), parse.GetValue(chunks), parse.GetValue(parent),
            parse.GetValue(tasks) ?? [], parse.GetValue(threads), parse.GetValue(json),
            parse.GetValue(noRecord) ? null : Workspace.ResolveRoot(parse.GetValue(workspace))));
        return command;
    }

    private sealed record DataRun(FileInfo File, int[] Tokens)
    {
        public PerplexityResult? Result { get; set; }
    }

    private sealed record TaskRun(FileInfo File, IReadOnlyList<MultipleChoiceItem> Items)
    {
        public MultipleChoiceResult? Result { get; set; }
    }

    private static int Run(FileInfo modelFile, FileInfo[] data, int context, int? chunks, FileInfo? parentFile, FileInfo[] taskFiles, int threads, bool json,
        string? workspacePath)
    {
        if (context < 4) throw new UsageException($"--ctx {context} must be at least 4 (the second half of each chunk is scored).");
        if (chunks is < 1) throw new UsageException($"--chunks {chunks} must be at least 1.");
        if (threads < 1) throw new UsageException($"--threads {threads} must be at least 1.");
        if (data.Length == 0 && taskFiles.Length == 0) throw new UsageException("give text to measure with --data and/or multiple-choice tasks with --task.");
        if (parentFile != null && data.Length == 0) throw new UsageException("--parent compares next-token distributions on --data text; give --data too.");
        foreach (FileInfo f in new[] { modelFile }.Concat(parentFile != null ? [parentFile] : []).Concat(data).Concat(taskFiles))
        {
            if (!f.Exists) throw new FileNotFoundException($"'{f.FullName}' does not exist.", f.FullName);
        }

        try
        {
            using LanguageModel lm = LanguageModel.Load(modelFile.FullName, threads);
            using LanguageModel? parentLm = parentFile != null ? LanguageModel.Load(parentFile.FullName, threads) : null;
            if (parentLm != null && Perplexity.VocabularyMismatch(lm, parentLm) is { } mismatch)
            {
                throw new UsageException($"--parent: {mismatch}");
            }
            if (data.Length > 0 && context > lm.Config.ContextLength)
            {
                if (lm.Config.Architecture == ModelArchitecture.Gpt2)
                    throw new UsageException($"--ctx {context} exceeds the {lm.Config.ContextLength} positions GPT-2 has learned embeddings for; use --ctx {lm.Config.ContextLength} or less.");
                Console.Error.WriteLine($"warning: the model was trained on {lm.Config.ContextLength} tokens of context; --ctx {context} goes beyond it.");
            }
            Tokenizer tokenizer = GgufTokenizer.Load(lm.File!);
            var options = new PerplexityOptions
            {
                ContextSize = context,
                MaxChunks = chunks,
                FirstToken = tokenizer.AddBos ? tokenizer.Bos : -1,
            };

            var runs = new List<DataRun>();
            foreach (FileInfo f in data)
            {
                int[] tokens = Perplexity.Tokenize(tokenizer, Perplexity.ReadText(f.FullName));
                if (tokens.Length < 2 * context)
                    return Program.Fail($"{f}: the text gives {tokens.Length} tokens; --ctx {context} needs at least {2 * context} (two chunks, as llama.cpp's perplexity). Give more text or a smaller --ctx.");
                runs.Add(new DataRun(f, tokens));
            }
            var taskRuns = new List<TaskRun>();
            foreach (FileInfo f in taskFiles)
            {
                taskRuns.Add(new TaskRun(f, MultipleChoice.Load(f.FullName)));
            }

            void Evaluate(Func<string, double, Action<double>>? track)
            {
                foreach (DataRun run in runs)
                {
                    int total = Perplexity.ChunkCount(run.Tokens.Length, options);
                    Action<double>? step = track?.Invoke(run.File.Name, total);
                    run.Result = Perplexity.Evaluate(lm, run.Tokens, options, parentLm,
                        step == null ? null : new InlineProgress<PerplexityProgress>(p => step(p.Chunk)));
                }
                foreach (TaskRun run in taskRuns)
                {
                    Action<double>? step = track?.Invoke(run.File.Name, run.Items.Count);
                    run.Result = MultipleChoice.Evaluate(lm, tokenizer, run.Items, step == null ? null : new InlineProgress<int>(i => step(i)));
                }
            }

            if (json || Console.IsErrorRedirected)
            {
                Evaluate(null);
            }
            else
            {
                IAnsiConsole err = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
                err.Progress()
                    .AutoClear(true)
                    .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                    .Start(ctx => Evaluate((name, total) =>
                    {
                        ProgressTask task = ctx.AddTask(Markup.Escape(name), maxValue: total);
                        return value => task.Value = value;
                    }));
            }

            ModelVariant? recorded = workspacePath == null ? null : Record(workspacePath, modelFile, parentFile, context, runs, taskRuns);
            if (json)
            {
                WriteJson(modelFile, parentFile, lm, context, runs, taskRuns, recorded);
            }
            else
            {
                WriteTables(modelFile, parentFile, lm, context, runs, taskRuns);
                if (recorded != null)
                    AnsiConsole.MarkupLine(Markup.Escape($"recorded for {recorded.Name} ({recorded.Id}) in {workspacePath}"));
            }
            return Program.Ok;
        }
        catch (NotSupportedException e)
        {
            return Program.Fail($"{modelFile}: {e.Message}");
        }
        catch (ArgumentException e)
        {
            return Program.Fail(e.Message);
        }
        catch (InvalidDataException e)
        {
            return Program.Fail(e.Message);
        }
    }

    /// <summary>Records one result per data file and task for the model (registered first if it is not known).</summary>
    private static ModelVariant? Record(string workspacePath, FileInfo modelFile, FileInfo? parentFile, int context, List<DataRun> runs, List<TaskRun> taskRuns) =>
        WorkspaceOption.Record(() =>
        {
            Workspace workspace = Workspace.Open(workspacePath);
            ModelVariant variant = WorkspaceOption.VariantOf(workspace, modelFile.FullName);
            string? reference = parentFile == null ? null : WorkspaceOption.VariantOf(workspace, parentFile.FullName).Id;
            foreach (DataRun run in runs)
            {
                PerplexityResult r = run.Result!;
                workspace.RecordEval(variant.Id, new EvalResult
                {
                    Data = DataFingerprint.OfFile(run.File.FullName, run.Tokens.Length),
                    Context = context,
                    Perplexity = r.Perplexity,
                    PerplexityError = r.PerplexityError,
                    ScoredTokens = r.ScoredTokens,
                    MeanKld = r.KlDivergence?.MeanKld,
                    SameTop1 = r.KlDivergence?.SameTop,
                    ReferenceId = r.KlDivergence != null ? reference : null,
                });
            }
            foreach (TaskRun run in taskRuns)
            {
                MultipleChoiceResult r = run.Result!;
                workspace.RecordEval(variant.Id, new EvalResult
                {
                    Data = DataFingerprint.OfFile(run.File.FullName),
                    ScoredTokens = r.Items.Count,
                    Accuracy = r.Accuracy,
                    AccuracyNorm = r.NormalizedAccuracy,
                });
            }
            return variant;
        });

    private static string F(double value, string format) => value.ToString(format, CultureInfo.InvariantCulture);

    private static void WriteTables(FileInfo modelFile, FileInfo? parentFile, LanguageModel lm, int context, List<DataRun> runs, List<TaskRun> taskRuns)
    {
        AnsiConsole.MarkupLine(Markup.Escape($"{modelFile.Name}: {lm.Config.ArchitectureName}, {Units.Count(lm.Config.ParameterCount)} parameters, {lm.Threads} threads" +
            (parentFile != null ? $"; parent {parentFile.Name}" : "")));
        if (runs.Count > 0)
        {
            bool kl = parentFile != null;
            var table = new Table().Border(TableBorder.Rounded)
                .Title(Markup.Escape($"perplexity: chunks of {context} tokens, second half scored"))
                .AddColumn("data").AddColumn(new TableColumn("tokens").RightAligned()).AddColumn(new TableColumn("chunks").RightAligned())
                .AddColumn(new TableColumn("PPL").RightAligned());
            if (kl)
            {
                table.AddColumn(new TableColumn("mean KLD").RightAligned()).AddColumn(new TableColumn("same top-1").RightAligned());
            }
            table.AddColumn(new TableColumn("time").RightAligned());
            foreach (DataRun run in runs)
            {
                PerplexityResult r = run.Result!;
                var cells = new List<string>
                {
                    Markup.Escape(run.File.Name),
                    r.Tokens.ToString("N0", CultureInfo.InvariantCulture),
                    r.Chunks.ToString(CultureInfo.InvariantCulture),
                    $"{F(r.Perplexity, "0.0000")} ± {F(r.PerplexityError, "0.0000")}",
                };
                if (r.KlDivergence is { } k)
                {
                    cells.Add(F(k.MeanKld, "0.000000"));
                    cells.Add($"{F(100 * k.SameTop, "0.00")} %");
                }
                cells.Add($"{F(r.Elapsed.TotalSeconds, "0.0")} s");
                table.AddRow([.. cells]);
            }
            AnsiConsole.Write(table);

            if (kl)
            {
                var detail = new Table().Border(TableBorder.Rounded).Title("KL divergence from the parent").AddColumn("statistic");
                foreach (DataRun run in runs) detail.AddColumn(new TableColumn(Markup.Escape(run.File.Name)).RightAligned());
                void Row(string name, Func<KlDivergenceResult, string> cell)
                {
                    var cells = new List<string> { Markup.Escape(name) };
                    foreach (DataRun run in runs) cells.Add(Markup.Escape(cell(run.Result!.KlDivergence!)));
                    detail.AddRow([.. cells]);
                }
                Row("parent PPL", k => $"{F(k.ParentPerplexity, "0.0000")} ± {F(k.ParentPerplexityError, "0.0000")}");
                Row("ln(PPL / PPL parent)", k => $"{F(k.LogPerplexityRatio, "0.000000")} ± {F(k.LogPerplexityRatioError, "0.000000")}");
                Row("mean KLD", k => $"{F(k.MeanKld, "0.000000")} ± {F(k.MeanKldError, "0.000000")}");
                Row("maximum KLD", k => F(k.MaximumKld, "0.000000"));
                foreach (double p in KlDivergenceResult.ReportedPercentiles)
                {
                    if (p == 0.10) Row("median KLD", k => F(k.MedianKld, "0.000000"));
                    Row($"{F(100 * p, "0.0")}% KLD", k => F(k.KldPercentile(p), "0.000000"));
                }
                Row("minimum KLD", k => F(k.MinimumKld, "0.000000"));
                Row("mean Δp", k => $"{F(100 * k.MeanDeltaP, "0.000")} ± {F(100 * k.MeanDeltaPError, "0.000")} %");
                Row("RMS Δp", k => $"{F(100 * k.RmsDeltaP, "0.000")} ± {F(100 * k.RmsDeltaPError, "0.000")} %");
                Row("same top-1", k => $"{F(100 * k.SameTop, "0.000")} ± {F(100 * k.SameTopError, "0.000")} %");
                AnsiConsole.Write(detail);
            }
        }
        if (taskRuns.Count > 0)
        {
            var table = new Table().Border(TableBorder.Rounded).Title("multiple choice (lm-evaluation-harness scoring)")
                .AddColumn("task").AddColumn(new TableColumn("items").RightAligned()).AddColumn(new TableColumn("acc").RightAligned())
                .AddColumn(new TableColumn("acc_norm").RightAligned()).AddColumn(new TableColumn("chance").RightAligned()).AddColumn(new TableColumn("time").RightAligned());
            foreach (TaskRun run in taskRuns)
            {
                MultipleChoiceResult r = run.Result!;
                table.AddRow(
                    Markup.Escape(run.File.Name),
                    r.Items.Count.ToString(CultureInfo.InvariantCulture),
                    $"{F(100 * r.Accuracy, "0.00")} ± {F(100 * r.AccuracyError, "0.00")} %",
                    $"{F(100 * r.NormalizedAccuracy, "0.00")} ± {F(100 * r.NormalizedAccuracyError, "0.00")} %",
                    $"{F(100 * r.RandomChance, "0.00")} %",
                    $"{F(r.Elapsed.TotalSeconds, "0.0")} s");
            }
            AnsiConsole.Write(table);
        }
    }

    private static void WriteJson(FileInfo modelFile, FileInfo? parentFile, LanguageModel lm, int context, List<DataRun> runs, List<TaskRun> taskRuns,
        ModelVariant? recorded)
    {
        using var stream = Console.OpenStandardOutput();
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        w.WriteStartObject();
        w.WriteString("model", modelFile.FullName);
        w.WriteString("parent", parentFile?.FullName);
        w.WriteNumber("context", context);
        w.WriteNumber("threads", lm.Threads);
        if (recorded != null) w.WriteString("variant_id", recorded.Id);
        w.WriteStartArray("data");
        foreach (DataRun run in runs)
        {
            PerplexityResult r = run.Result!;
            w.WriteStartObject();
            w.WriteString("file", run.File.FullName);
            w.WriteNumber("tokens", r.Tokens);
            w.WriteNumber("chunks", r.Chunks);
            w.WriteNumber("scored_tokens", r.ScoredTokens);
            w.WriteNumber("perplexity", r.Perplexity);
            w.WriteNumber("perplexity_error", r.PerplexityError);
            w.WriteNumber("mean_nll", r.MeanNll);
            w.WriteNumber("seconds", r.Elapsed.TotalSeconds);
            if (r.KlDivergence is { } k)
            {
                w.WriteStartObject("kl_divergence");
                w.WriteNumber("mean", k.MeanKld);
                w.WriteNumber("mean_error", k.MeanKldError);
                w.WriteNumber("maximum", k.MaximumKld);
                w.WriteNumber("median", k.MedianKld);
                w.WriteNumber("minimum", k.MinimumKld);
                w.WriteStartObject("percentiles");
                foreach (double p in KlDivergenceResult.ReportedPercentiles)
                    w.WriteNumber(F(100 * p, "0.0"), k.KldPercentile(p));
                w.WriteEndObject();
                w.WriteNumber("same_top_p", k.SameTop);
                w.WriteNumber("same_top_p_error", k.SameTopError);
                w.WriteNumber("parent_perplexity", k.ParentPerplexity);
                w.WriteNumber("parent_perplexity_error", k.ParentPerplexityError);
                w.WriteNumber("ln_ppl_ratio", k.LogPerplexityRatio);
                w.WriteNumber("ln_ppl_ratio_error", k.LogPerplexityRatioError);
                WriteFinite(w, "ppl_correlation", k.PerplexityCorrelation);
                w.WriteNumber("mean_delta_p", k.MeanDeltaP);
                w.WriteNumber("mean_delta_p_error", k.MeanDeltaPError);
                w.WriteNumber("rms_delta_p", k.RmsDeltaP);
                w.WriteNumber("rms_delta_p_error", k.RmsDeltaPError);
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteStartArray("tasks");
        foreach (TaskRun run in taskRuns)
        {
            MultipleChoiceResult r = run.Result!;
            w.WriteStartObject();
            w.WriteString("file", run.File.FullName);
            w.WriteNumber("items", r.Items.Count);
            w.WriteNumber("acc", r.Accuracy);
            w.WriteNumber("acc_stderr", r.AccuracyError);
            w.WriteNumber("acc_norm", r.NormalizedAccuracy);
            w.WriteNumber("acc_norm_stderr", r.NormalizedAccuracyError);
            w.WriteNumber("random_chance", r.RandomChance);
            w.WriteNumber("seconds", r.Elapsed.TotalSeconds);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
        w.Flush();
        stream.WriteByte((byte)'\n');
    }

    /// <summary>JSON has no NaN: a value that is not finite is written as null.</summary>
    private static void WriteFinite(Utf8JsonWriter w, string name, double value)
    {
        if (double.IsFinite(value)) w.WriteNumber(name, value);
        else w.WriteNull(name);
    }
}
