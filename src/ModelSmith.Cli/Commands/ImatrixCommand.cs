using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using ModelSmith.Models;
using ModelSmith.Quantization;
using ModelSmith.Tokenization;
using Spectre.Console;

namespace ModelSmith.Cli.Commands;

/// <summary>`smith imatrix MODEL --data TEXT... -o FILE`: an importance matrix as llama.cpp's llama-imatrix computes it.</summary>
internal static class ImatrixCommand
{
    public static Command Create()
    {
        var model = new Argument<FileInfo>("model") { Description = "The GGUF model (llama or gpt2, F32/F16/BF16 weights) to run the calibration text through." };
        var data = new Option<FileInfo[]>("--data", "-f") { Description = "Calibration text: .txt or .jsonl (\"text\" field) files, optionally .gz; several are joined.", AllowMultipleArgumentsPerToken = true };
        var output = new Option<FileInfo>("--out", "-o") { Description = "The imatrix file to write: GGUF (llama.cpp's current format), or the legacy binary format when it ends in .dat.", Required = true };
        var context = new Option<int>("--ctx", "-c") { Description = "Tokens per chunk; each chunk is run from an empty cache.", DefaultValueFactory = _ => 512 };
        var chunks = new Option<int?>("--chunks") { Description = "Process at most this many chunks (default: all the text gives)." };
        var processOutput = new Option<bool>("--process-output") { Description = "Also collect statistics for output.weight (as llama-imatrix --process-output)." };
        var inFiles = new Option<FileInfo[]>("--in-file") { Description = "Existing imatrix files (GGUF or .dat) to add to the result, or to convert/combine when no --data is given.", AllowMultipleArgumentsPerToken = true };
        var format = new Option<string?>("--output-format") { Description = "gguf or dat (default: from the file name)." };
        var threads = new Option<int>("--threads") { Description = "Threads (default: all cores).", DefaultValueFactory = _ => Environment.ProcessorCount };
        var json = new Option<bool>("--json") { Description = "Print the result as JSON (no progress bar)." };
        var command = new Command("imatrix", """
            Compute an importance matrix: run calibration text through the model and record, for every weight
            matrix in the blocks, the mean of the squared input activations of each column, exactly as llama.cpp's
            llama-imatrix collects them (chunks of --ctx tokens with BOS first, statistics per matmul input,
            batches under 16 tokens ignored). `smith quantize --imatrix` uses it to spend precision where the
            activations are large; llama-quantize reads the same files, and these commands read llama.cpp's.
            Also prints the perplexity over the second half of each chunk, as llama-imatrix does.

            Examples:
              smith imatrix model-f32.gguf --data data/brown/learned.txt.gz -o model.imatrix.gguf
              smith imatrix model-f16.gguf --data a.txt b.jsonl.gz --ctx 256 --chunks 100 -o model.imatrix.gguf
              smith imatrix model.gguf --in-file llama.imatrix.dat -o converted.imatrix.gguf      (convert)
              smith imatrix model.gguf --in-file a.gguf --in-file b.gguf -o combined.dat          (combine, legacy format)

            Exit codes: 0 done, 1 the model, text or imatrix cannot be used (the message says why), 2 bad usage.
            """)
        {
            model, data, output, context, chunks, processOutput, inFiles, format, threads, json,
        };
        command.SetAction(parse => Run(
            parse.GetValue(model)!, parse.GetValue(data) ?? [], parse.GetValue(output)!, parse.GetValue(context), parse.GetValue(chunks),
            parse.GetValue(processOutput), parse.GetValue(inFiles) ?? [], parse.GetValue(format), parse.GetValue(threads), parse.GetValue(json)));
        return command;
    }

