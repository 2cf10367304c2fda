using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using ModelSmith.Formats;
using ModelSmith.Models;
using Spectre.Console;

namespace ModelSmith.Cli.Commands;

/// <summary>`smith info MODEL`: architecture, parameter count, tensors, metadata.</summary>
internal static class InfoCommand
{
    public static Command Create()
    {
        var model = new Argument<FileInfo>("model") { Description = "A GGUF model file." };
        var json = new Option<bool>("--json") { Description = "Print machine-readable JSON instead of tables." };
        var all = new Option<bool>("--all") { Description = "List every tensor and every element of long metadata arrays." };
        var command = new Command("info", """
            Show a model's architecture, parameter count, tensors (shapes and types) and metadata.

            Examples:
              smith info models/stories260K.gguf
              smith info models/stories260K.gguf --json
            """)
        {
            model, json, all,
        };
        command.SetAction(parse => Run(parse.GetValue(model)!, parse.GetValue(json), parse.GetValue(all)));
        return command;
    }

    private static int Run(FileInfo path, bool json, bool all)
    {
        using var file = GgufFile.Open(path.FullName);
        ModelConfig? config = null;
        string? configProblem = null;
        try
        {
            config = ModelConfig.FromGguf(file);
        }
        catch (ModelFormatException e)
        {
            configProblem = e.Problem;
        }
        long tensorParameters = 0;
        foreach (GgufTensorInfo t in file.Tensors) tensorParameters += t.ElementCount;

        if (json)
        {
            using var stream = Console.OpenStandardOutput();
            using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
            w.WriteStartObject();
            w.WriteString("path", file.Path);
            w.WriteNumber("file_size", file.Length);
            w.WriteNumber("gguf_version", file.Version);
            w.WriteNumber("alignment", file.Alignment);
            w.WriteString("architecture", file.GetStringOrNull("general.architecture"));
            w.WriteNumber("parameters", tensorParameters);
            if (config != null)
            {
                w.WriteStartObject("config");
                w.WriteNumber("vocab_size", config.VocabSize);
                w.WriteNumber("context_length", config.ContextLength);
                w.WriteNumber("embedding_length", config.EmbeddingLength);
                w.WriteNumber("block_count", config.BlockCount);
                w.WriteNumber("feed_forward_length", config.FeedForwardLength);
                w.WriteNumber("head_count", config.HeadCount);
                w.WriteNumber("head_count_kv", config.KvHeadCount);
                w.WriteNumber("head_dim", config.HeadDim);
                w.WriteNumber("norm_epsilon", config.NormEpsilon);
                w.WriteNumber("rope_freq_base", config.RopeFreqBase);
                w.WriteBoolean("tied_output", config.TiedOutput);
                w.WriteEndObject();
            }
            else
            {
                w.WriteString("config_error", configProblem);
            }
            w.WriteStartObject("metadata");
            foreach (string key in file.MetadataKeys) WriteJsonValue(w, key, file.Metadata[key], all);
            w.WriteEndObject();
            w.WriteStartArray("tensors");
            foreach (GgufTensorInfo t in file.Tensors)
            {
                w.WriteStartObject();
                w.WriteString("name", t.Name);
                w.WriteString("type", t.Type.ToString());
                w.WriteStartArray("shape");
                foreach (long d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteNumber("offset", file.DataOffset + t.Offset);
                w.WriteNumber("bytes", t.ByteSize);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
            w.Flush();
            stream.WriteByte((byte)'\n');
            return Program.Ok;
        }

        var summary = new Table().AddColumn("property").AddColumn("value").Border(TableBorder.Rounded);
        summary.AddRow("file", Markup.Escape(file.Path));
        summary.AddRow("size", Units.Bytes(file.Length));
        summary.AddRow("format", $"GGUF v{file.Version}, alignment {file.Alignment}");
        summary.AddRow("architecture", Markup.Escape(file.GetStringOrNull("general.architecture") ?? "?"));
        summary.AddRow("parameters", $"{Units.Count(tensorParameters)} ({tensorParameters:N0})");
        if (config != null)
        {
            summary.AddRow("layers × width", $"{config.BlockCount} × {config.EmbeddingLength}, feed-forward {config.FeedForwardLength}");
            summary.AddRow("heads", $"{config.HeadCount} query, {config.KvHeadCount} key/value (group {config.GroupSize}), head size {config.HeadDim}");
            summary.AddRow("vocabulary / context", $"{config.VocabSize} / {config.ContextLength}");
            if (config.Architecture == ModelArchitecture.Llama)
                summary.AddRow("rope", $"freq_base {config.RopeFreqBase.ToString(CultureInfo.InvariantCulture)}, {config.RopeDims} dims");
            summary.AddRow("output", config.TiedOutput ? "tied to the token embedding" : "separate");
        }
        else
        {
            summary.AddRow("[red]config[/]", Markup.Escape(configProblem ?? ""));
        }
        var typeBytes = new SortedDictionary<string, long>(StringComparer.Ordinal);
        foreach (GgufTensorInfo t in file.Tensors)
            typeBytes[t.Type.ToString()] = typeBytes.GetValueOrDefault(t.Type.ToString()) + t.ByteSize;
        summary.AddRow("tensor types", Markup.Escape(string.Join(", ", typeBytes.Select(kv => $"{kv.Key} {Units.Bytes(kv.Value)}"))));
        AnsiConsole.Write(summary);

        var metadata = new Table().AddColumn("key").AddColumn("type").AddColumn("value").Border(TableBorder.Simple).Title("metadata");
        foreach (string key in file.MetadataKeys)
        {
            GgufValue v = file.Metadata[key];
            string type = v.Type == GgufValueType.Array ? $"{v.ElementType}[{v.ArrayLength}]" : v.Type.ToString();
            string text = v.ToString();
            if (!all && text.Length > 100) text = text[..97] + "...";
            metadata.AddRow(Markup.Escape(key), Markup.Escape(type), Markup.Escape(text));
        }
        AnsiConsole.Write(metadata);

        var tensors = new Table().AddColumn("tensor").AddColumn("type").AddColumn("shape").AddColumn(new TableColumn("bytes").RightAligned())
            .Border(TableBorder.Simple).Title($"{file.Tensors.Count} tensors");
        int shown = 0;
        foreach (GgufTensorInfo t in file.Tensors)
        {
            if (!all && shown == 40)
            {
                tensors.AddRow($"... {file.Tensors.Count - shown} more (--all lists every tensor)", "", "", "");
                break;
            }
            tensors.AddRow(Markup.Escape(t.Name), t.Type.ToString(), Markup.Escape(t.ShapeText), Units.Bytes(t.ByteSize));
            shown++;
        }
        AnsiConsole.Write(tensors);
        return Program.Ok;
    }

    private static void WriteJsonValue(Utf8JsonWriter w, string? name, GgufValue v, bool all)
    {
        if (name != null) w.WritePropertyName(name);
        switch (v.Value)
        {
            case string s: w.WriteStringValue(s); break;
            case bool b: w.WriteBooleanValue(b); break;
            case float f: w.WriteNumberValue(f); break;
            case double d: w.WriteNumberValue(d); break;
            case ulong u: w.WriteNumberValue(u); break;
            case Array a:
                w.WriteStartArray();
                int n = all ? a.Length : Math.Min(a.Length, 64);
                for (int i = 0; i < n; i++)
                {
                    object e = a.GetValue(i)!;
                    switch (e)
                    {
                        case GgufValue nested: WriteJsonValue(w, null, nested, all); break;
                        case string s: w.WriteStringValue(s); break;
                        case bool b: w.WriteBooleanValue(b); break;
                        case float f: w.WriteNumberValue(f); break;
                        case double d: w.WriteNumberValue(d); break;
                        case ulong u: w.WriteNumberValue(u); break;
                        default: w.WriteNumberValue(Convert.ToInt64(e, CultureInfo.InvariantCulture)); break;
                    }
                }
                w.WriteEndArray();
                break;
            default: w.WriteNumberValue(v.AsInt64()); break;
        }
    }
}
