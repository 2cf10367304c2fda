using System.Buffers.Binary;

namespace ModelSmith.Quantization;

/// <summary>
/// Q5_1: blocks of 32 weights as 5-bit integers q ∈ [0, 31] with weight = q·d + m, 6 bits per weight.
///
/// Block layout (24 bytes, ggml-common.h block_q5_1):
/// <code>
///   offset  size  field
///   0       2     d    F16 scale
///   2       2     m    F16 offset (the block minimum)
///   4       4     qh   little-endian uint32; bit j = bit 4 of q[j] (j = 0..31)
///   8       16    qs   byte j: low 4 bits of q[j] in the low nibble, of q[j+16] in the high nibble
/// </code>
/// </summary>
internal static class Q5_1
{
    public const int BlockSize = 32;
    public const int TypeSize = 24;

    /// <summary>
    /// quantize_row_q5_1_ref: d = (max − min)/31, m = min, q = trunc((x − min)·(1/d) + 0.5) (ggml applies no
    /// clamp here: the largest value lands on 31 or 31.5 → 31).
    /// </summary>
    public static void QuantizeRow(ReadOnlySpan<float> x /* (k), k % 32 == 0 */, Span<byte> y /* (k/32·24) */)
    {
        int nb = x.Length / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            ReadOnlySpan<float> xb = x.Slice(i * BlockSize, BlockSize);
            Span<byte> block = y.Slice(i * TypeSize, TypeSize);
            QuantMath.MinMax(xb, out float min, out float max);
            float d = (max - min) / ((1 << 5) - 1);
            float id = d != 0 ? 1.0f / d : 0.0f;
            QuantMath.WriteHalf(block, 0, d);
            QuantMath.WriteHalf(block, 2, min);
            uint qh = 0;
            Span<byte> qs = block.Slice(8, BlockSize / 2);
            for (int j = 0; j < BlockSize / 2; j++)
            {
                byte q0 = (byte)QuantMath.TruncateLikeX86((xb[j] - min) * id + 0.5f);
                byte q1 = (byte)QuantMath.TruncateLikeX86((xb[j + BlockSize / 2] - min) * id + 0.5f);
                Q5_0.PackPair(j, q0, q1, qs, ref qh);
            }
            BinaryPrimitives.WriteUInt32LittleEndian(block.Slice(4, 4), qh);
        }
    }

    /// <summary>
    /// quantize_row_q5_1_impl with an importance matrix: weights w = q·sqrt(σ² + x²) with σ² = Σx²/k over the
    /// row, each block fitted by make_qkx3_quants (nmax = 31); d is its scale and m = −(its min), both F16.
    /// </summary>
    public static void QuantizeRowImportance(ReadOnlySpan<float> x /* (k), k % 32 == 0 */, ReadOnlySpan<float> importance /* (k) */, Span<byte> y /* (k/32·24) */) =>
        LegacyImportance.QuantizeRowAsymmetric<ImportanceBlock>(31, x, importance, y);

    /// <summary>d, m, then the levels 0..31 as in <see cref="QuantizeRow"/>.</summary>
    private readonly struct ImportanceBlock : LegacyImportance.IBlock
    {
        public static int TypeSize => Q5_1.TypeSize;

        public static void Store(float d, float m, ReadOnlySpan<byte> levels /* (32) 0..31 */, Span<byte> block /* (24) */)
        {
            QuantMath.WriteHalf(block, 0, d);
            QuantMath.WriteHalf(block, 2, m);
            uint qh = 0;
            Span<byte> qs = block.Slice(8, BlockSize / 2);
            for (int j = 0; j < BlockSize / 2; j++)
            {
                Q5_0.PackPair(j, levels[j], levels[j + BlockSize / 2], qs, ref qh);
            }
            BinaryPrimitives.WriteUInt32LittleEndian(block.Slice(4, 4), qh);
        }
    }

    /// <summary>dequantize_row_q5_1: y = q·d + m.</summary>
    public static void DequantizeRow(ReadOnlySpan<byte> x /* (k/32·24) */, Span<float> y /* (k) */)
    {
        int nb = y.Length / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            ReadOnlySpan<byte> block = x.Slice(i * TypeSize, TypeSize);
            Span<float> yb = y.Slice(i * BlockSize, BlockSize);
            float d = QuantMath.ReadHalf(block, 0);
            float m = QuantMath.ReadHalf(block, 2);
            uint qh = BinaryPrimitives.ReadUInt32LittleEndian(block.Slice(4, 4));
            for (int j = 0; j < BlockSize / 2; j++)
            {
                int high0 = (int)((qh >> j) << 4) & 0x10;
                int high1 = (int)(qh >> (j + 12)) & 0x10;
                yb[j] = ((block[8 + j] & 0x0F) | high0) * d + m;
                yb[j + BlockSize / 2] = ((block[8 + j] >> 4) | high1) * d + m;
            }
        }
    }
}
