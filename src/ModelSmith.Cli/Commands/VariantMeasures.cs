using System.Globalization;
using ModelSmith.Registry;

namespace ModelSmith.Cli.Commands;

/// <summary>A variant with every result recorded for it, and the headline numbers list and report show.</summary>
internal sealed record VariantMeasures(ModelVariant Variant, IReadOnlyList<EvalResult> Evals, IReadOnlyList<BenchResult> Benches)
{
    /// <summary>Every variant of the workspace with its results (three queries, whatever the number of variants).</summary>
    public static List<VariantMeasures> Load(Workspace workspace)
    {
        IReadOnlyList<ModelVariant> variants = workspace.List();
        ILookup<string, EvalResult> evals = workspace.Evals().ToLookup(e => e.VariantId, StringComparer.Ordinal);
        ILookup<string, BenchResult> benches = workspace.Benches().ToLookup(b => b.VariantId, StringComparer.Ordinal);
        return variants.Select(v => new VariantMeasures(v, evals[v.Id].ToList(), benches[v.Id].ToList())).ToList();
    }

    /// <summary>The lowest perplexity recorded (on any data set), or null.</summary>
    public EvalResult? BestPerplexity => Evals.Where(e => e.Perplexity.HasValue).MinBy(e => e.Perplexity!.Value);

    /// <summary>The lowest perplexity measured on the data set named <paramref name="dataset"/> (any context), or null.</summary>
    public EvalResult? BestPerplexityOn(string dataset) =>
        Evals.Where(e => e.Perplexity.HasValue && string.Equals(e.Data.Name, dataset, StringComparison.Ordinal)).MinBy(e => e.Perplexity!.Value);

    /// <summary>
    /// The perplexity data set (by name) the most variants were measured on, first recorded on ties: the one on
    /// which variants can be compared. Null when nothing was measured.
    /// </summary>
    public static string? CommonDataset(IReadOnlyList<VariantMeasures> all)
    {
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        var order = new List<string>();
        foreach (VariantMeasures m in all)
        {
            foreach (string name in m.Evals.Where(e => e.Perplexity.HasValue).Select(e => e.Data.Name).Distinct(StringComparer.Ordinal))
            {
                if (!counts.ContainsKey(name)) order.Add(name);
                counts[name] = counts.GetValueOrDefault(name) + 1;
            }
        }
        string? best = null;
        foreach (string name in order)
        {
            if (best == null || counts[name] > counts[best]) best = name;
        }
        return best;
    }

    /// <summary>The latest perplexity measured on the data set named <paramref name="dataset"/> (file name), or null.</summary>
    public EvalResult? PerplexityOn(string dataset) =>
        Evals.LastOrDefault(e => e.Perplexity.HasValue && string.Equals(e.Data.Name, dataset, StringComparison.Ordinal));

    /// <summary>The latest benchmark that timed decoding, or null.</summary>
    public BenchResult? LatestDecode => Benches.LastOrDefault(b => b.DecodeTokensPerSecond.HasValue);

    /// <summary>The latest benchmark that timed prefill, or null.</summary>
    public BenchResult? LatestPrefill => Benches.LastOrDefault(b => b.PrefillTokensPerSecond.HasValue);

    public static string Ppl(EvalResult? e) => e?.Perplexity is { } p
        ? p.ToString(p < 100 ? "0.00" : "0", CultureInfo.InvariantCulture) + (e.PerplexityError is { } err ? " ± " + err.ToString(err < 1 ? "0.00" : "0.0", CultureInfo.InvariantCulture) : "")
        : "-";

    public static string Tps(double? tps) => tps is { } t ? t.ToString(t < 100 ? "0.0" : "0", CultureInfo.InvariantCulture) : "-";
}
