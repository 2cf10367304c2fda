using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using ModelSmith.Training;
using ModelSmith.Training.Data;
using Spectre.Console;

namespace ModelSmith.Cli.Commands;

/// <summary>
/// What `smith pretrain` and `smith finetune` share: the training options, the progress display (a Spectre progress
/// bar on a terminal, periodic plain lines when output is redirected, nothing with --json), Ctrl-C and SIGTERM handling
/// (stop after the current step, write a checkpoint, exit 130) and the --json summary.
/// </summary>
internal static class TrainingConsole
{
    /// <summary>Exit code after Ctrl-C (128 + SIGINT), as shells report an interrupted program.</summary>
    public const int Interrupted = 130;

    /// <summary>
    /// Failures of a training command that its message explains (exit code 1): malformed data, a checkpoint of another
    /// run, a damaged checkpoint, a setting the model cannot take.
    /// </summary>
    public static bool IsRunFailure(Exception e) =>
        e is DataFormatException or CheckpointMismatchException or InvalidDataException or ArgumentException;

    /// <summary>The options both commands take, with each command's defaults.</summary>
    public sealed class Options
    {
        public Options(int steps, string lrHelp, int batch, string contextHelp)
        {
            Steps = new Option<int>("--steps") { Description = "Optimizer steps.", DefaultValueFactory = _ => steps };
            Batch = new Option<int>("--batch") { Description = "Sequences per micro-batch.", DefaultValueFactory = _ => batch };
            GradAccum = new Option<int>("--grad-accum") { Description = "Micro-batches per step (gradient accumulation).", DefaultValueFactory = _ => 1 };
            Context = new Option<int?>("--context") { Description = contextHelp };
            Lr = new Option<float?>("--lr") { Description = lrHelp };
            MinLr = new Option<float?>("--min-lr") { Description = "Learning rate at the end of the cosine decay (default: lr / 10)." };
            Warmup = new Option<int?>("--warmup") { Description = "Warmup steps (default: 5% of the steps)." };
            WeightDecay = new Option<float>("--weight-decay") { Description = "AdamW weight decay.", DefaultValueFactory = _ => 0.1f };
            Clip = new Option<float>("--clip") { Description = "Clip the gradient norm to this (0: off).", DefaultValueFactory = _ => 1f };
            Seed = new Option<ulong>("--seed") { Description = "Seed of the initialisation, data split and batch order.", DefaultValueFactory = _ => 1234UL };
            Threads = new Option<int>("--threads") { Description = "Threads (default: all cores; losses do not depend on it).", DefaultValueFactory = _ => Environment.ProcessorCount };
            ValFraction = new Option<double>("--val-fraction") { Description = "Share of documents held out for the validation loss.", DefaultValueFactory = _ => 0.05 };
            EvalEvery = new Option<int?>("--eval-every") { Description = "Validation loss every N steps (default: 10 times per run; 0: only after the last step, which always gets one)." };
            EvalBatches = new Option<int>("--eval-batches") { Description = "Validation batches per measurement.", DefaultValueFactory = _ => 8 };
            CheckpointEvery = new Option<int?>("--checkpoint-every") { Description = "Checkpoint every N steps (default: 10 times per run; 0: only on Ctrl-C)." };
            Checkpoint = new Option<FileInfo?>("--checkpoint") { Description = "Checkpoint file (default: <out>.ckpt); removed when the run completes." };
            Resume = new Option<bool>("--resume") { Description = "Continue the interrupted run from its checkpoint (same data and options)." };
            Log = new Option<FileInfo?>("--log") { Description = "JSONL log, one object per step (default: <out>.log.jsonl)." };
            Json = new Option<bool>("--json") { Description = "Print a JSON summary at the end (no progress display)." };
            Workspace = WorkspaceOption.Create();
            NoRecord = new Option<bool>("--no-record") { Description = "Do not register the output in the workspace's registry." };
        }

        public Option<int> Steps { get; }
        public Option<int> Batch { get; }
        public Option<int> GradAccum { get; }
        public Option<int?> Context { get; }
        public Option<float?> Lr { get; }
        public Option<float?> MinLr { get; }
        public Option<int?> Warmup { get; }
        public Option<float> WeightDecay { get; }
        public Option<float> Clip { get; }
        public Option<ulong> Seed { get; }
        public Option<int> Threads { get; }
        public Option<double> ValFraction { get; }
        public Option<int?> EvalEvery { get; }
        public Option<int> EvalBatches { get; }
        public Option<int?> CheckpointEvery { get; }
        public Option<FileInfo?> Checkpoint { get; }
        public Option<bool> Resume { get; }
        public Option<FileInfo?> Log { get; }
        public Option<bool> Json { get; }
        public Option<string?> Workspace { get; }
        public Option<bool> NoRecord { get; }

