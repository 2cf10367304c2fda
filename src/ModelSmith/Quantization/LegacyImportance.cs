namespace ModelSmith.Quantization;

/// <summary>
/// The weighting shared by the importance paths of Q4_0, Q4_1, Q5_0 and Q5_1 (quantize_row_q4_0_impl and
/// siblings): σ² is the mean square of the whole row, and weight j of a block is q_j·sqrt(σ² + x_j²), so a
/// column the calibration data drives hard (large q) is fitted more closely, and within a column larger
/// weights count more.
/// </summary>
internal static class LegacyImportance
{
    /// <summary>Σx²/k over the row, summed in order as ggml does.</summary>
    public static float RowSigma2(ReadOnlySpan<float> x /* (k) */)
    {
        float sumX2 = 0;
        for (int j = 0; j < x.Length; j++)
        {
            sumX2 += x[j] * x[j];
        }
        return sumX2 / x.Length;
    }

    /// <summary>w_j = q_j·sqrt(σ² + x_j²).</summary>
    public static void Weights(ReadOnlySpan<float> xb /* (32) */, ReadOnlySpan<float> qb /* (32) */, float sigma2, Span<float> weights /* (32) */)
    {
        for (int j = 0; j < xb.Length; j++)
        {
            weights[j] = qb[j] * MathF.Sqrt(sigma2 + xb[j] * xb[j]);
        }
    }
}
