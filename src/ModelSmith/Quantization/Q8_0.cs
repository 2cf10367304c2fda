using System.Runtime.CompilerServices;

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
    /// quantize_row_q8_0_ref: d = amax/127 and q = roundf(x/d) (half away from zero), where x/d is
    /// computed as x·(1/d) with the unrounded d; d is then stored as F16.
    /// </summary>
    public static void QuantizeRow(ReadOnlySpan<float> x /* (k), k % 32 == 0 */, Span<byte> y /* (k/32·34) */)
    {
        int nb = x.Length / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            ReadOnlySpan<float> xb = x.Slice(i * BlockSize, BlockSize);
            Span<byte> block = y.Slice(i * TypeSize, TypeSize);
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
