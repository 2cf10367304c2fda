using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ModelSmith.Quantization;

/// <summary>
/// Q4_0: blocks of 32 weights as 4-bit integers q ∈ [0, 15] with weight = (q − 8)·d, 4.5 bits per weight.
///
/// Block layout (18 bytes, ggml-common.h block_q4_0):
/// <code>
///   offset  size  field
///   0       2     d    F16 scale
///   2       16    qs   byte j: weight j in the low nibble, weight j+16 in the high nibble
/// </code>
/// </summary>
internal static class Q4_0
{
    public const int BlockSize = 32;
    public const int TypeSize = 18;

    /// <summary>
    /// <see cref="QuantizeRowReference"/>, with each block done in 256-bit vectors where the hardware allows
    /// (<see cref="QuantizeBlockVector"/>, the same bits).
    /// </summary>
    public static void QuantizeRow(ReadOnlySpan<float> x /* (k), k % 32 == 0 */, Span<byte> y /* (k/32·18) */)
    {
        int nb = x.Length / BlockSize;
        bool vector = Vector256.IsHardwareAccelerated;
        for (int i = 0; i < nb; i++)
        {
            ReadOnlySpan<float> xb = x.Slice(i * BlockSize, BlockSize);
            Span<byte> block = y.Slice(i * TypeSize, TypeSize);
            if (!vector || !QuantizeBlockVector(xb, block))
            {
                QuantizeBlock(xb, block);
            }
        }
    }

