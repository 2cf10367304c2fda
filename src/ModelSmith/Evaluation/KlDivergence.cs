namespace ModelSmith.Evaluation;

/// <summary>
/// How far a model's next-token distributions are from its parent's over the scored positions, with the
/// statistics llama.cpp's perplexity tool prints for <c>--kl-divergence</c>: mean KLD with its standard
/// error, its distribution (maximum, percentiles, median, minimum), the share of positions where both
/// models rank the same token first ("same top p"), the change of the actual token's probability (Δp),
/// and the parent's perplexity on the same positions.
/// </summary>
public sealed class KlDivergenceResult
{
    /// <summary>The percentiles llama.cpp reports, as fractions.</summary>
    public static IReadOnlyList<double> ReportedPercentiles { get; } = [0.999, 0.99, 0.95, 0.90, 0.10, 0.05, 0.01, 0.001];

    private readonly double[] _sortedKld;
    private readonly double[] _sortedDeltaP;

    internal KlDivergenceResult(KlDivergenceAccumulator a)
    {
        long n = a.Count;
        if (n == 0)
        {
            throw new ArgumentException("No positions were scored.", nameof(a));
        }
        Count = n;
        _sortedKld = [.. a.KldValues];
        Array.Sort(_sortedKld);
        _sortedDeltaP = [.. a.DeltaPValues];
        Array.Sort(_sortedDeltaP);

        (MeanKld, MeanKldError) = MeanAndUncertainty(a.SumKld, a.SumKld2, n);
        (double logPpl, double logPplError) = MeanAndUncertainty(a.SumNll, a.SumNll2, n);
        (double logParent, double logParentError) = MeanAndUncertainty(a.SumParentNll, a.SumParentNll2, n);
        Perplexity = Math.Exp(logPpl);
        ParentPerplexity = Math.Exp(logParent);
        ParentPerplexityError = ParentPerplexity * logParentError;
        double covariance = Covariance(a.SumNll, a.SumParentNll, a.SumNllParentNll, n);
        PerplexityCorrelation = logPplError > 0 && logParentError > 0 ? covariance / (logPplError * logParentError) : double.NaN;
        LogPerplexityRatio = logPpl - logParent;
        LogPerplexityRatioError = Math.Sqrt(Math.Max(0, logPplError * logPplError + logParentError * logParentError - 2 * covariance));

        (MeanDeltaP, MeanDeltaPError) = MeanAndUncertainty(a.SumDeltaP, a.SumDeltaP2, n);
        (double mse, double mseError) = MeanAndUncertainty(a.SumDeltaP2, a.SumDeltaP4, n);
        RmsDeltaP = Math.Sqrt(mse);
        RmsDeltaPError = RmsDeltaP > 0 ? 0.5 / RmsDeltaP * mseError : 0;

        SameTop = (double)a.SameTop / n;
        SameTopError = n > 1 ? Math.Sqrt(SameTop * (1 - SameTop) / (n - 1)) : 0;
    }

    /// <summary>Positions scored.</summary>
    public long Count { get; }

    /// <summary>Mean KL(parent ‖ model) in nats.</summary>
    public double MeanKld { get; }

    /// <summary>Standard error of <see cref="MeanKld"/> (0 for 10 positions or fewer, as llama.cpp).</summary>
    public double MeanKldError { get; }

    /// <summary>Largest per-position KLD.</summary>
    public double MaximumKld => _sortedKld[^1];

    /// <summary>Smallest per-position KLD.</summary>
    public double MinimumKld => _sortedKld[0];

    /// <summary>Median per-position KLD (mean of the two middle values for an even count).</summary>
    public double MedianKld => Median(_sortedKld);

    /// <summary>Share of positions where the model's most likely token is the parent's (0..1).</summary>
    public double SameTop { get; }

    /// <summary>Binomial standard error of <see cref="SameTop"/>.</summary>
    public double SameTopError { get; }

    /// <summary>The model's perplexity over the same positions.</summary>
    public double Perplexity { get; }

    /// <summary>The parent's perplexity over the same positions.</summary>
    public double ParentPerplexity { get; }

    /// <summary>Standard error of <see cref="ParentPerplexity"/>.</summary>
    public double ParentPerplexityError { get; }

    /// <summary>Correlation of the per-position log-likelihoods of model and parent.</summary>
    public double PerplexityCorrelation { get; }

    /// <summary>ln(PPL(model) / PPL(parent)).</summary>
    public double LogPerplexityRatio { get; }

    /// <summary>Standard error of <see cref="LogPerplexityRatio"/>, using the covariance of the two.</summary>
    public double LogPerplexityRatioError { get; }

    /// <summary>Mean of q(token) − p(token), the change of the actual token's probability.</summary>
    public double MeanDeltaP { get; }

