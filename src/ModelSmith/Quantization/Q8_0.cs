using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ModelSmith.Quantization;

/// <summary>
/// Q8_0: blocks of 32 weights stored as signed 8-bit integers and one F16 scale, 8.5 bits per weight.
///
/// Block layout (34 bytes, ggml-common.h block_q8_0):
/// <code>
///   offset  size  field
///   0       2     d    F16 scale
///   2       32    qs   int8 quants; weight j = qs[j]·d
/// </code>
/// </summary>
internal static class Q8_0
{
    public const int BlockSize = 32;
    public const int TypeSize = 34;

    /// <summary>
    /// <see cref="QuantizeRowReference"/>, with each block done in 256-bit vectors where the hardware allows
    /// (<see cref="QuantizeBlockVector"/>, the same bits).
    /// </summary>
    public static void QuantizeRow(ReadOnlySpan<float> x /* (k), k % 32 == 0 */, Span<byte> y /* (k/32·34) */)
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
    /// quantize_row_q8_0_ref: d = amax/127 and q = roundf(x/d) (half away from zero), where x/d is
    /// computed as x·(1/d) with the unrounded d; d is then stored as F16.
    /// </summary>
    public static void QuantizeRowReference(ReadOnlySpan<float> x /* (k), k % 32 == 0 */, Span<byte> y /* (k/32·34) */)
    {
        int nb = x.Length / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            QuantizeBlock(x.Slice(i * BlockSize, BlockSize), y.Slice(i * TypeSize, TypeSize));
        }
    }

    /// <summary>One block of <see cref="QuantizeRowReference"/>.</summary>
    private static void QuantizeBlock(ReadOnlySpan<float> xb /* (32) */, Span<byte> block /* (34) */)
    {
        float amax = 0f;
        for (int j = 0; j < BlockSize; j++)
        {
            amax = Max(amax, MathF.Abs(xb[j]));
        }
        float d = amax / ((1 << 7) - 1);
        float id = d != 0 ? 1.0f / d : 0.0f;
        QuantMath.WriteHalf(block, 0, d);
        for (int j = 0; j < BlockSize; j++)
        {
            block[2 + j] = (byte)QuantMath.TruncateLikeX86(QuantMath.RoundHalfAwayFromZero(xb[j] * id));
        }
    }

    /// <summary>
    /// <see cref="QuantizeBlock"/> in four 8-lane vectors: the largest magnitude is order-free, x·(1/d) and
    /// roundf (truncate, then step away from zero when the remainder is at least one half) are per-lane IEEE
    /// operations, and the levels are within ±127 so truncating them to bytes is plain narrowing. Returns
    /// false, writing nothing, for a block whose 1/d overflows (all |x| below ~4e-37), which the reference
    /// handles with its x86 conversion of infinities.
    /// </summary>
    private static bool QuantizeBlockVector(ReadOnlySpan<float> xb /* (32) */, Span<byte> block /* (34) */)
    {
        ref float src = ref MemoryMarshal.GetReference(xb[..BlockSize]);
        Vector256<float> v0 = Vector256.LoadUnsafe(ref src, 0);
        Vector256<float> v1 = Vector256.LoadUnsafe(ref src, 8);
        Vector256<float> v2 = Vector256.LoadUnsafe(ref src, 16);
        Vector256<float> v3 = Vector256.LoadUnsafe(ref src, 24);
        Vector256<float> m = Vector256.MaxNative(Vector256.MaxNative(Vector256.Abs(v0), Vector256.Abs(v1)), Vector256.MaxNative(Vector256.Abs(v2), Vector256.Abs(v3)));
        float amax = 0f;
        for (int j = 0; j < Vector256<float>.Count; j++)
        {
            amax = Max(amax, m.GetElement(j));
        }
        float d = amax / ((1 << 7) - 1);
        float id = d != 0 ? 1.0f / d : 0.0f;
        if (!float.IsFinite(id))
        {
            return false;
        }
        QuantMath.WriteHalf(block, 0, d);
        Vector256<float> vid = Vector256.Create(id);
        Vector256<short> lo = Vector256.Narrow(RoundToInt(v0 * vid), RoundToInt(v1 * vid));
        Vector256<short> hi = Vector256.Narrow(RoundToInt(v2 * vid), RoundToInt(v3 * vid));
        Vector256.Narrow(lo, hi).AsByte().CopyTo(block.Slice(2, BlockSize));
        return true;
    }

    /// <summary><see cref="QuantMath.RoundHalfAwayFromZero"/> lane by lane, as an integer (|v| &lt; 2^31).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> RoundToInt(Vector256<float> v)
    {
        Vector256<float> t = Vector256.Truncate(v);
        Vector256<float> away = t + (Vector256<float>.One.AsInt32() | (v.AsInt32() & Vector256.Create(int.MinValue))).AsSingle();
        Vector256<float> rounded = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(Vector256.Abs(v - t), Vector256.Create(0.5f)), away, t);
        return Vector256.ConvertToInt32(rounded);
    }

    /// <summary>dequantize_row_q8_0: y = q·d.</summary>
    public static void DequantizeRow(ReadOnlySpan<byte> x /* (k/32·34) */, Span<float> y /* (k) */)
    {
        int nb = y.Length / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            ReadOnlySpan<byte> block = x.Slice(i * TypeSize, TypeSize);
            Span<float> yb = y.Slice(i * BlockSize, BlockSize);
            float d = QuantMath.ReadHalf(block, 0);
            for (int j = 0; j < BlockSize; j++)
            {
                yb[j] = (sbyte)block[2 + j] * d;
            }
        }
    }

    /// <summary>C's MAX macro (a &gt; b ? a : b), which differs from MathF.Max on NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Max(float a, float b) => a > b ? a : b;
}
