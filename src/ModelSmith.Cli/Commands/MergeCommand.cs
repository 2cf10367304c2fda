using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using ModelSmith.Training;
using Spectre.Console;

namespace ModelSmith.Cli.Commands;

/// <summary>`smith merge BASE ADAPTER --out FILE`: fold a LoRA adapter (GGUF or PEFT) into a base GGUF model.</summary>
internal static class MergeCommand
{
    public static Command Create()
    {
        var baseModel = new Argument<FileInfo>("base") { Description = "The base GGUF model (its adapted weights F32, F16 or BF16)." };
        var adapter = new Argument<string>("adapter") { Description = "The LoRA adapter: a llama.cpp GGUF adapter file, or a PEFT folder (adapter_config.json + adapter_model.safetensors)." };
        var output = new Option<FileInfo>("--out", "-o") { Description = "The merged GGUF model to write (replaced atomically when complete).", Required = true };
        var scale = new Option<float>("--scale") { Description = "Multiplier on the adapter's own α/r (as llama.cpp's --lora-scaled); default 1.", DefaultValueFactory = _ => 1f };
        var json = new Option<bool>("--json") { Description = "Print the result as JSON (no progress bar)." };
        var noRecord = new Option<bool>("--no-record") { Description = "Do not register the merged model in the workspace's registry." };
        var workspace = WorkspaceOption.Create();
        var command = new Command("merge", """
            Merge a LoRA adapter into a base model: W' = W + scale·(α/r)·B·A for every adapted weight (α/√r for
            rsLoRA adapters). The merged model keeps the base's metadata, tokenizer and weight types, and every
            other tensor unchanged; it runs without the adapter, in ModelSmith and in llama.cpp. PEFT adapters
            are read in transformers' layout (Q/K rows re-permuted for ggml's RoPE).

            Examples:
              smith merge base.gguf adapter.gguf -o merged.gguf
              smith merge base.gguf runs/lora-peft/ -o merged.gguf --json
              smith merge base-f16.gguf adapter.gguf --scale 0.5 -o half-strength.gguf

            Exit codes: 0 merged, 1 a file cannot be read or does not fit the base (the message says why), 2 bad usage.
            """)
        {
            baseModel, adapter, output, scale, json, noRecord, workspace,
        };
        command.SetAction(parse => Run(parse.GetValue(baseModel)!, parse.GetValue(adapter)!, parse.GetValue(output)!, parse.GetValue(scale), parse.GetValue(json),
            parse.GetValue(noRecord) ? null : Registry.Workspace.ResolveRoot(parse.GetValue(workspace))));
        return command;
    }