        /// <summary>The workspace to register the output in, or null with --no-record.</summary>
        public string? WorkspaceRoot(ParseResult parse) => parse.GetValue(NoRecord) ? null : Registry.Workspace.ResolveRoot(parse.GetValue(Workspace));

        public void AddTo(Command command)
        {
            foreach (Option o in new Option[] { Steps, Batch, GradAccum, Context, Lr, MinLr, Warmup, WeightDecay, Clip, Seed, Threads, ValFraction, EvalEvery, EvalBatches, CheckpointEvery, Checkpoint, Resume, Log, Json, Workspace, NoRecord })
                command.Options.Add(o);
        }

        /// <summary>The run options from the command line, checked (UsageException on an impossible value).</summary>
        public TrainingRunOptions Read(ParseResult parse, LoraOptions? lora, float defaultLr)
        {
            int steps = parse.GetValue(Steps);
            if (steps < 1) throw new UsageException($"--steps {steps} must be at least 1.");
            float lr = parse.GetValue(Lr) ?? defaultLr;
            int everyTenth = Math.Max(1, steps / 10);
            var options = new TrainingRunOptions
            {
                Steps = steps,
                BatchSize = parse.GetValue(Batch),
                GradientAccumulation = parse.GetValue(GradAccum),
                LearningRate = lr,
                MinLearningRate = parse.GetValue(MinLr) ?? lr / 10,
                WarmupSteps = parse.GetValue(Warmup) ?? Math.Min(steps, Math.Max(1, steps / 20)),
                WeightDecay = parse.GetValue(WeightDecay),
                MaxGradNorm = parse.GetValue(Clip),
                EvalInterval = parse.GetValue(EvalEvery) ?? everyTenth,
                EvalBatches = parse.GetValue(EvalBatches),
                CheckpointInterval = parse.GetValue(CheckpointEvery) ?? everyTenth,
                Seed = parse.GetValue(Seed),
                Threads = parse.GetValue(Threads),
                Lora = lora,
            };
            string? problem = options.Validate();
            if (problem != null) throw new UsageException(problem);
            double fraction = parse.GetValue(ValFraction);
            if (!(fraction >= 0 && fraction < 1)) throw new UsageException($"--val-fraction {fraction} must be in [0, 1).");
            return options;
        }
    }

    /// <summary>
    /// Runs <paramref name="run"/> with a progress display titled <paramref name="title"/>, stopping cleanly on Ctrl-C.
    /// </summary>
    public static TrainingRunResult Run(TrainingRun run, bool json, string title)
    {
        using var cancel = new CancellationTokenSource();
        // The first Ctrl-C stops after the current step with a checkpoint; a second one ends the process at once.
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = !cancel.IsCancellationRequested;
            cancel.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        // SIGTERM (a service manager or container stopping the job) gets the same clean stop as Ctrl-C.
        using PosixSignalRegistration terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
        {
            context.Cancel = !cancel.IsCancellationRequested;
            cancel.Cancel();
        });
        try
        {
            if (json) return run.Run(null, cancel.Token);
            if (!Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive)
            {
                TrainingRunResult result = null!;
                AnsiConsole.Progress()
                    .AutoClear(false)
                    .HideCompleted(false)
                    .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn { Width = 16 }, new PercentageColumn(), new RemainingTimeColumn())
                    .Start(ctx =>
                    {
                        ProgressTask task = ctx.AddTask(Markup.Escape(title), maxValue: run.Options.Steps);
                        float? validation = null;
                        var progress = new InlineProgress<TrainingProgress>(p =>
                        {
                            validation = p.ValidationLoss ?? validation;
                            task.Value = p.Step;
                            task.Description = Markup.Escape(Short(p, validation));
                        });
                        result = run.Run(progress, cancel.Token);
                    });
                return result;
            }
            int every = Math.Max(1, run.Options.Steps / 20);
            var clock = Stopwatch.StartNew();
            double last = double.NegativeInfinity;
            float? seen = null;
            return run.Run(new InlineProgress<TrainingProgress>(p =>
            {
                seen = p.ValidationLoss ?? seen;
                double now = clock.Elapsed.TotalSeconds;
                if (p.Step % every == 0 || p.Step == p.TotalSteps || p.ValidationLoss != null || now - last >= 30)
                {
                    Console.WriteLine(Line(p, seen, eta: true));
                    last = now;
                }
            }), cancel.Token);
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    /// <summary>"step 40/200  loss 4.812  val 4.900  lr 9.5e-04  |g| 0.61  5,120 tok/s  ETA 0:31".</summary>
    public static string Line(TrainingProgress p, float? validation, bool eta)
    {
        string val = validation is float v ? $"  val {v:0.000}" : "";
        string rest = eta ? $"  ETA {Duration(p.Remaining)}" : "";
        return string.Create(CultureInfo.InvariantCulture,
            $"step {p.Step}/{p.TotalSteps}  loss {p.Loss:0.000}{val}  lr {p.LearningRate:0.0e+00}  |g| {p.GradientNorm:0.00}  {p.TokensPerSecond:#,0} tok/s{rest}");
    }

