using System.Runtime.InteropServices;

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

    /// <summary>How one of the four formats stores a fitted block of 32 (its layout is in its class comment).</summary>
    internal interface IBlock
    {
        /// <summary>Bytes per block of 32 weights.</summary>
        static abstract int TypeSize { get; }

        /// <summary>Writes the F16 scale d, the F16 offset m (Q4_1, Q5_1; ignored by Q4_0, Q5_0) and the levels.</summary>
        static abstract void Store(float d, float m, ReadOnlySpan<byte> levels /* (32) */, Span<byte> block /* (TypeSize) */);
    }

    /// <summary>
    /// The row loop of quantize_row_q4_0_impl and quantize_row_q5_0_impl: each block fitted under
    /// <see cref="Weights"/> by make_qx_quants (levels l + nmax ∈ [0, 2·nmax − 1]), d its least-squares scale,
    /// stored without re-rounding the levels.
    /// </summary>
    internal static void QuantizeRowSymmetric<TBlock>(int nmax, ReadOnlySpan<float> x /* (k), k % 32 == 0 */,
        ReadOnlySpan<float> importance /* (k) */, Span<byte> y /* (k/32·TypeSize) */)
        where TBlock : struct, IBlock
    {
        Span<float> weights = stackalloc float[32];
        Span<sbyte> levels = stackalloc sbyte[32];
        float sigma2 = RowSigma2(x);
        int nb = x.Length / 32;
        for (int ib = 0; ib < nb; ib++)
        {
            ReadOnlySpan<float> xb = x.Slice(ib * 32, 32);
            Weights(xb, importance.Slice(ib * 32, 32), sigma2, weights);
            float d = WeightedQuantMath.MakeQxQuants(nmax, xb, weights, levels);
            TBlock.Store(d, 0f, MemoryMarshal.AsBytes(levels), y.Slice(ib * TBlock.TypeSize, TBlock.TypeSize));
        }
    }

    /// <summary>
    /// The row loop of quantize_row_q4_1_impl and quantize_row_q5_1_impl: each block fitted under
    /// <see cref="Weights"/> by make_qkx3_quants (levels ∈ [0, nmax], rmin = −0.9, rdelta = 0.05, 36 steps,
    /// squared error); d is its scale and m = −(its min).
    /// </summary>
    internal static void QuantizeRowAsymmetric<TBlock>(int nmax, ReadOnlySpan<float> x /* (k), k % 32 == 0 */,
        ReadOnlySpan<float> importance /* (k) */, Span<byte> y /* (k/32·TypeSize) */)
        where TBlock : struct, IBlock
    {
        Span<float> weights = stackalloc float[32];
        Span<byte> levels = stackalloc byte[32];
        Span<byte> scratch = stackalloc byte[32];
        float sigma2 = RowSigma2(x);
        int nb = x.Length / 32;
        for (int ib = 0; ib < nb; ib++)
        {
            ReadOnlySpan<float> xb = x.Slice(ib * 32, 32);
            Weights(xb, importance.Slice(ib * 32, 32), sigma2, weights);
            float d = WeightedQuantMath.MakeQkx3Quants(nmax, xb, weights, levels, out float min, scratch, -0.9f, 0.05f, 36, false);
            TBlock.Store(d, -min, levels, y.Slice(ib * TBlock.TypeSize, TBlock.TypeSize));
        }
    }
}