    /// <summary>Standard error of <see cref="MeanDeltaP"/>.</summary>
    public double MeanDeltaPError { get; }

    /// <summary>Root mean square of Δp.</summary>
    public double RmsDeltaP { get; }

    /// <summary>Standard error of <see cref="RmsDeltaP"/>.</summary>
    public double RmsDeltaPError { get; }

    /// <summary>Largest Δp.</summary>
    public double MaximumDeltaP => _sortedDeltaP[^1];

    /// <summary>Smallest (most negative) Δp.</summary>
    public double MinimumDeltaP => _sortedDeltaP[0];

    /// <summary>Median Δp.</summary>
    public double MedianDeltaP => Median(_sortedDeltaP);

    /// <summary>The <paramref name="fraction"/> percentile of the per-position KLD, interpolated as llama.cpp does.</summary>
    public double KldPercentile(double fraction) => Percentile(_sortedKld, fraction);

    /// <summary>The <paramref name="fraction"/> percentile of Δp, interpolated as llama.cpp does.</summary>
    public double DeltaPPercentile(double fraction) => Percentile(_sortedDeltaP, fraction);

    /// <summary>
    /// llama.cpp's percentile of sorted values: the value at fraction·(n − 1), linearly interpolated between
    /// its two neighbours; the first or last value outside (0, 1).
    /// </summary>
    internal static double Percentile(ReadOnlySpan<double> sorted, double fraction)
    {
        if (fraction <= 0) return sorted[0];
        if (fraction >= 1) return sorted[^1];
        double p = fraction * (sorted.Length - 1);
        int ip = (int)p;
        p -= ip;
        return (1 - p) * sorted[ip] + p * sorted[Math.Min(ip + 1, sorted.Length - 1)];
    }

    private static double Median(ReadOnlySpan<double> sorted) =>
        sorted.Length % 2 == 0 ? 0.5 * (sorted[sorted.Length / 2] + sorted[sorted.Length / 2 - 1]) : sorted[sorted.Length / 2];

    /// <summary>
    /// llama.cpp's mean_and_uncertainty: the mean Σ/n and the standard error √((Σ²/n − mean²)/(n − 1)),
    /// which it leaves at 0 for 10 values or fewer.
    /// </summary>
    internal static (double Mean, double Error) MeanAndUncertainty(double sum, double sum2, long count)
    {
        if (count < 1) return (0, 0);
        double mean = sum / count;
        double variance = sum2 / count - mean * mean;
        return (mean, variance > 0 && count > 10 ? Math.Sqrt(variance / (count - 1)) : 0);
    }

    /// <summary>llama.cpp's covariance of two means: (Σab/n − (Σa/n)(Σb/n)) / (n − 1); 0 under 10 values.</summary>
    private static double Covariance(double sumA, double sumB, double sumAb, long count)
    {
        if (count < 10) return 0;
        return (sumAb / count - sumA / count * (sumB / count)) / (count - 1);
    }
}

/// <summary>Sums over scored positions in position order (so results do not depend on threads).</summary>
internal sealed class KlDivergenceAccumulator
{
    public long Count { get; private set; }

    public double SumNll { get; private set; }

    public double SumNll2 { get; private set; }

    public double SumParentNll { get; private set; }

    public double SumParentNll2 { get; private set; }

    public double SumNllParentNll { get; private set; }

    public double SumKld { get; private set; }

    public double SumKld2 { get; private set; }

    public double SumDeltaP { get; private set; }

    public double SumDeltaP2 { get; private set; }

    public double SumDeltaP4 { get; private set; }

    public long SameTop { get; private set; }

    public List<double> KldValues { get; } = [];

    public List<double> DeltaPValues { get; } = [];

    /// <summary>Adds <paramref name="nll"/>.Length positions (all spans (n)).</summary>
    public void Add(ReadOnlySpan<double> nll, ReadOnlySpan<double> parentNll, ReadOnlySpan<double> kld, ReadOnlySpan<double> deltaP, ReadOnlySpan<bool> sameTop)
    {
        for (int i = 0; i < nll.Length; i++)
        {
            SumNll += nll[i];
            SumNll2 += nll[i] * nll[i];
            SumParentNll += parentNll[i];
            SumParentNll2 += parentNll[i] * parentNll[i];
            SumNllParentNll += nll[i] * parentNll[i];
            SumKld += kld[i];
            SumKld2 += kld[i] * kld[i];
            double d2 = deltaP[i] * deltaP[i];
            SumDeltaP += deltaP[i];
            SumDeltaP2 += d2;
            SumDeltaP4 += d2 * d2;
            if (sameTop[i]) SameTop++;
            KldValues.Add(kld[i]);
            DeltaPValues.Add(deltaP[i]);
        }
        Count += nll.Length;
    }
}
