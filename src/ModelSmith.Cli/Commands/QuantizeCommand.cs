using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using ModelSmith.Formats;
using ModelSmith.Quantization;
using ModelSmith.Registry;
using Spectre.Console;

namespace ModelSmith.Cli.Commands;

/// <summary>`smith quantize MODEL --type q4_k_m --out FILE`: llama.cpp's file types and mixes, byte for byte.</summary>
internal static class QuantizeCommand
{
    public static Command Create()
    {
        var model = new Argument<FileInfo>("model") { Description = "The GGUF model to quantize (F32, F16 or BF16; an already quantized one needs --allow-requantize)." };
        var type = new Option<string>("--type", "-t") { Description = $"File type: {string.Join(", ", QuantFileTypes.All.Select(t => t.ToString().ToLowerInvariant()))} (q3_k, q4_k, q5_k mean the _m mixes).", Required = true };
        var output = new Option<FileInfo?>("--out", "-o") { Description = "The quantized GGUF to write (replaced atomically when complete)." };
        var imatrix = new Option<FileInfo?>("--imatrix") { Description = "Importance matrix from `smith imatrix` or llama.cpp's llama-imatrix (GGUF or legacy .dat)." };
        var threads = new Option<int>("--threads") { Description = "Threads (default: all cores).", DefaultValueFactory = _ => Environment.ProcessorCount };
        var allowRequantize = new Option<bool>("--allow-requantize") { Description = "Allow converting tensors that are already quantized (quality suffers)." };
        var noFallback = new Option<bool>("--no-fallback") { Description = "Refuse instead of using a fallback type when a tensor's row length does not fit the block type." };
        var keep = new Option<string[]>("--keep") { Description = "PATTERN=TYPE: store matching tensors as TYPE (repeatable; first match wins). PATTERN is a glob over the whole name (* and ?), or re:REGEX searched in the name.", AllowMultipleArgumentsPerToken = false };
        var pure = new Option<bool>("--pure") { Description = "No mix: every matrix gets the file type's default block type (llama-quantize --pure)." };
        var dryRun = new Option<bool>("--dry-run") { Description = "Show the type of every tensor and the sizes without writing anything." };
        var json = new Option<bool>("--json") { Description = "Print the result as JSON (no progress bar)." };
        var noRecord = new Option<bool>("--no-record") { Description = "Do not register the output in the workspace's registry." };
        var workspace = WorkspaceOption.Create();
        var command = new Command("quantize", """
            Quantize a GGUF model to one of llama.cpp's file types, choosing each tensor's type as llama.cpp's
            llama-quantize does (output and embedding, attn_v and ffn_down by layer, grouped-query and expert
            rules), with the same bytes. Rows that do not fit a block type fall back as llama.cpp does (Q4_K →
            Q5_0, Q6_K → Q8_0, F16 when not even 32 divides the row); the fallbacks are listed. With --imatrix
            the quantizers weigh each column by its importance, as llama.cpp's do.
            The output is registered in the workspace as a quantized variant whose parent is the input (which is
            registered as a base model first if it is not known); --no-record skips that.

            Examples:
              smith quantize model-f32.gguf --type q4_k_m -o model-q4_k_m.gguf
              smith quantize model-f16.gguf --type q3_k_s --imatrix model.imatrix.gguf -o model-q3_k_s.gguf
              smith quantize model.gguf --type q4_k_m --keep 'blk.*.ffn_down.weight=q6_k' --keep 're:attn_(q|k)=q5_k' -o out.gguf
              smith quantize model.gguf --type q8_0 --dry-run
              smith quantize model-q8_0.gguf --type q4_0 --allow-requantize -o model-q4_0.gguf

            Exit codes: 0 done, 1 the model or imatrix cannot be quantized as asked (the message says why), 2 bad usage.
            """)
        {
            model, type, output, imatrix, threads, allowRequantize, noFallback, keep, pure, dryRun, json, noRecord, workspace,
        };
        command.SetAction(parse => Run(
            parse.GetValue(model)!, parse.GetValue(type)!, parse.GetValue(output), parse.GetValue(imatrix), parse.GetValue(threads),
            parse.GetValue(allowRequantize), parse.GetValue(noFallback), parse.GetValue(keep) ?? [], parse.GetValue(pure),
            parse.GetValue(dryRun), parse.GetValue(json), parse.GetValue(noRecord) ? null : Workspace.ResolveRoot(parse.GetValue(workspace))));
        return command;
    }

