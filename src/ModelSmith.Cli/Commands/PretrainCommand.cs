using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using ModelSmith.Formats;
using ModelSmith.Models;
using ModelSmith.Tokenization;
using ModelSmith.Training;
using ModelSmith.Training.Data;
using Spectre.Console;

namespace ModelSmith.Cli.Commands;

/// <summary>`smith pretrain --data PATH... --out base.gguf`: a tokenizer and a Llama base model from scratch.</summary>
internal static class PretrainCommand
{
    public static Command Create()
    {
        var data = new Option<string[]>("--data", "-f") { Description = "Training text: files or folders (.txt, .jsonl with a \"text\" field, optionally .gz).", Required = true, AllowMultipleArgumentsPerToken = true };
        var output = new Option<FileInfo>("--out", "-o") { Description = "The GGUF model to write (replaced atomically when complete).", Required = true };
        var size = new Option<string>("--size") { Description = "Preset: tiny (256 dim, 2 layers, ctx 128, vocab 2048), small (256, 6 layers, ctx 256, vocab 4096), base (512, 8 layers, ctx 512, vocab 8192).", DefaultValueFactory = _ => "tiny" };
        var layers = new Option<int?>("--layers") { Description = "Override the preset's layer count." };
        var dim = new Option<int?>("--dim") { Description = "Override the embedding width (keep it a multiple of 256 for K-quants)." };
        var heads = new Option<int?>("--heads") { Description = "Override the attention heads." };
        var kvHeads = new Option<int?>("--kv-heads") { Description = "Override the key/value heads (grouped-query attention)." };
        var ffn = new Option<int?>("--ffn") { Description = "Override the feed-forward width (keep it a multiple of 256 for K-quants)." };
        var vocab = new Option<int?>("--vocab") { Description = "Override the vocabulary size the tokenizer learns." };
        var tokenizer = new Option<FileInfo?>("--tokenizer") { Description = "Reuse the tokenizer of this GGUF model instead of learning one." };
        var type = new Option<string>("--type") { Description = "Weight type of the written model: f32 or f16.", DefaultValueFactory = _ => "f32" };
        var common = new TrainingConsole.Options(steps: 300, lrHelp: "Peak learning rate (default 2e-3).", batch: 8, contextHelp: "Override the preset's context length (tokens per training sequence).");
        var command = new Command("pretrain", """
            Pretrain a Llama base model from scratch: learn a byte-level BPE vocabulary (GPT-2 pre-tokenization,
            <|endoftext|> as BOS/EOS, ChatML turn markers) on the training documents, then train the model with AdamW
            (warmup, cosine decay, gradient clipping), measuring the validation loss on held-out documents. Writes a
            complete GGUF that llama.cpp loads. Every step goes to a JSONL log; a checkpoint is written every few steps
            and on Ctrl-C, and --resume continues exactly where it stopped (the same losses as an uninterrupted run).

            Examples:
              smith pretrain --data data/brown --out base.gguf --size tiny --steps 300
              smith pretrain --data corpus/ --out base.gguf --size small --steps 2000 --batch 16 --lr 1e-3 --type f16
              smith pretrain --data data/brown --out base.gguf --resume
              smith pretrain --data more.txt --out b.gguf --tokenizer base.gguf --dim 512 --layers 4 --json

            Exit codes: 0 done, 1 failed (bad data, file or checkpoint; the message says why), 2 bad usage, 130 interrupted (checkpoint written).
            """)
        {
            data, output, size, layers, dim, heads, kvHeads, ffn, vocab, tokenizer, type,
        };
        common.AddTo(command);
        command.SetAction(parse =>
        {
            ModelSize preset = ModelSize.Find(parse.GetValue(size)!)
                ?? throw new UsageException($"--size '{parse.GetValue(size)}' is not a preset; use tiny, small or base.");
            ModelSize shape = preset with
            {
                Layers = parse.GetValue(layers) ?? preset.Layers,
                Dim = parse.GetValue(dim) ?? preset.Dim,
                Heads = parse.GetValue(heads) ?? preset.Heads,
                KvHeads = parse.GetValue(kvHeads) ?? preset.KvHeads,
                FeedForward = parse.GetValue(ffn) ?? preset.FeedForward,
                Context = parse.GetValue(common.Context) ?? preset.Context,
                Vocab = parse.GetValue(vocab) ?? preset.Vocab,
            };
            string? problem = shape.Validate();
            if (problem != null) throw new UsageException(problem);
            GgmlType weightType = parse.GetValue(type)!.ToLowerInvariant() switch
            {
                "f32" => GgmlType.F32,
                "f16" => GgmlType.F16,
                string t => throw new UsageException($"--type '{t}' is not supported; pretrain writes f32 or f16 (quantize the result with smith quantize)."),
            };
            TrainingRunOptions options = common.Read(parse, lora: null, defaultLr: 2e-3f);
            return Run(parse, common, parse.GetValue(data)!, parse.GetValue(output)!, shape, parse.GetValue(tokenizer), weightType, options);
        });
        return command;
    }