    /// <summary>The progress bar's description: "loss 4.812  val 4.900  lr 9.5e-04  5,120 tok/s" (the bar shows the step, the last column the ETA).</summary>
    public static string Short(TrainingProgress p, float? validation)
    {
        string val = validation is float v ? $"  val {v:0.000}" : "";
        return string.Create(CultureInfo.InvariantCulture, $"loss {p.Loss:0.000}{val}  lr {p.LearningRate:0.0e+00}  {p.TokensPerSecond:#,0} tok/s");
    }

    public static string Duration(TimeSpan t) => t.TotalHours >= 1
        ? string.Create(CultureInfo.InvariantCulture, $"{(int)t.TotalHours}:{t.Minutes:00}:{t.Seconds:00}")
        : string.Create(CultureInfo.InvariantCulture, $"{t.Minutes}:{t.Seconds:00}");

    /// <summary>Tells how to resume and gives the exit code of an interrupted run.</summary>
    public static int ReportInterrupted(TrainingRunResult result, string command)
    {
        AnsiConsole.Console.Profile.Out.Writer.Flush();
        Console.Out.Flush();
        if (result.CheckpointPath != null)
            Console.Error.WriteLine($"interrupted after step {result.Steps}; checkpoint written to {result.CheckpointPath}.\nResume with the same command and --resume:\n  {command} --resume");
        else
            Console.Error.WriteLine($"interrupted after step {result.Steps}; no checkpoint was written (none was set or no step completed).");
        return Interrupted;
    }

    /// <summary>The command line as typed (arguments quoted where needed), without --resume.</summary>
    public static string CommandLine(string name, IEnumerable<string> args)
    {
        var parts = new List<string> { "smith", name };
        foreach (string a in args)
        {
            if (a == "--resume") continue;
            parts.Add(a.Length > 0 && a.IndexOfAny([' ', '"', '\'', '$', '*', '?']) < 0 ? a : "'" + a.Replace("'", "'\\''", StringComparison.Ordinal) + "'");
        }
        return string.Join(' ', parts);
    }

    /// <summary>Prints the final summary: plain lines, or one JSON object with --json.</summary>
    public static void Summary(TrainingRunResult result, TrainingOutcome outcome, bool json, IReadOnlyDictionary<string, string?> outputs, TimeSpan wall)
    {
        if (json)
        {
            using var stream = Console.OpenStandardOutput();
            using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
            {
                w.WriteStartObject();
                w.WriteNumber("steps", result.Steps);
                if (result.ResumedFrom is long from) w.WriteNumber("resumed_from_step", from);
                w.WriteNumber("final_loss", result.FinalLoss);
                if (result.ValidationLoss is float v) w.WriteNumber("val_loss", v);
                else w.WriteNull("val_loss");
                w.WriteNumber("tokens", result.Tokens);
                w.WriteNumber("tokens_per_s", Math.Round(result.TokensPerSecond, 1));
                w.WriteNumber("train_seconds", Math.Round(result.Elapsed.TotalSeconds, 3));
                w.WriteNumber("wall_seconds", Math.Round(wall.TotalSeconds, 3));
                w.WriteNumber("peak_memory_bytes", result.PeakMemoryBytes);
                w.WriteStartObject("outputs");
                foreach ((string key, string? value) in outputs)
                {
                    if (value is null) w.WriteNull(key);
                    else w.WriteString(key, value);
                }
                w.WriteEndObject();
                w.WriteStartObject("outcome");
                w.WriteString("output_path", outcome.OutputPath);
                w.WriteString("kind", outcome.Kind);
                if (outcome.ParentPath is null) w.WriteNull("parent_path");
                else w.WriteString("parent_path", outcome.ParentPath);
                w.WriteString("transform", outcome.Transform);
                w.WriteStartObject("parameters");
                foreach ((string key, string value) in outcome.Parameters) w.WriteString(key, value);
                w.WriteEndObject();
                w.WriteString("data_fingerprint", outcome.DataFingerprint);
                if (outcome.AdapterPath != null) w.WriteString("adapter_path", outcome.AdapterPath);
                w.WriteEndObject();
                w.WriteEndObject();
            }
            stream.WriteByte((byte)'\n');
            return;
        }
        string val = result.ValidationLoss is float vl ? string.Create(CultureInfo.InvariantCulture, $", validation loss {vl:0.0000}") : "";
        string resumed = result.ResumedFrom is long at ? $" (resumed at step {at})" : "";
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"trained {result.Steps} steps{resumed} in {Duration(result.Elapsed)}: final loss {result.FinalLoss:0.0000}{val}, {result.TokensPerSecond:#,0} tokens/s, peak memory {Units.Bytes(result.PeakMemoryBytes)}"));
        foreach ((string key, string? value) in outputs)
            if (value != null) Console.WriteLine($"  {key,-10} {value}");
    }
}
