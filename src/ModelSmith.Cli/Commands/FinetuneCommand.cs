using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using ModelSmith.Formats;
using ModelSmith.Models;
using ModelSmith.Tokenization;
using ModelSmith.Training;
using ModelSmith.Training.Data;

namespace ModelSmith.Cli.Commands;

/// <summary>`smith finetune MODEL --data PATH... --method full|lora --out merged.gguf`.</summary>
internal static class FinetuneCommand
{
    /// <summary>Short module names and the GGUF module each stands for.</summary>
    private static readonly Dictionary<string, string> s_modules = new(StringComparer.OrdinalIgnoreCase)
    {
        ["q"] = "attn_q", ["k"] = "attn_k", ["v"] = "attn_v", ["qkv"] = "attn_qkv", ["o"] = "attn_output",
        ["gate"] = "ffn_gate", ["up"] = "ffn_up", ["down"] = "ffn_down",
        ["q_proj"] = "attn_q", ["k_proj"] = "attn_k", ["v_proj"] = "attn_v", ["o_proj"] = "attn_output",
        ["gate_proj"] = "ffn_gate", ["up_proj"] = "ffn_up", ["down_proj"] = "ffn_down",
    };

    public static Command Create()
    {
        var model = new Argument<FileInfo>("model") { Description = "The base GGUF model (F32, F16 or BF16 weights)." };
        var data = new Option<string[]>("--data", "-f") { Description = "Training data: files or folders of text, JSONL text, Alpaca or chat records (optionally .gz).", Required = true, AllowMultipleArgumentsPerToken = true };
        var method = new Option<string>("--method") { Description = "full: train every weight; lora: train low-rank adapters and merge them.", DefaultValueFactory = _ => "lora" };
        var output = new Option<FileInfo>("--out", "-o") { Description = "The fine-tuned (merged) GGUF model to write; same metadata, tokenizer and weight types as the base.", Required = true };
        var rank = new Option<int>("--rank", "-r") { Description = "LoRA rank.", DefaultValueFactory = _ => 8 };
        var alpha = new Option<float>("--alpha") { Description = "LoRA alpha (the update is scaled by alpha / rank).", DefaultValueFactory = _ => 16f };
        var dropout = new Option<float>("--dropout") { Description = "LoRA dropout on the adapter input.", DefaultValueFactory = _ => 0f };
        var rslora = new Option<bool>("--rslora") { Description = "Rank-stabilised scaling alpha / sqrt(rank)." };
        var modules = new Option<string?>("--modules") { Description = "Adapted layers, comma separated: q,k,v,o,gate,up,down (GPT-2: qkv,o,up,down); default all linear layers." };
        var adapterOut = new Option<FileInfo?>("--adapter-out") { Description = "GGUF LoRA adapter to write (default: <out-stem>.lora.gguf for lora)." };
        var peftOut = new Option<DirectoryInfo?>("--peft-out") { Description = "PEFT adapter folder to write (adapter_config.json + adapter_model.safetensors; default: <out-stem>.peft/ for lora)." };
        var format = new Option<string>("--format") { Description = "Record format of the data: auto, text, jsonl, alpaca or chat.", DefaultValueFactory = _ => "auto" };
        var allTokens = new Option<bool>("--all-tokens") { Description = "Train on prompts too (default: only on completions of Alpaca and chat records)." };
        var skipBad = new Option<bool>("--skip-bad-records") { Description = "Skip and count malformed records instead of stopping at the first." };
        var chatTemplate = new Option<string?>("--chat-template") { Description = "Chat template: a llama.cpp name (chatml, llama2, llama3, zephyr ...) or Jinja text; default the model's, else chatml." };
        var common = new TrainingConsole.Options(steps: 100, lrHelp: "Peak learning rate (default: 1e-3 for lora, 1e-4 for full).", batch: 8, contextHelp: "Tokens per training sequence (default: the model's context length, at most 512).");
        var command = new Command("finetune", """
            Fine-tune a model on domain text or instruction data, training every weight (--method full) or LoRA
            adapters (--method lora) that are then merged. Alpaca and chat records are rendered with the chat template
            (the model's tokenizer.chat_template, else ChatML) and, unless --all-tokens, only the completions count
            towards the loss. The merged model keeps the base's tokenizer, metadata and weight types, and records the
            chat template; LoRA also writes the adapter as a llama.cpp GGUF adapter and as a PEFT folder. Checkpoints,
            the JSONL log and --resume work as in smith pretrain.

            Examples:
              smith finetune base.gguf --data data/email --method lora --out email.gguf
              smith finetune base.gguf --data chats.jsonl --format chat --rank 16 --alpha 32 --modules q,v --out chat.gguf
              smith finetune base.gguf --data notes.txt --method full --steps 200 --lr 1e-4 --out notes.gguf --json
              smith finetune base.gguf --data data/email --out email.gguf --resume

            Exit codes: 0 done, 1 failed (bad data names the file and line; bad model or checkpoint), 2 bad usage, 130 interrupted (checkpoint written).
            """)
        {
            model, data, method, output, rank, alpha, dropout, rslora, modules, adapterOut, peftOut, format, allTokens, skipBad, chatTemplate,
        };
        common.AddTo(command);
        command.SetAction(parse =>
        {
            string m = parse.GetValue(method)!.ToLowerInvariant();
            if (m is not ("full" or "lora")) throw new UsageException($"--method '{m}' is not supported; use full or lora.");
            LoraOptions? lora = m == "lora"
                ? new LoraOptions
                {
                    Rank = parse.GetValue(rank),
                    Alpha = parse.GetValue(alpha),
                    Dropout = parse.GetValue(dropout),
                    RankStabilized = parse.GetValue(rslora),
                    Modules = ParseModules(parse.GetValue(modules)),
                }
                : null;
            DataFormat dataFormat = parse.GetValue(format)!.ToLowerInvariant() switch
            {
                "auto" => DataFormat.Auto,
                "text" => DataFormat.Text,
                "jsonl" or "json" => DataFormat.JsonText,
                "alpaca" => DataFormat.Alpaca,
                "chat" => DataFormat.Chat,
                string f => throw new UsageException($"--format '{f}' is not a data format; use auto, text, jsonl, alpaca or chat."),
            };
            TrainingRunOptions options = common.Read(parse, lora, lora != null ? 1e-3f : 1e-4f);
            var dataOptions = new TrainingDataOptions
            {
                Format = dataFormat,
                CompletionOnly = !parse.GetValue(allTokens),
                SkipBadRecords = parse.GetValue(skipBad),
                ValidationFraction = parse.GetValue(common.ValFraction),
                Seed = options.Seed,
            };
            return Run(parse, common, parse.GetValue(model)!, parse.GetValue(data)!, parse.GetValue(output)!, options, dataOptions,
                parse.GetValue(chatTemplate), parse.GetValue(adapterOut), parse.GetValue(peftOut));
        });
        return command;
    }