    private static int Run(FileInfo model, string typeText, FileInfo? output, FileInfo? imatrixFile, int threads, bool allowRequantize,
        bool noFallback, string[] keep, bool pure, bool dryRun, bool json, string? workspacePath)
    {
        QuantFileType fileType = QuantFileTypes.TryParse(typeText)
            ?? throw new UsageException($"--type '{typeText}' is not a file type; use one of {string.Join(", ", QuantFileTypes.All.Select(t => t.ToString().ToLowerInvariant()))}.");
        if (threads < 1) throw new UsageException($"--threads {threads} must be at least 1.");
        if (output == null && !dryRun) throw new UsageException("give the output file with --out (or use --dry-run to only show the plan).");
        var overrides = new List<TensorTypeOverride>();
        foreach (string spec in keep)
        {
            try
            {
                overrides.Add(TensorTypeOverride.Parse(spec));
            }
            catch (FormatException e)
            {
                throw new UsageException($"--keep {e.Message}");
            }
        }
        if (!model.Exists) throw new FileNotFoundException($"Model '{model.FullName}' does not exist.", model.FullName);
        if (output != null && string.Equals(Path.GetFullPath(output.FullName), model.FullName, StringComparison.Ordinal))
            throw new UsageException($"--out '{output}' is the input model; write the quantized model to a new file.");

        ImportanceMatrix? importance = null;
        if (imatrixFile != null)
        {
            try
            {
                importance = ImportanceMatrix.Load(imatrixFile.FullName);
            }
            catch (InvalidDataException e)
            {
                return Program.Fail($"{imatrixFile}: {e.Message}");
            }
        }
        var options = new QuantizeOptions
        {
            FileType = fileType,
            Importance = importance,
            ImportanceFile = imatrixFile?.ToString(),
            Overrides = overrides,
            AllowRequantize = allowRequantize,
            NoFallback = noFallback,
            Pure = pure,
            Threads = threads,
        };

        try
        {
            if (dryRun)
            {
                using GgufFile input = GgufFile.Open(model.FullName);
                QuantizationPlan plan = ModelQuantizer.Plan(input, options);
                if (json) WriteJson(plan, null, null);
                else Report(plan, null, showTensors: true);
                return Program.Ok;
            }

            QuantizationResult result;
            if (json)
            {
                result = ModelQuantizer.Quantize(model.FullName, output!.FullName, options);
                WriteJson(result.Plan, result, Record(workspacePath, model, result, imatrixFile, keep, pure, allowRequantize));
                return Program.Ok;
            }
            using (GgufFile input = GgufFile.Open(model.FullName))
            {
                QuantizationPlan preview = ModelQuantizer.Plan(input, options);
                foreach (string warning in preview.Warnings)
                    AnsiConsole.MarkupLine($"[yellow]warning:[/] {Markup.Escape(warning)}");
            }
            result = null!;
            AnsiConsole.Progress()
                .AutoClear(false)
                .HideCompleted(false)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                .Start(ctx =>
                {
                    ProgressTask task = ctx.AddTask($"quantizing to {fileType}", maxValue: 1);
                    var progress = new InlineProgress<QuantizeProgress>(p =>
                    {
                        task.MaxValue = Math.Max(1, p.ElementsTotal);
                        task.Value = p.ElementsDone;
                        task.Description = $"[grey]{p.Index}/{p.Count}[/] {Markup.Escape(p.Name)}";
                    });
                    result = ModelQuantizer.Quantize(model.FullName, output!.FullName, options, progress);
                    task.Description = $"quantized {result.Plan.Tensors.Count} tensors to {fileType}";
                    task.Value = task.MaxValue;
                });
            Report(result.Plan, result, showTensors: false);
            if (Record(workspacePath, model, result, imatrixFile, keep, pure, allowRequantize) is { } recorded)
                AnsiConsole.MarkupLine(Markup.Escape($"registered {recorded.Id} (quantized from {recorded.Parents[0]}) in {workspacePath}"));
            return Program.Ok;
        }
        catch (QuantizationException e)
        {
            return Program.Fail(e.Message);
        }
        catch (InvalidDataException e)
        {
            return Program.Fail(e.Message);
        }
    }