    /// <summary>
    /// quantize_row_q4_0_ref: d = max/−8 where max is the signed value of largest magnitude (so it maps to
    /// level 0 exactly and the other sign gets the extra level), q = min(15, (int8)trunc(x·(1/d) + 8.5)).
    /// </summary>
    public static void QuantizeRowReference(ReadOnlySpan<float> x /* (k), k % 32 == 0 */, Span<byte> y /* (k/32·18) */)
    {
        int nb = x.Length / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            QuantizeBlock(x.Slice(i * BlockSize, BlockSize), y.Slice(i * TypeSize, TypeSize));
        }
    }

    /// <summary>One block of <see cref="QuantizeRowReference"/>.</summary>
    private static void QuantizeBlock(ReadOnlySpan<float> xb /* (32) */, Span<byte> block /* (18) */)
    {
        float max = QuantMath.MaxMagnitude(xb, out _);
        float d = max / -8;
        float id = d != 0 ? 1.0f / d : 0.0f;
        QuantMath.WriteHalf(block, 0, d);
        for (int j = 0; j < BlockSize / 2; j++)
        {
            byte q0 = (byte)Math.Min(15, (int)(sbyte)QuantMath.TruncateLikeX86(xb[j] * id + 8.5f));
            byte q1 = (byte)Math.Min(15, (int)(sbyte)QuantMath.TruncateLikeX86(xb[j + BlockSize / 2] * id + 8.5f));
            block[2 + j] = (byte)(q0 | (q1 << 4));
        }
    }

    /// <summary>
    /// <see cref="QuantizeBlock"/> in four 8-lane vectors. The reference keeps the first value of largest
    /// magnitude (a later −v does not replace v); here the largest magnitude is an order-free vector max and
    /// the value is the first element that has it. x·(1/d) + 8.5 lies in [0.5, 16.5], so truncation needs no
    /// 8-bit wrap-around. Returns false, writing nothing, for a block whose 1/d overflows (all |x| below ~3e-38),
    /// which the reference handles with its x86 conversion of infinities.
    /// </summary>
    private static bool QuantizeBlockVector(ReadOnlySpan<float> xb /* (32) */, Span<byte> block /* (18) */)
    {
        ref float src = ref MemoryMarshal.GetReference(xb[..BlockSize]);
        Vector256<float> v0 = Vector256.LoadUnsafe(ref src, 0);
        Vector256<float> v1 = Vector256.LoadUnsafe(ref src, 8);
        Vector256<float> v2 = Vector256.LoadUnsafe(ref src, 16);
        Vector256<float> v3 = Vector256.LoadUnsafe(ref src, 24);
        Vector256<float> a0 = Vector256.Abs(v0);
        Vector256<float> a1 = Vector256.Abs(v1);
        Vector256<float> a2 = Vector256.Abs(v2);
        Vector256<float> a3 = Vector256.Abs(v3);
        Vector256<float> m = Vector256.MaxNative(Vector256.MaxNative(a0, a1), Vector256.MaxNative(a2, a3));
        float amax = 0f;
        for (int j = 0; j < Vector256<float>.Count; j++)
        {
            amax = Math.Max(amax, m.GetElement(j));
        }
        float max = 0f;
        if (amax > 0)
        {
            Vector256<float> va = Vector256.Create(amax);
            uint hits = Vector256.ExtractMostSignificantBits(Vector256.Equals(a0, va))
                | (Vector256.ExtractMostSignificantBits(Vector256.Equals(a1, va)) << 8)
                | (Vector256.ExtractMostSignificantBits(Vector256.Equals(a2, va)) << 16)
                | (Vector256.ExtractMostSignificantBits(Vector256.Equals(a3, va)) << 24);
            max = xb[System.Numerics.BitOperations.TrailingZeroCount(hits)];
        }
        float d = max / -8;
        float id = d != 0 ? 1.0f / d : 0.0f;
        if (!float.IsFinite(id))
        {
            return false;
        }
        QuantMath.WriteHalf(block, 0, d);
        Vector256<float> vid = Vector256.Create(id);
        Vector256<float> half = Vector256.Create(8.5f);
        Vector256<int> fifteen = Vector256.Create(15);
        Vector256<int> q0 = Vector256.Min(Vector256.ConvertToInt32(v0 * vid + half), fifteen);
        Vector256<int> q1 = Vector256.Min(Vector256.ConvertToInt32(v1 * vid + half), fifteen);
        Vector256<int> q2 = Vector256.Min(Vector256.ConvertToInt32(v2 * vid + half), fifteen);
        Vector256<int> q3 = Vector256.Min(Vector256.ConvertToInt32(v3 * vid + half), fifteen);
        Vector256<short> packed = Vector256.Narrow(q0 | (q2 << 4), q1 | (q3 << 4));
        Vector128.Narrow(packed.GetLower(), packed.GetUpper()).AsByte().CopyTo(block.Slice(2, BlockSize / 2));
        return true;
    }

    /// <summary>
    /// quantize_row_q4_0_impl, the path llama.cpp takes with an importance matrix. With σ² = Σx²/k over the
    /// whole row, each weight gets w = q·sqrt(σ² + x²) and each block make_qx_quants (nmax = 8, levels
    /// q ∈ [0, 15] = l + 8); d is that fit's least-squares scale, stored as F16 without re-rounding the levels.
    /// </summary>
    public static void QuantizeRowImportance(ReadOnlySpan<float> x /* (k), k % 32 == 0 */, ReadOnlySpan<float> importance /* (k) */, Span<byte> y /* (k/32·18) */) =>
        LegacyImportance.QuantizeRowSymmetric<ImportanceBlock>(8, x, importance, y);

    /// <summary>d, then the levels 0..15 as in <see cref="QuantizeBlock"/>.</summary>
    private readonly struct ImportanceBlock : LegacyImportance.IBlock
    {
        public static int TypeSize => Q4_0.TypeSize;

        public static void Store(float d, float m, ReadOnlySpan<byte> levels /* (32) 0..15 */, Span<byte> block /* (18) */)
        {
            QuantMath.WriteHalf(block, 0, d);
            for (int j = 0; j < BlockSize / 2; j++)
            {
                block[2 + j] = (byte)(levels[j] | (levels[j + BlockSize / 2] << 4));
            }
        }
    }

    /// <summary>dequantize_row_q4_0: y = (q − 8)·d.</summary>
    public static void DequantizeRow(ReadOnlySpan<byte> x /* (k/32·18) */, Span<float> y /* (k) */)
    {
        int nb = y.Length / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            ReadOnlySpan<byte> block = x.Slice(i * TypeSize, TypeSize);
            Span<float> yb = y.Slice(i * BlockSize, BlockSize);
            float d = QuantMath.ReadHalf(block, 0);
            for (int j = 0; j < BlockSize / 2; j++)
            {
                yb[j] = ((block[2 + j] & 0x0F) - 8) * d;
                yb[j + BlockSize / 2] = ((block[2 + j] >> 4) - 8) * d;
            }
        }
    }
}
