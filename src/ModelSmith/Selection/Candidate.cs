using ModelSmith.Formats;
using ModelSmith.Registry;

namespace ModelSmith.Selection;

/// <summary>A perplexity measured on one data set (lower is better).</summary>
/// <param name="Dataset">The data set's name (its file name).</param>
/// <param name="Sha256">The SHA-256 of the data set's bytes, when known: matches a --domain file even when renamed.</param>
public sealed record QualityScore(string Dataset, string? Sha256, double Perplexity);

/// <summary>
/// One model variant the picker chooses between: what it is, its shape (for the memory and speed
/// estimates), and what has been measured of it.
/// </summary>
/// <param name="Kind">Base, fine-tuned or quantized, as registered.</param>
/// <param name="Parents">Ids of the variants it was made from.</param>
/// <param name="FineTunedAncestor">True when a fine-tuned model is among its ancestors (a fine-tuned-then-quantized model).</param>
/// <param name="MeasuredTokensPerSecond">Decode tokens/s `smith bench` measured on this machine, or null.</param>
/// <param name="MeasuredPeakBytes">Peak resident bytes `smith bench` measured on this machine, or null.</param>
/// <param name="Quality">Perplexities, one per data set (the latest measurement of each).</param>
public sealed record Candidate(
    string Id,
    string Name,
    VariantKind Kind,
    IReadOnlyList<string> Parents,
    bool FineTunedAncestor,
    ModelShape Shape,
    double? MeasuredTokensPerSecond,
    long? MeasuredPeakBytes,
    IReadOnlyList<QualityScore> Quality)
{
    /// <summary>
    /// The data sets a fine-tuned variant was trained on (empty for others): they are domain text, so the picker
    /// does not take them as the general-text yardstick when no domain is given.
    /// </summary>
    public IReadOnlyList<DatasetKey> TrainedOn { get; init; } = [];

    /// <summary>"base", "fine-tuned", "quantized" or "fine-tuned, then quantized".</summary>
    public string Role => Kind == VariantKind.Quantized && FineTunedAncestor ? "fine-tuned, then quantized" : VariantKinds.Name(Kind);

    /// <summary>The storage type holding most weights ("F32", "Q4_K" ...).</summary>
    public GgmlType Type => Shape.DominantType;

    /// <summary>
    /// The perplexity on the data set <paramref name="dataset"/> names: the same SHA-256 when both are known,
    /// else the same name, or the same name without extensions (a --domain of "legal" matches "legal.txt.gz").
    /// </summary>
    public double? PerplexityOn(DatasetKey dataset) => ScoreOn(dataset)?.Perplexity;

    /// <summary>The measurement <see cref="PerplexityOn"/> reads, or null.</summary>
    public QualityScore? ScoreOn(DatasetKey dataset)
    {
        ArgumentNullException.ThrowIfNull(dataset);
        foreach (QualityScore q in Quality)
        {
            if (dataset.Sha256 != null && q.Sha256 != null && string.Equals(dataset.Sha256, q.Sha256, StringComparison.OrdinalIgnoreCase)) return q;
        }
        foreach (QualityScore q in Quality)
        {
            if (string.Equals(q.Dataset, dataset.Name, StringComparison.Ordinal)) return q;
        }
        foreach (QualityScore q in Quality)
        {
            if (string.Equals(DatasetKey.Stem(q.Dataset), DatasetKey.Stem(dataset.Name), StringComparison.OrdinalIgnoreCase)) return q;
        }
        return null;
    }
}

/// <summary>A data set as the user names it: a name (or file name) and, for a file that exists, its SHA-256.</summary>
public sealed record DatasetKey(string Name, string? Sha256)
{
    /// <summary>True when data named <paramref name="name"/> with hash <paramref name="sha256"/> was measured on this data set: the same SHA-256, the same name, or the same stem.</summary>
    public bool Matches(string name, string? sha256)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (Sha256 != null && sha256 != null) return string.Equals(Sha256, sha256, StringComparison.OrdinalIgnoreCase);
        return string.Equals(Name, name, StringComparison.Ordinal) || string.Equals(Stem(Name), Stem(name), StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>From a --domain argument: an existing file is named by its file name and fingerprinted; anything else is a name.</summary>
    public static DatasetKey FromArgument(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return File.Exists(text) ? new DatasetKey(Path.GetFileName(text), FileHash.Sha256(text)) : new DatasetKey(text, null);
    }

    /// <summary>A file name without its extensions: "legal.txt.gz" → "legal".</summary>
    public static string Stem(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        string file = Path.GetFileName(name);
        int dot = file.IndexOf('.', StringComparison.Ordinal);
        return dot > 0 ? file[..dot] : file;
    }
}
