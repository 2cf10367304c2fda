using System.Text.Json;
using ModelSmith.Registry;

namespace ModelSmith.Cli.Commands;

/// <summary>How list, show and add print variants and results as JSON (snake_case, nulls for what was not measured).</summary>
internal static class RegistryJson
{
    public static void WriteVariant(Utf8JsonWriter w, ModelVariant v)
    {
        w.WriteString("id", v.Id);
        w.WriteString("name", v.Name);
        w.WriteString("kind", v.KindName);
        w.WriteString("status", v.Status.ToString().ToLowerInvariant());
        w.WriteString("path", v.Path);
        w.WriteString("sha256", v.Sha256);
        w.WriteNumber("size", v.Size);
        w.WriteString("architecture", v.Architecture);
        w.WriteNumber("parameters", v.ParameterCount);
        w.WriteString("type", v.TypeSummary);
        w.WriteString("created", v.Created);
        w.WriteStartArray("parents");
        foreach (string p in v.Parents) w.WriteStringValue(p);
        w.WriteEndArray();
        w.WriteString("transformation", v.Transformation);
        w.WritePropertyName("transform_parameters");
        using (JsonDocument parameters = JsonDocument.Parse(v.TransformParameters)) parameters.RootElement.WriteTo(w);
        w.WriteStartArray("data");
        foreach (DataFingerprint d in v.Data) WriteData(w, d);
        w.WriteEndArray();
    }

    public static void WriteEval(Utf8JsonWriter w, EvalResult e)
    {
        w.WriteStartObject();
        w.WriteNumber("id", e.Id);
        w.WritePropertyName("data");
        WriteData(w, e.Data);
        w.WriteNumber("context", e.Context);
        Number(w, "perplexity", e.Perplexity);
        Number(w, "perplexity_error", e.PerplexityError);
        w.WriteNumber("scored", e.ScoredTokens);
        Number(w, "mean_kld", e.MeanKld);
        Number(w, "same_top1", e.SameTop1);
        w.WriteString("reference", e.ReferenceId);
        Number(w, "acc", e.Accuracy);
        Number(w, "acc_norm", e.AccuracyNorm);
        WriteMachine(w, e.Machine);
        w.WriteString("recorded", e.Recorded?.ToString("o", System.Globalization.CultureInfo.InvariantCulture));
        w.WriteEndObject();
    }

    public static void WriteBench(Utf8JsonWriter w, BenchResult b)
    {
        w.WriteStartObject();
        w.WriteNumber("id", b.Id);
        w.WriteNumber("n_prompt", b.PromptTokens);
        Number(w, "pp_tps", b.PrefillTokensPerSecond);
        Number(w, "pp_stddev", b.PrefillStdDev);
        w.WriteNumber("n_gen", b.GeneratedTokens);
        Number(w, "tg_tps", b.DecodeTokensPerSecond);
        Number(w, "tg_stddev", b.DecodeStdDev);
        w.WriteNumber("load_seconds", b.LoadSeconds);
        w.WriteNumber("peak_resident_bytes", b.PeakResidentBytes);
        w.WriteNumber("threads", b.Threads);
        w.WriteNumber("reps", b.Repetitions);
        WriteMachine(w, b.Machine);
        w.WriteString("recorded", b.Recorded?.ToString("o", System.Globalization.CultureInfo.InvariantCulture));
        w.WriteEndObject();
    }

    private static void WriteData(Utf8JsonWriter w, DataFingerprint d)
    {
        w.WriteStartObject();
        w.WriteString("name", d.Name);
        w.WriteString("sha256", d.Sha256);
        w.WriteNumber("tokens", d.Tokens);
        w.WriteEndObject();
    }

    private static void WriteMachine(Utf8JsonWriter w, MachineInfo? m)
    {
        if (m == null)
        {
            w.WriteNull("machine");
            return;
        }
        w.WriteStartObject("machine");
        w.WriteString("hostname", m.Hostname);
        w.WriteString("cpu", m.Cpu);
        w.WriteNumber("cores", m.Cores);
        w.WriteString("os", m.Os);
        w.WriteEndObject();
    }

    private static void Number(Utf8JsonWriter w, string name, double? value)
    {
        if (value is { } v && double.IsFinite(v)) w.WriteNumber(name, v);
        else w.WriteNull(name);
    }

    /// <summary>Writes one JSON document to stdout.</summary>
    public static void ToStdout(Action<Utf8JsonWriter> write)
    {
        using var stream = Console.OpenStandardOutput();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            write(w);
        }
        stream.WriteByte((byte)'\n');
    }
}