    private static void Report(QuantizationPlan plan, QuantizationResult? result, bool showTensors)
    {
        if (showTensors)
        {
            var tensors = new Table().Border(TableBorder.Simple).Title($"{plan.Tensors.Count} tensors")
                .AddColumn("tensor").AddColumn("shape").AddColumn("from").AddColumn("to").AddColumn("note");
            foreach (TensorPlan t in plan.Tensors)
            {
                string note = t.Wanted is { } w ? $"fallback from {w}" : t.Override != null ? $"--keep {t.Override}" : !t.Quantizable ? "kept" : "";
                if (t.UsesImportance) note = (note.Length > 0 ? note + ", " : "") + "imatrix";
                tensors.AddRow(Markup.Escape(t.Name), Markup.Escape("[" + string.Join(", ", t.Shape) + "]"), t.From.ToString(), t.To.ToString(), Markup.Escape(note));
            }
            AnsiConsole.Write(tensors);
        }

        var byType = new Table().Border(TableBorder.Rounded).Title(result == null ? "plan" : "result")
            .AddColumn("type").AddColumn(new TableColumn("tensors").RightAligned()).AddColumn(new TableColumn("parameters").RightAligned())
            .AddColumn(new TableColumn("before").RightAligned()).AddColumn(new TableColumn("after").RightAligned()).AddColumn(new TableColumn("bits/weight").RightAligned());
        foreach (var group in plan.Tensors.GroupBy(t => t.To).OrderByDescending(g => g.Sum(t => t.BytesAfter)))
        {
            long elements = group.Sum(t => t.Elements);
            long after = group.Sum(t => t.BytesAfter);
            byType.AddRow(group.Key.ToString(), group.Count().ToString(CultureInfo.InvariantCulture), Units.Count(elements),
                Units.Bytes(group.Sum(t => t.BytesBefore)), Units.Bytes(after), Bpw(after, elements));
        }
        byType.AddRow("[bold]total[/]", plan.Tensors.Count.ToString(CultureInfo.InvariantCulture), Units.Count(plan.Elements),
            Units.Bytes(plan.BytesBefore), Units.Bytes(plan.BytesAfter), $"{Bpw(plan.BytesBefore, plan.Elements)} → {Bpw(plan.BytesAfter, plan.Elements)}");
        AnsiConsole.Write(byType);

        var fallbacks = plan.Fallbacks.ToList();
        if (fallbacks.Count > 0)
        {
            AnsiConsole.MarkupLine($"[yellow]{fallbacks.Count} fallback(s)[/]: these rows are not a multiple of the wanted type's block, so llama.cpp's compatible type is used");
            var table = new Table().Border(TableBorder.Simple)
                .AddColumn("wanted").AddColumn("used").AddColumn(new TableColumn("row length").RightAligned()).AddColumn(new TableColumn("tensors").RightAligned()).AddColumn("e.g.");
            foreach (var group in fallbacks.GroupBy(t => (Wanted: t.Wanted!.Value, t.To, Row: t.Shape[0])).OrderByDescending(g => g.Count()))
            {
                string examples = string.Join(", ", group.Take(3).Select(t => t.Name)) + (group.Count() > 3 ? ", ..." : "");
                table.AddRow(group.Key.Wanted.ToString(), group.Key.To.ToString(), group.Key.Row.ToString(CultureInfo.InvariantCulture),
                    group.Count().ToString(CultureInfo.InvariantCulture), Markup.Escape(examples));
            }
            AnsiConsole.Write(table);
        }
        int imatrixTensors = plan.Tensors.Count(t => t.UsesImportance);
        if (plan.Options.Importance != null)
            AnsiConsole.MarkupLine($"importance matrix used for {imatrixTensors} of {plan.Tensors.Count(t => t.Converted)} converted tensors");
        if (result != null)
        {
            AnsiConsole.MarkupLine(string.Create(CultureInfo.InvariantCulture,
                $"wrote [bold]{Markup.Escape(result.OutputPath)}[/] ({Units.Bytes(result.FileBytes)}, general.file_type {(int)plan.Options.FileType} = {plan.Options.FileType}) in {result.Elapsed.TotalSeconds:0.00} s"));
        }
    }

    private static string Bpw(long bytes, long elements) =>
        elements == 0 ? "-" : (8.0 * bytes / elements).ToString("0.000", CultureInfo.InvariantCulture);

