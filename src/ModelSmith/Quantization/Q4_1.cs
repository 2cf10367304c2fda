namespace ModelSmith.Quantization;

/// <summary>
/// Q4_1: blocks of 32 weights as 4-bit integers q ∈ [0, 15] with weight = q·d + m, 5 bits per weight.
///
/// Block layout (20 bytes, ggml-common.h block_q4_1):
/// <code>
///   offset  size  field
///   0       2     d    F16 scale
///   2       2     m    F16 offset (the block minimum)
///   4       16    qs   byte j: weight j in the low nibble, weight j+16 in the high nibble
/// </code>
/// </summary>
internal static class Q4_1
{
    public const int BlockSize = 32;
    public const int TypeSize = 20;

    /// <summary>
    /// quantize_row_q4_1_ref: d = (max − min)/15, m = min, q = min(15, trunc((x − min)·(1/d) + 0.5)),
    /// with the unrounded d and min (F16 rounding applies only to what is stored).
    /// </summary>
    public static void QuantizeRow(ReadOnlySpan<float> x /* (k), k % 32 == 0 */, Span<byte> y /* (k/32·20) */)
    {
        int nb = x.Length / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            ReadOnlySpan<float> xb = x.Slice(i * BlockSize, BlockSize);
            Span<byte> block = y.Slice(i * TypeSize, TypeSize);
            QuantMath.MinMax(xb, out float min, out float max);
            float d = (max - min) / ((1 << 4) - 1);
            float id = d != 0 ? 1.0f / d : 0.0f;
            QuantMath.WriteHalf(block, 0, d);
            QuantMath.WriteHalf(block, 2, min);
            for (int j = 0; j < BlockSize / 2; j++)
            {
                byte q0 = (byte)Math.Min(15, (int)(sbyte)QuantMath.TruncateLikeX86((xb[j] - min) * id + 0.5f));
                byte q1 = (byte)Math.Min(15, (int)(sbyte)QuantMath.TruncateLikeX86((xb[j + BlockSize / 2] - min) * id + 0.5f));
                block[4 + j] = (byte)(q0 | (q1 << 4));
            }
        }
    }

    /// <summary>
    /// quantize_row_q4_1_impl with an importance matrix: weights w = q·sqrt(σ² + x²) with σ² = Σx²/k over the
    /// row, each block fitted by make_qkx3_quants (nmax = 15); d is its scale and m = −(its min), both F16.
    /// </summary>
    public static void QuantizeRowImportance(ReadOnlySpan<float> x /* (k), k % 32 == 0 */, ReadOnlySpan<float> importance /* (k) */, Span<byte> y /* (k/32·20) */) =>
        LegacyImportance.QuantizeRowAsymmetric<ImportanceBlock>(15, x, importance, y);

    /// <summary>d, m, then the levels 0..15 as in <see cref="QuantizeRow"/>.</summary>
    private readonly struct ImportanceBlock : LegacyImportance.IBlock
    {
        public static int TypeSize => Q4_1.TypeSize;

        public static void Store(float d, float m, ReadOnlySpan<byte> levels /* (32) 0..15 */, Span<byte> block /* (20) */)
        {
            QuantMath.WriteHalf(block, 0, d);
            QuantMath.WriteHalf(block, 2, m);
            for (int j = 0; j < BlockSize / 2; j++)
            {
                block[4 + j] = (byte)(levels[j] | (levels[j + BlockSize / 2] << 4));
            }
        }
    }

    /// <summary>dequantize_row_q4_1: y = q·d + m.</summary>
    public static void DequantizeRow(ReadOnlySpan<byte> x /* (k/32·20) */, Span<float> y /* (k) */)
    {
        int nb = y.Length / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            ReadOnlySpan<byte> block = x.Slice(i * TypeSize, TypeSize);
            Span<float> yb = y.Slice(i * BlockSize, BlockSize);
            float d = QuantMath.ReadHalf(block, 0);
            float m = QuantMath.ReadHalf(block, 2);
            for (int j = 0; j < BlockSize / 2; j++)
            {
                yb[j] = (block[4 + j] & 0x0F) * d + m;
                yb[j + BlockSize / 2] = (block[4 + j] >> 4) * d + m;
            }
        }
    }
}
