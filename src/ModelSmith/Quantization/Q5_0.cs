using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace ModelSmith.Quantization;

/// <summary>
/// Q5_0: blocks of 32 weights as 5-bit integers q ∈ [0, 31] with weight = (q − 16)·d, 5.5 bits per weight.
///
/// Block layout (22 bytes, ggml-common.h block_q5_0):
/// <code>
///   offset  size  field
///   0       2     d    F16 scale
///   2       4     qh   little-endian uint32; bit j = bit 4 of q[j] (j = 0..31)
///   6       16    qs   byte j: low 4 bits of q[j] in the low nibble, of q[j+16] in the high nibble
/// </code>
/// </summary>
internal static class Q5_0
{
    public const int BlockSize = 32;
    public const int TypeSize = 22;

    /// <summary>
    /// quantize_row_q5_0_ref: d = max/−16 (max = signed value of largest magnitude),
    /// q = min(31, trunc(x·(1/d) + 16.5)).
    /// </summary>
    public static void QuantizeRow(ReadOnlySpan<float> x /* (k), k % 32 == 0 */, Span<byte> y /* (k/32·22) */)
    {
        int nb = x.Length / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            ReadOnlySpan<float> xb = x.Slice(i * BlockSize, BlockSize);
            Span<byte> block = y.Slice(i * TypeSize, TypeSize);
            float max = QuantMath.MaxMagnitude(xb, out _);
            float d = max / -16;
            float id = d != 0 ? 1.0f / d : 0.0f;
            QuantMath.WriteHalf(block, 0, d);
            uint qh = 0;
            Span<byte> qs = block.Slice(6, BlockSize / 2);
            for (int j = 0; j < BlockSize / 2; j++)
            {
                byte q0 = (byte)Math.Min(31, (int)(sbyte)QuantMath.TruncateLikeX86(xb[j] * id + 16.5f));
                byte q1 = (byte)Math.Min(31, (int)(sbyte)QuantMath.TruncateLikeX86(xb[j + BlockSize / 2] * id + 16.5f));
                PackPair(j, q0, q1, qs, ref qh);
            }
            BinaryPrimitives.WriteUInt32LittleEndian(block.Slice(2, 4), qh);
        }
    }

    /// <summary>
    /// quantize_row_q5_0_impl with an importance matrix: weights w = q·sqrt(σ² + x²) with σ² = Σx²/k over the
    /// row, each block fitted by make_qx_quants (nmax = 16, levels q ∈ [0, 31] = l + 16), d its scale.
    /// </summary>
    public static void QuantizeRowImportance(ReadOnlySpan<float> x /* (k), k % 32 == 0 */, ReadOnlySpan<float> importance /* (k) */, Span<byte> y /* (k/32·22) */) =>
        LegacyImportance.QuantizeRowSymmetric<ImportanceBlock>(16, x, importance, y);

    /// <summary>d, then the levels 0..31 as in <see cref="QuantizeRow"/>.</summary>
    private readonly struct ImportanceBlock : LegacyImportance.IBlock
    {
        public static int TypeSize => Q5_0.TypeSize;

        public static void Store(float d, float m, ReadOnlySpan<byte> levels /* (32) 0..31 */, Span<byte> block /* (22) */)
        {
            QuantMath.WriteHalf(block, 0, d);
            uint qh = 0;
            Span<byte> qs = block.Slice(6, BlockSize / 2);
            for (int j = 0; j < BlockSize / 2; j++)
            {
                PackPair(j, levels[j], levels[j + BlockSize / 2], qs, ref qh);
            }
            BinaryPrimitives.WriteUInt32LittleEndian(block.Slice(2, 4), qh);
        }
    }

    /// <summary>
    /// Stores the 5-bit levels of weights j and j+16 as Q5_0 and Q5_1 do: their low 4 bits in the low and high
    /// nibble of qs[j], their bit 4 in bits j and j+16 of qh.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void PackPair(int j, byte q0 /* 0..31 */, byte q1 /* 0..31 */, Span<byte> qs /* (16) */, ref uint qh)
    {
        qs[j] = (byte)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
        qh |= (uint)((q0 & 0x10) >> 4) << j;
        qh |= (uint)((q1 & 0x10) >> 4) << (j + BlockSize / 2);
    }

    /// <summary>dequantize_row_q5_0: y = (q − 16)·d.</summary>
    public static void DequantizeRow(ReadOnlySpan<byte> x /* (k/32·22) */, Span<float> y /* (k) */)
    {
        int nb = y.Length / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            ReadOnlySpan<byte> block = x.Slice(i * TypeSize, TypeSize);
            Span<float> yb = y.Slice(i * BlockSize, BlockSize);
            float d = QuantMath.ReadHalf(block, 0);
            uint qh = BinaryPrimitives.ReadUInt32LittleEndian(block.Slice(2, 4));
            for (int j = 0; j < BlockSize / 2; j++)
            {
                int high0 = (int)((qh >> j) << 4) & 0x10;
                int high1 = (int)(qh >> (j + 12)) & 0x10;
                yb[j] = (((block[6 + j] & 0x0F) | high0) - 16) * d;
                yb[j + BlockSize / 2] = (((block[6 + j] >> 4) | high1) - 16) * d;
            }
        }
    }
}