    private static List<string>? ParseModules(string? text)
    {
        if (string.IsNullOrWhiteSpace(text) || text.Trim().Equals("all", StringComparison.OrdinalIgnoreCase)) return null;
        var list = new List<string>();
        foreach (string part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string name = s_modules.TryGetValue(part, out string? mapped) ? mapped : part.ToLowerInvariant();
            if (!list.Contains(name)) list.Add(name);
        }
        return list;
    }

    private static int Run(ParseResult parse, TrainingConsole.Options common, FileInfo modelFile, string[] dataPaths, FileInfo output,
        TrainingRunOptions options, TrainingDataOptions dataOptions, string? templateText, FileInfo? adapterOut, DirectoryInfo? peftOut)
    {
        bool json = parse.GetValue(common.Json);
        var wall = Stopwatch.StartNew();
        if (!modelFile.Exists) throw new FileNotFoundException($"Model '{modelFile.FullName}' does not exist.", modelFile.FullName);
        string outPath = output.FullName;
        if (string.Equals(outPath, modelFile.FullName, StringComparison.Ordinal))
            throw new UsageException($"--out '{output}' is the base model; write the fine-tuned model to a new file.");
        string stem = Path.Combine(Path.GetDirectoryName(outPath)!, Path.GetFileNameWithoutExtension(outPath));
        string checkpoint = parse.GetValue(common.Checkpoint)?.FullName ?? outPath + ".ckpt";
        string logPath = parse.GetValue(common.Log)?.FullName ?? outPath + ".log.jsonl";
        bool lora = options.Lora != null;
        string? adapterPath = adapterOut?.FullName ?? (lora ? stem + ".lora.gguf" : null);
        string? peftPath = peftOut?.FullName ?? (lora ? stem + ".peft" : null);
        if (!lora && (adapterOut != null || peftOut != null))
            throw new UsageException("--adapter-out and --peft-out need --method lora; full fine-tuning has no adapter.");
        void Say(string text)
        {
            if (!json) Console.WriteLine(text);
        }

        try
        {
            using GgufFile file = GgufFile.Open(modelFile.FullName);
            ModelConfig config = ModelConfig.FromGguf(file);
            if (options.Lora != null)
            {
                string? problem = options.Lora.Validate(config.Architecture);
                if (problem != null) throw new UsageException(problem);
            }
            foreach (GgufTensorInfo t in file.Tensors)
                if (t.Type is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16))
                    throw new ModelFormatException(file.Path, t.Offset, $"tensor '{t.Name}' is {t.Type}; fine-tuning starts from F32, F16 or BF16 weights. Fine-tune the unquantized model, then quantize the result.");
            Tokenizer tokenizer = GgufTokenizer.Load(file);
            ChatTemplate template;
            try
            {
                template = templateText != null ? ChatTemplate.Parse(templateText) : ChatTemplate.FromMetadata(file);
            }
            catch (NotSupportedException e)
            {
                throw new UsageException(e.Message);
            }
            int context = parse.GetValue(common.Context) ?? Math.Min(config.ContextLength, 512);
            if (context < 1 || context > config.ContextLength)
                throw new UsageException($"--context {context} must be between 1 and the model's context length {config.ContextLength}.");
            dataOptions = dataOptions with { ContextLength = context, ChatTemplate = template };
            TrainingData data = TrainingData.Load(dataPaths, tokenizer, dataOptions);
            if (data.Stats.Skipped > 0)
                Say($"skipped {data.Stats.Skipped} malformed records (--skip-bad-records)");
            Say(string.Create(CultureInfo.InvariantCulture,
                $"data: {data.Files.Count} files, {data.Stats.Documents:#,0} documents, {data.Train.TargetCount:#,0} training targets in {data.Train.RowCount:#,0} rows of {context}; chat template {template.Name}"));

            using var model = new TrainingModel(config, options.BatchSize, context, options.Threads);
            model.Parameters.CopyFrom(TrainingGguf.Import(file));
            var run = new TrainingRun(model, data, options)
            {
                CheckpointPath = checkpoint,
                LogPath = logPath,
                Resume = parse.GetValue(common.Resume),
            };
            string what = run.Adapter is { } a
                ? string.Create(CultureInfo.InvariantCulture, $"LoRA rank {a.Options.Rank} on {a.Layout.Targets.Count} layers ({Units.Count(a.Layout.Count)} parameters)")
                : "every parameter";
            Say($"model: {modelFile.Name}, {Units.Count(config.ParameterCount)} parameters; training {what}");
            if (!run.Resume && File.Exists(checkpoint))
                Console.Error.WriteLine($"warning: starting afresh; the checkpoint of an earlier run at {checkpoint} will be replaced (pass --resume to continue that run instead).");
            TrainingRunResult result = TrainingConsole.Run(run, json, lora ? "LoRA fine-tuning" : "fine-tuning");
            if (result.Cancelled)
                return TrainingConsole.ReportInterrupted(result, TrainingConsole.CommandLine("finetune", parse.Tokens.Where(t => t.Type != System.CommandLine.Parsing.TokenType.Command).Select(t => t.Value)));

            string name = Path.GetFileNameWithoutExtension(outPath);
            if (run.Adapter is { } adapter)
            {
                TrainingGguf.ExportAdapter(adapter.Parameters, adapterPath!, GgmlType.F32, name + "-lora");
                PeftAdapter.Write(adapter.Parameters, peftPath!, modelFile.FullName);
                var merged = new ModelParameters(model.Layout);
                merged.CopyFrom(model.Parameters);
                adapter.Parameters.MergeInto(merged);
                Pretraining.WriteFineTuned(file, merged, outPath, template, name);
            }
            else
            {
                Pretraining.WriteFineTuned(file, model.Parameters, outPath, template, name);
            }
            File.Delete(checkpoint);
            TrainingOutcome outcome = OutcomeToRegister(outPath, modelFile.FullName, options, data, context, adapterPath);
            var outputs = new Dictionary<string, string?> { ["model"] = outPath, ["adapter"] = adapterPath, ["peft"] = peftPath, ["log"] = logPath };
            TrainingConsole.Summary(result, outcome, json, outputs, wall.Elapsed);
            if (common.WorkspaceRoot(parse) is string workspaceRoot) TrainingRegistration.Register(workspaceRoot, outcome, data, json);
            return Program.Ok;
        }
        catch (Exception e) when (TrainingConsole.IsRunFailure(e))
        {
            return Program.Fail(e.Message);
        }
    }

    /// <summary>
    /// The model this command wrote, as the registry records it (the output, its parent, the transform and its
    /// parameters, the data fingerprint); printed under "outcome" with --json.
    /// </summary>
    internal static TrainingOutcome OutcomeToRegister(string outPath, string parentPath, TrainingRunOptions options, TrainingData data, int context, string? adapterPath)
    {
        var parameters = new Dictionary<string, string>
        {
            ["method"] = options.Lora is null ? "full" : "lora",
            ["steps"] = PretrainCommand.Text(options.Steps),
            ["batch"] = PretrainCommand.Text(options.BatchSize),
            ["grad_accum"] = PretrainCommand.Text(options.GradientAccumulation),
            ["context"] = PretrainCommand.Text(context),
            ["lr"] = PretrainCommand.Text(options.LearningRate),
            ["min_lr"] = PretrainCommand.Text(options.MinLearningRate),
            ["warmup"] = PretrainCommand.Text(options.WarmupSteps),
            ["weight_decay"] = PretrainCommand.Text(options.WeightDecay),
            ["seed"] = PretrainCommand.Text(options.Seed),
            ["completion_only"] = data.Options.CompletionOnly ? "true" : "false",
            ["chat_template"] = data.Options.ChatTemplate.Name,
        };
        if (options.Lora is { } l)
        {
            parameters["rank"] = PretrainCommand.Text(l.Rank);
            parameters["alpha"] = PretrainCommand.Text(l.Alpha);
            parameters["dropout"] = PretrainCommand.Text(l.Dropout);
            parameters["rslora"] = l.RankStabilized ? "true" : "false";
            parameters["modules"] = l.Modules is null ? "all" : string.Join(",", l.Modules);
        }
        return new TrainingOutcome(outPath, "finetuned", parentPath, options.Lora is null ? "finetune-full" : "finetune-lora", parameters, data.Fingerprint, adapterPath);
    }
}