    private static int Run(ParseResult parse, TrainingConsole.Options common, string[] dataPaths, FileInfo output, ModelSize shape,
        FileInfo? tokenizerFile, GgmlType weightType, TrainingRunOptions options)
    {
        bool json = parse.GetValue(common.Json);
        var wall = Stopwatch.StartNew();
        string outPath = output.FullName;
        string checkpoint = parse.GetValue(common.Checkpoint)?.FullName ?? outPath + ".ckpt";
        string logPath = parse.GetValue(common.Log)?.FullName ?? outPath + ".log.jsonl";
        var dataOptions = new TrainingDataOptions
        {
            ContextLength = shape.Context,
            ValidationFraction = parse.GetValue(common.ValFraction),
            Seed = options.Seed,
        };
        void Say(string text)
        {
            if (!json) Console.WriteLine(text);
        }

        try
        {
            TokenizerSpec spec;
            if (tokenizerFile != null)
            {
                if (!tokenizerFile.Exists) throw new FileNotFoundException($"--tokenizer model '{tokenizerFile.FullName}' does not exist.", tokenizerFile.FullName);
                using GgufFile file = GgufFile.Open(tokenizerFile.FullName);
                spec = GgufTokenizer.ReadSpec(file);
                Say($"tokenizer: {spec.Tokens.Count} tokens from {tokenizerFile.Name}");
            }
            else
            {
                Say($"learning a {shape.Vocab}-token BPE vocabulary from {string.Join(", ", dataPaths)}");
                spec = LearnVocabulary(dataPaths, dataOptions, shape.Vocab, json);
                if (spec.Tokens.Count < shape.Vocab)
                    Say($"  the data supports only {spec.Tokens.Count} tokens (no pair left occurring twice)");
            }
            Tokenizer tok = Tokenizer.Create(spec);
            TrainingData data = TrainingData.Load(dataPaths, tok, dataOptions);
            ModelConfig config = shape.ToConfig(spec.Tokens.Count);
            Say(string.Create(CultureInfo.InvariantCulture,
                $"data: {data.Files.Count} files, {data.Train.TokenCount:#,0} training tokens ({data.Train.RowCount:#,0} rows of {shape.Context}), {data.Validation.TokenCount:#,0} validation tokens"));
            Say(string.Create(CultureInfo.InvariantCulture,
                $"model: llama {shape.Dim} dim, {shape.Layers} layers, {shape.Heads} heads ({shape.KvHeads} kv), ffn {shape.FeedForward}, ctx {shape.Context}, vocab {config.VocabSize}: {Units.Count(config.ParameterCount)} parameters"));

            using var model = new TrainingModel(config, options.BatchSize, shape.Context, options.Threads);
            model.Parameters.Initialize(options.Seed);
            var run = new TrainingRun(model, data, options)
            {
                CheckpointPath = checkpoint,
                LogPath = logPath,
                Resume = parse.GetValue(common.Resume),
            };
            if (!run.Resume && File.Exists(checkpoint))
                Console.Error.WriteLine($"warning: starting afresh; the checkpoint of an earlier run at {checkpoint} will be replaced (pass --resume to continue that run instead).");
            TrainingRunResult result = TrainingConsole.Run(run, json, "pretraining");
            if (result.Cancelled)
                return TrainingConsole.ReportInterrupted(result, TrainingConsole.CommandLine("pretrain", parse.Tokens.Where(t => t.Type != System.CommandLine.Parsing.TokenType.Command).Select(t => t.Value)));

            Pretraining.WriteModel(model.Parameters, spec, outPath, weightType, Path.GetFileNameWithoutExtension(outPath));
            File.Delete(checkpoint);
            TrainingOutcome outcome = OutcomeToRegister(outPath, shape, config, weightType, options, data);
            var outputs = new Dictionary<string, string?> { ["model"] = outPath, ["log"] = logPath };
            TrainingConsole.Summary(result, outcome, json, outputs, wall.Elapsed);
            if (common.WorkspaceRoot(parse) is string workspaceRoot) TrainingRegistration.Register(workspaceRoot, outcome, data, json);
            return Program.Ok;
        }
        catch (Exception e) when (TrainingConsole.IsRunFailure(e))
        {
            return Program.Fail(e.Message);
        }
    }