    private static int Run(FileInfo modelFile, FileInfo[] data, FileInfo output, int context, int? chunks, bool processOutput,
        FileInfo[] inFiles, string? format, int threads, bool json)
    {
        if (context < 1) throw new UsageException($"--ctx {context} must be at least 1.");
        if (chunks is < 1) throw new UsageException($"--chunks {chunks} must be at least 1.");
        if (threads < 1) throw new UsageException($"--threads {threads} must be at least 1.");
        if (data.Length == 0 && inFiles.Length == 0) throw new UsageException("give calibration text with --data (or imatrix files to convert or combine with --in-file).");
        bool legacy = format?.ToLowerInvariant() switch
        {
            null => output.Name.EndsWith(".dat", StringComparison.OrdinalIgnoreCase),
            "gguf" => false,
            "dat" => true,
            _ => throw new UsageException($"--output-format '{format}' is not gguf or dat."),
        };
        if (!modelFile.Exists) throw new FileNotFoundException($"Model '{modelFile.FullName}' does not exist.", modelFile.FullName);

        try
        {
            ImportanceMatrix? combined = null;
            foreach (FileInfo f in inFiles)
            {
                ImportanceMatrix loaded = ImportanceMatrix.Load(f.FullName).ToStatistics(context);
                if (combined == null) combined = loaded;
                else combined.Accumulate(loaded);
            }

            ImatrixResult? run = null;
            if (data.Length > 0)
            {
                string text = CalibrationText.Read(data.Select(d => d.FullName).ToArray());
                LanguageModel lm;
                try
                {
                    lm = LanguageModel.Load(modelFile.FullName, threads);
                }
                catch (NotSupportedException e)
                {
                    return Program.Fail($"{modelFile}: {e.Message} Compute the importance matrix on the unquantized (F32/F16/BF16) model.");
                }
                using (lm)
                {
                    Tokenizer tokenizer = GgufTokenizer.Load(lm.File!);
                    int[] tokens = tokenizer.Encode(text, addSpecial: true);
                    if (tokens.Length < 2 * context)
                        return Program.Fail($"the calibration text gives {tokens.Length} tokens; --ctx {context} needs at least {2 * context}. Give more text or a smaller --ctx.");
                    if (context > lm.Config.ContextLength && !json)
                        AnsiConsole.MarkupLine($"[yellow]warning:[/] the model was trained on {lm.Config.ContextLength} tokens of context; --ctx {context} goes beyond it.");
                    var options = new ImatrixOptions
                    {
                        ContextSize = context,
                        MaxChunks = chunks,
                        ProcessOutput = processOutput,
                        Datasets = data.Select(d => d.ToString()).ToArray(),
                    };
                    if (json)
                    {
                        run = ImatrixComputer.Compute(lm, tokens, tokenizer.Bos, tokenizer.AddBos, options);
                    }
                    else
                    {
                        AnsiConsole.MarkupLine(string.Create(CultureInfo.InvariantCulture,
                            $"{tokens.Length:N0} tokens from {data.Length} file(s); chunks of {context} tokens, {lm.Threads} threads"));
                        AnsiConsole.Progress()
                            .AutoClear(false)
                            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                            .Start(ctx =>
                            {
                                int total = Math.Min(tokens.Length / context, chunks ?? int.MaxValue);
                                ProgressTask task = ctx.AddTask("computing", maxValue: total);
                                run = ImatrixComputer.Compute(lm, tokens, tokenizer.Bos, tokenizer.AddBos, options, new InlineProgress<ImatrixProgress>(p =>
                                {
                                    task.Value = p.Chunk;
                                    task.Description = string.Create(CultureInfo.InvariantCulture, $"chunk {p.Chunk}/{p.Chunks}, perplexity {p.Perplexity:0.0000}");
                                }));
                            });
                    }
                }
            }

            ImportanceMatrix matrix;
            if (run != null)
            {
                matrix = run.Matrix;
                if (combined != null) matrix.Accumulate(combined);
            }
            else
            {
                matrix = combined!;
            }
            if (legacy) matrix.SaveLegacy(output.FullName);
            else matrix.SaveGguf(output.FullName);

            if (json)
            {
                using var stream = Console.OpenStandardOutput();
                using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
                w.WriteStartObject();
                w.WriteString("output", output.FullName);
                w.WriteString("format", legacy ? "dat" : "gguf");
                w.WriteNumber("entries", matrix.Entries.Count);
                w.WriteNumber("chunks", matrix.ChunkCount);
                w.WriteNumber("chunk_size", matrix.ChunkSize);
                if (run != null)
                {
                    w.WriteNumber("tokens", run.Tokens);
                    w.WriteNumber("perplexity", run.Perplexity);
                    w.WriteNumber("seconds", run.Elapsed.TotalSeconds);
                }
                w.WriteStartArray("datasets");
                foreach (string d in matrix.Datasets) w.WriteStringValue(d);
                w.WriteEndArray();
                w.WriteEndObject();
                w.Flush();
                stream.WriteByte((byte)'\n');
                return Program.Ok;
            }

            var table = new Table().Border(TableBorder.Rounded).AddColumn("property").AddColumn("value");
            table.AddRow("file", Markup.Escape($"{output.FullName} ({(legacy ? "legacy .dat" : "GGUF")}, {Units.Bytes(new FileInfo(output.FullName).Length)})"));
            table.AddRow("entries", matrix.Entries.Count.ToString(CultureInfo.InvariantCulture));
            table.AddRow("chunks × tokens", $"{matrix.ChunkCount} × {matrix.ChunkSize}");
            if (run != null)
            {
                table.AddRow("perplexity", run.Perplexity.ToString("0.0000", CultureInfo.InvariantCulture));
                table.AddRow("time", string.Create(CultureInfo.InvariantCulture, $"{run.Elapsed.TotalSeconds:0.00} s ({run.Tokens / Math.Max(run.Elapsed.TotalSeconds, 1e-9):0} tokens/s)"));
            }
            table.AddRow("datasets", Markup.Escape(string.Join(", ", matrix.Datasets)));
            AnsiConsole.Write(table);
            return Program.Ok;
        }
        catch (InvalidDataException e)
        {
            return Program.Fail(e.Message);
        }
        catch (InvalidOperationException e)
        {
            return Program.Fail(e.Message);
        }
    }
}