    private static int Run(FileInfo baseModel, string adapter, FileInfo output, float scale, bool json, string? workspaceRoot)
    {
        if (!float.IsFinite(scale)) throw new UsageException($"--scale {scale.ToString(CultureInfo.InvariantCulture)} must be a finite number.");
        string outFull = Path.GetFullPath(output.FullName);
        if (outFull == baseModel.FullName || outFull == Path.GetFullPath(adapter))
            throw new UsageException($"--out '{output}' is an input; write the merged model to a new file.");
        if (!baseModel.Exists) throw new FileNotFoundException($"Base model '{baseModel.FullName}' does not exist.", baseModel.FullName);
        if (!File.Exists(adapter) && !Directory.Exists(adapter))
            throw new FileNotFoundException($"Adapter '{adapter}' does not exist; give a GGUF adapter file or a PEFT adapter folder.", adapter);

        LoraMergeResult result;
        if (json)
        {
            result = LoraMerge.Merge(baseModel.FullName, adapter, outFull, scale);
            WriteJson(result);
            if (workspaceRoot != null) Register(workspaceRoot, result, quiet: true);
            return Program.Ok;
        }
        result = null!;
        AnsiConsole.Progress()
            .AutoClear(false)
            .HideCompleted(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .Start(ctx =>
            {
                ProgressTask task = ctx.AddTask("merging", maxValue: 1);
                var progress = new InlineProgress<LoraMergeProgress>(p =>
                {
                    task.MaxValue = Math.Max(1, p.Count);
                    task.Value = p.Done;
                    task.Description = p.Name.Length > 0 ? $"[grey]{p.Done}/{p.Count}[/] {Markup.Escape(p.Name)}" : "writing";
                });
                result = LoraMerge.Merge(baseModel.FullName, adapter, outFull, scale, progress);
                task.Description = $"merged {result.MergedTensors} tensors";
                task.Value = task.MaxValue;
            });
        var table = new Table().Border(TableBorder.Rounded).AddColumn("").AddColumn("");
        table.AddRow("base", Markup.Escape(result.ParentPath));
        table.AddRow("adapter", Markup.Escape($"{result.AdapterPath} ({result.AdapterFormat})"));
        table.AddRow("rank / alpha", string.Create(CultureInfo.InvariantCulture, $"{result.Rank} / {result.Alpha:g6}{(result.RankStabilized ? " (rsLoRA)" : "")}"));
        table.AddRow("modules", string.Join(", ", result.Modules));
        table.AddRow("scale", string.Create(CultureInfo.InvariantCulture, $"{result.UserScale:g6} × {result.AdapterScale:g6} = {result.Scale:g6}"));
        table.AddRow("merged", $"{result.MergedTensors} tensors, {Units.Count(result.MergedParameters)} weights (adapter {Units.Count(result.AdapterParameters)})");
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine(string.Create(CultureInfo.InvariantCulture,
            $"wrote [bold]{Markup.Escape(result.OutputPath)}[/] ({Units.Bytes(result.FileBytes)}) in {result.Elapsed.TotalSeconds:0.00} s"));
        if (workspaceRoot != null) Register(workspaceRoot, result, quiet: false);
        return Program.Ok;
    }

    /// <summary>Registers the merged model as fine-tuned from its base, with the adapter's hash and settings.</summary>
    private static void Register(string workspaceRoot, LoraMergeResult result, bool quiet)
    {
        var parameters = new Dictionary<string, string>
        {
            ["adapter"] = result.AdapterPath,
            ["adapter_format"] = result.AdapterFormat,
            ["rank"] = result.Rank.ToString(CultureInfo.InvariantCulture),
            ["alpha"] = result.Alpha.ToString(CultureInfo.InvariantCulture),
            ["rslora"] = result.RankStabilized ? "true" : "false",
            ["scale"] = result.Scale.ToString(CultureInfo.InvariantCulture),
            ["modules"] = string.Join(",", result.Modules),
        };
        var outcome = new TrainingOutcome(result.OutputPath, "finetuned", result.ParentPath, "merge-lora", parameters, "", result.AdapterPath);
        TrainingRegistration.Register(workspaceRoot, outcome, null, quiet);
    }

    private static void WriteJson(LoraMergeResult result)
    {
        using var stream = Console.OpenStandardOutput();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("output", result.OutputPath);
            w.WriteString("parent", result.ParentPath);
            w.WriteString("adapter", result.AdapterPath);
            w.WriteString("adapter_format", result.AdapterFormat);
            w.WriteNumber("rank", result.Rank);
            w.WriteNumber("alpha", result.Alpha);
            w.WriteBoolean("rslora", result.RankStabilized);
            w.WriteStartArray("modules");
            foreach (string m in result.Modules) w.WriteStringValue(m);
            w.WriteEndArray();
            w.WriteNumber("user_scale", result.UserScale);
            w.WriteNumber("adapter_scale", result.AdapterScale);
            w.WriteNumber("scale", result.Scale);
            w.WriteNumber("merged_tensors", result.MergedTensors);
            w.WriteNumber("merged_parameters", result.MergedParameters);
            w.WriteNumber("adapter_parameters", result.AdapterParameters);
            w.WriteNumber("file_bytes", result.FileBytes);
            w.WriteNumber("seconds", result.Elapsed.TotalSeconds);
            w.WriteEndObject();
        }
        stream.WriteByte((byte)'\n');
    }
}