    /// <summary>Learns the vocabulary, with a progress bar over the merges on a terminal.</summary>
    private static TokenizerSpec LearnVocabulary(string[] dataPaths, TrainingDataOptions dataOptions, int vocab, bool json)
    {
        if (json || Console.IsOutputRedirected || !AnsiConsole.Profile.Capabilities.Interactive)
            return Pretraining.TrainTokenizer(dataPaths, dataOptions, vocab);
        TokenizerSpec spec = null!;
        AnsiConsole.Progress()
            .AutoClear(true)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn { Width = 16 }, new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .Start(ctx =>
            {
                ProgressTask task = ctx.AddTask("counting words", maxValue: 1);
                spec = Pretraining.TrainTokenizer(dataPaths, dataOptions, vocab, p =>
                {
                    if (p.Stage == BpeTrainerStage.CountingWords)
                    {
                        task.Description = string.Create(CultureInfo.InvariantCulture, $"counting words: {p.Completed:#,0} documents, {p.Words:#,0} distinct words");
                        return;
                    }
                    task.Description = "learning merges";
                    task.MaxValue = Math.Max(1, p.Total);
                    task.Value = p.Completed;
                });
                task.Value = task.MaxValue;
            });
        return spec;
    }

    /// <summary>
    /// The model this command wrote, as the registry records it (the output, its parent, the transform and its
    /// parameters, the data fingerprint); printed under "outcome" with --json.
    /// </summary>
    internal static TrainingOutcome OutcomeToRegister(string outPath, ModelSize shape, ModelConfig config, GgmlType weightType, TrainingRunOptions options, TrainingData data)
    {
        var parameters = new Dictionary<string, string>
        {
            ["dim"] = Text(shape.Dim),
            ["layers"] = Text(shape.Layers),
            ["heads"] = Text(shape.Heads),
            ["kv_heads"] = Text(shape.KvHeads),
            ["ffn"] = Text(shape.FeedForward),
            ["context"] = Text(shape.Context),
            ["vocab"] = Text(config.VocabSize),
            ["parameters"] = Text(config.ParameterCount),
            ["type"] = weightType.ToString(),
            ["steps"] = Text(options.Steps),
            ["batch"] = Text(options.BatchSize),
            ["grad_accum"] = Text(options.GradientAccumulation),
            ["lr"] = Text(options.LearningRate),
            ["min_lr"] = Text(options.MinLearningRate),
            ["warmup"] = Text(options.WarmupSteps),
            ["weight_decay"] = Text(options.WeightDecay),
            ["seed"] = Text(options.Seed),
        };
        return new TrainingOutcome(outPath, "base", null, "pretrain", parameters, data.Fingerprint);
    }

    internal static string Text<T>(T value) where T : IFormattable => value.ToString(null, CultureInfo.InvariantCulture);

    /// <summary>A rate or factor as typed (0.0001, not the float's 0.000100000005).</summary>
    internal static string Text(float value) => value.ToString("G7", CultureInfo.InvariantCulture);
}