    /// <summary>
    /// Registers the output as a quantized variant of the input (registering the input first if needed). The
    /// parameters record what decides the bytes: type, imatrix (name and hash), overrides, pure, requantize.
    /// </summary>
    private static ModelVariant? Record(string? workspacePath, FileInfo model, QuantizationResult result, FileInfo? imatrixFile,
        string[] keep, bool pure, bool allowRequantize)
    {
        if (workspacePath == null) return null;
        return WorkspaceOption.Record(() =>
        {
            Workspace workspace = Workspace.Open(workspacePath);
            ModelVariant parent = WorkspaceOption.VariantOf(workspace, model.FullName);
            var parameters = new Dictionary<string, object?>
            {
                ["type"] = result.Plan.Options.FileType.ToString(),
                ["imatrix"] = imatrixFile == null ? null : new Dictionary<string, string>
                {
                    ["file"] = imatrixFile.Name,
                    ["sha256"] = FileHash.Sha256(imatrixFile.FullName),
                },
                ["keep"] = keep,
                ["pure"] = pure,
                ["allow_requantize"] = allowRequantize,
            };
            return workspace.Register(new ModelRegistration
            {
                Path = result.OutputPath,
                Kind = VariantKind.Quantized,
                Parents = [parent.Id],
                Transformation = "quantize",
                TransformParameters = JsonSerializer.Serialize(parameters),
            });
        });
    }

    private static void WriteJson(QuantizationPlan plan, QuantizationResult? result, ModelVariant? recorded)
    {
        using var stream = Console.OpenStandardOutput();
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        w.WriteStartObject();
        w.WriteString("file_type", plan.Options.FileType.ToString());
        w.WriteNumber("file_type_id", (int)plan.Options.FileType);
        if (result != null)
        {
            w.WriteString("output", result.OutputPath);
            w.WriteNumber("file_bytes", result.FileBytes);
            w.WriteNumber("seconds", result.Elapsed.TotalSeconds);
        }
        w.WriteBoolean("dry_run", result == null);
        if (recorded != null)
        {
            w.WriteString("variant_id", recorded.Id);
            w.WriteString("parent_id", recorded.Parents[0]);
        }
        w.WriteNumber("tensor_bytes_before", plan.BytesBefore);
        w.WriteNumber("tensor_bytes_after", plan.BytesAfter);
        w.WriteNumber("parameters", plan.Elements);
        w.WriteNumber("bits_per_weight_before", plan.BitsPerWeightBefore);
        w.WriteNumber("bits_per_weight_after", plan.BitsPerWeightAfter);
        w.WriteNumber("fallbacks", plan.Fallbacks.Count());
        w.WriteStartArray("warnings");
        foreach (string warning in plan.Warnings) w.WriteStringValue(warning);
        w.WriteEndArray();
        w.WriteStartObject("types");
        foreach (var group in plan.Tensors.GroupBy(t => t.To).OrderBy(g => g.Key))
        {
            w.WriteStartObject(group.Key.ToString());
            w.WriteNumber("tensors", group.Count());
            w.WriteNumber("bytes", group.Sum(t => t.BytesAfter));
            w.WriteEndObject();
        }
        w.WriteEndObject();
        w.WriteStartArray("tensors");
        for (int i = 0; i < plan.Tensors.Count; i++)
        {
            TensorPlan t = plan.Tensors[i];
            w.WriteStartObject();
            w.WriteString("name", t.Name);
            w.WriteStartArray("shape");
            foreach (long d in t.Shape) w.WriteNumberValue(d);
            w.WriteEndArray();
            w.WriteString("from", t.From.ToString());
            w.WriteString("to", t.To.ToString());
            if (t.Wanted is { } wanted) w.WriteString("fallback_from", wanted.ToString());
            if (t.Override != null) w.WriteString("override", t.Override.ToString());
            w.WriteBoolean("imatrix", t.UsesImportance);
            w.WriteNumber("bytes_before", t.BytesBefore);
            w.WriteNumber("bytes_after", t.BytesAfter);
            if (result != null) w.WriteNumber("seconds", result.TensorTimes[i].TotalSeconds);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
        w.Flush();
        stream.WriteByte((byte)'\n');
    }
}

/// <summary>An <see cref="IProgress{T}"/> that reports on the calling thread (System.Progress would post to the thread pool).</summary>
internal sealed class InlineProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
