using System.Runtime.InteropServices;

namespace ModelSmith.Quantization;

/// <summary>
/// Q3_K: super-blocks of 256 weights in 16 sub-blocks of 16, each weight a 3-bit level l ∈ [−4, 3] with
/// weight = d·(sc − 32)·l, where sc is the sub-block's 6-bit scale. 3.4375 bits per weight.
///
/// Block layout (110 bytes, ggml-common.h block_q3_K):
/// <code>
///   offset  size  field
///   0       32    hmask   high bit of l + 4: weight j's bit is bit (j / 32) of byte (j % 32)
///   32      64    qs      low 2 bits of l + 4, packed as Q2_K's qs
///   96      12    scales  16 six-bit scales: low nibbles of scales 0..7 in the low nibbles of bytes 0..7,
///                         of scales 8..15 in their high nibbles; the top 2 bits of scale j in bits
///                         2·(j / 4) of byte 8 + j % 4
///   108     2     d       F16 super-block scale
/// </code>
/// </summary>
internal static class Q3_K
{
    public const int BlockSize = QuantMath.QK_K;
    public const int TypeSize = 110;

    private const int HmaskOffset = 0;
    private const int QsOffset = 32;
    private const int ScalesOffset = 96;
    private const int DOffset = 108;

    /// <summary>
    /// quantize_row_q3_K_ref. Per sub-block: make_q3_quants (nmax = 4, weights x², coordinate descent).
    /// The signed scales are quantized to 6 bits against the one of largest magnitude (iscale = −32/max,
    /// stored d = 1/iscale), then every weight is re-rounded against the stored scale:
    /// l = clamp(round(x/(d·(sc − 32))), −4, 3). A sub-block whose stored scale is zero keeps the levels of
    /// the first pass.
    /// </summary>
    public static void QuantizeRow(ReadOnlySpan<float> x /* (k), k % 256 == 0 */, Span<byte> y /* (k/256·110) */)
    {
        int nb = x.Length / BlockSize;
        Span<sbyte> levels = stackalloc sbyte[BlockSize];
        Span<float> scales = stackalloc float[16];
        for (int i = 0; i < nb; i++)
        {
            ReadOnlySpan<float> xb = x.Slice(i * BlockSize, BlockSize);
            Span<byte> block = y.Slice(i * TypeSize, TypeSize);
            Span<byte> packedScales = block.Slice(ScalesOffset, 12);

            float maxScale = 0;
            float amax = 0;
            for (int j = 0; j < 16; j++)
            {
                scales[j] = QuantMath.MakeQ3Quants(4, xb.Slice(16 * j, 16), levels.Slice(16 * j, 16));
                float scale = MathF.Abs(scales[j]);
                if (scale > amax)
                {
                    amax = scale;
                    maxScale = scales[j];
                }
            }

            packedScales.Clear();
            float d;
            if (maxScale != 0)
            {
                float iscale = -32f / maxScale;
                for (int j = 0; j < 16; j++)
                {
                    sbyte l = (sbyte)QuantMath.NearestInt(iscale * scales[j]);
                    l = (sbyte)(Math.Max(-32, Math.Min(31, (int)l)) + 32);
                    if (j < 8)
                    {
                        packedScales[j] = (byte)(l & 0xF);
                    }
                    else
                    {
                        packedScales[j - 8] |= (byte)((l & 0xF) << 4);
                    }
                    l >>= 4;
                    packedScales[j % 4 + 8] |= (byte)(l << (2 * (j / 4)));
                }
                d = QuantMath.WriteHalf(block, DOffset, 1 / iscale);
            }
            else
            {
                d = QuantMath.WriteHalf(block, DOffset, 0f);
            }

            RequantizeAndPack(xb, block, d, levels);
        }
    }

    /// <summary>
    /// The end shared by the reference and the importance path: re-rounds every weight against the stored
    /// scale, l = clamp(round(x/(d·(sc − 32))), −4, 3) (a sub-block whose stored scale is zero keeps its
    /// first-pass levels), then writes the high bits to hmask and the low 2 bits to qs.
    /// </summary>
    private static void RequantizeAndPack(ReadOnlySpan<float> xb /* (256) */, Span<byte> block /* (110) */, float d, Span<sbyte> levels /* (256) */)
    {
        ReadOnlySpan<byte> packedScales = block.Slice(ScalesOffset, 12);
        for (int j = 0; j < 16; j++)
        {
            float ds = d * Scale(packedScales, j);
            if (ds == 0)
            {
                continue;
            }
            for (int ii = 0; ii < 16; ii++)
            {
                int l = QuantMath.NearestInt(xb[16 * j + ii] / ds);
                levels[16 * j + ii] = (sbyte)(Math.Max(-4, Math.Min(3, l)) + 4);
            }
        }

        Span<byte> hmask = block.Slice(HmaskOffset, 32);
        hmask.Clear();
        for (int j = 0; j < BlockSize; j++)
        {
            if (levels[j] > 3)
            {
                hmask[j % 32] |= (byte)(1 << (j / 32));
                levels[j] -= 4;
            }
        }
        QuantMath.Pack2Bit(MemoryMarshal.Cast<sbyte, byte>(levels), block.Slice(QsOffset, 64));
    }

    /// <summary>
    /// quantize_row_q3_K_impl with an importance matrix. With σ² = 2·Σx²/256 over the super-block, each
    /// weight gets w = q·sqrt(σ² + x²); each sub-block of 16 is fitted by make_qx_quants (nmax = 4) under
    /// those weights, and the 16 signed scales by make_qx_quants (nmax = 32, weighted by each sub-block's
    /// Σw), whose levels are stored directly as the 6-bit scales and whose scale is d. Every weight is then
    /// re-rounded against the stored scale, as in the reference.
    /// </summary>
    public static void QuantizeRowImportance(ReadOnlySpan<float> x /* (k), k % 256 == 0 */, ReadOnlySpan<float> importance /* (k) */, Span<byte> y /* (k/256·110) */)
    {
        int nb = x.Length / BlockSize;
        Span<sbyte> levels = stackalloc sbyte[BlockSize];
        Span<float> scales = stackalloc float[16];
        Span<float> weights = stackalloc float[16];
        Span<float> sumWeights = stackalloc float[16];
        Span<sbyte> scaleLevels = stackalloc sbyte[16];
        for (int i = 0; i < nb; i++)
        {
            ReadOnlySpan<float> xb = x.Slice(i * BlockSize, BlockSize);
            ReadOnlySpan<float> qb = importance.Slice(i * BlockSize, BlockSize);
            Span<byte> block = y.Slice(i * TypeSize, TypeSize);
            Span<byte> packedScales = block.Slice(ScalesOffset, 12);

            float sumX2 = 0;
            for (int j = 0; j < BlockSize; j++)
            {
                sumX2 += xb[j] * xb[j];
            }
            float sigma2 = 2 * sumX2 / BlockSize;
            for (int j = 0; j < 16; j++)
            {
                ReadOnlySpan<float> xs = xb.Slice(16 * j, 16);
                for (int l = 0; l < 16; l++)
                {
                    weights[l] = qb[16 * j + l] * MathF.Sqrt(sigma2 + xs[l] * xs[l]);
                }
                float sw = 0;
                for (int l = 0; l < 16; l++)
                {
                    sw += weights[l];
                }
                sumWeights[j] = sw;
                scales[j] = WeightedQuantMath.MakeQxQuants(4, xs, weights, levels.Slice(16 * j, 16));
            }

            packedScales.Clear();
            float dBlock = WeightedQuantMath.MakeQxQuants(32, scales, sumWeights, scaleLevels);
            for (int j = 0; j < 16; j++)
            {
                int l = scaleLevels[j];
                if (j < 8)
                {
                    packedScales[j] = (byte)(l & 0xF);
                }
                else
                {
                    packedScales[j - 8] |= (byte)((l & 0xF) << 4);
                }
                l >>= 4;
                packedScales[j % 4 + 8] |= (byte)(l << (2 * (j / 4)));
            }
            float d = QuantMath.WriteHalf(block, DOffset, dBlock);

            RequantizeAndPack(xb, block, d, levels);
        }
    }

    /// <summary>dequantize_row_q3_K: y = (d·(sc − 32))·(low2 − (high bit set ? 0 : 4)).</summary>
    public static void DequantizeRow(ReadOnlySpan<byte> x /* (k/256·110) */, Span<float> y /* (k) */)
    {
        int nb = y.Length / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            ReadOnlySpan<byte> block = x.Slice(i * TypeSize, TypeSize);
            Span<float> yb = y.Slice(i * BlockSize, BlockSize);
            ReadOnlySpan<byte> packedScales = block.Slice(ScalesOffset, 12);
            ReadOnlySpan<byte> hmask = block.Slice(HmaskOffset, 32);
            float dAll = QuantMath.ReadHalf(block, DOffset);
            int output = 0;
            int sub = 0;
            int bit = 1;
            for (int half = 0; half < 2; half++)
            {
                ReadOnlySpan<byte> q = block.Slice(QsOffset + 32 * half, 32);
                for (int shift = 0; shift < 8; shift += 2)
                {
                    for (int part = 0; part < 2; part++)
                    {
                        float dl = dAll * Scale(packedScales, sub++);
                        for (int l = 0; l < 16; l++)
                        {
                            int k = 16 * part + l;
                            yb[output++] = dl * (((q[k] >> shift) & 3) - ((hmask[k] & bit) != 0 ? 0 : 4));
                        }
                    }
                    bit <<= 1;
                }
            }
        }
    }

    /// <summary>Sub-block <paramref name="j"/>'s scale minus its offset of 32, in [−32, 31].</summary>
    private static int Scale(ReadOnlySpan<byte> packed /* (12) */, int j)
    {
        int low = j < 8 ? packed[j] & 0xF : packed[j - 8] >> 4;
        int high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        return (sbyte)(low | (high << 4)) - 32;
    }
}
