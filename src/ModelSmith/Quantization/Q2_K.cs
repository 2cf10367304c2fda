namespace ModelSmith.Quantization;

/// <summary>
/// Q2_K: super-blocks of 256 weights in 16 sub-blocks of 16, each weight a 2-bit level l ∈ [0, 3] with
/// weight = d·sc·l − dmin·mn, where sc and mn are the sub-block's 4-bit scale and min. 2.625 bits per weight.
///
/// Block layout (84 bytes, ggml-common.h block_q2_K):
/// <code>
///   offset  size  field
///   0       16    scales  byte j: sub-block j's scale (low nibble) and min (high nibble)
///   16      64    qs      2-bit levels: in each half of 128 weights, byte l holds weights l, l+32, l+64, l+96
///                         in bits 0-1, 2-3, 4-5, 6-7 (first half in bytes 0..31, second in 32..63)
///   80      2     d       F16 super-block scale of the scales
///   82      2     dmin    F16 super-block scale of the mins
/// </code>
/// </summary>
internal static class Q2_K
{
    public const int BlockSize = QuantMath.QK_K;
    public const int TypeSize = 84;

    private const int ScalesOffset = 0;
    private const int QsOffset = 16;
    private const int DOffset = 80;
    private const int DminOffset = 82;

    /// <summary>
    /// quantize_row_q2_K_ref. Per sub-block of 16: make_qkx2_quants with nmax = 3, weights |x|, absolute
    /// error, 16 candidate iscales (3 − 0.5 + 0.1·is)/(max − min). The 16 scales and 16 mins are then
    /// quantized to 4 bits against their maxima (d = max_scale/15, dmin = max_min/15), and every weight is
    /// re-rounded against the stored scales: l = clamp(round((x + dmin·mn)/(d·sc)), 0, 3). A sub-block whose
    /// stored scale is zero keeps the levels of the first pass.
    /// </summary>
    public static void QuantizeRow(ReadOnlySpan<float> x /* (k), k % 256 == 0 */, Span<byte> y /* (k/256·84) */)
    {
        const float q4scale = 15f;
        int nb = x.Length / BlockSize;
        Span<byte> levels = stackalloc byte[BlockSize];
        Span<byte> scratch = stackalloc byte[16];
        Span<float> weights = stackalloc float[16];
        Span<float> mins = stackalloc float[16];
        Span<float> scales = stackalloc float[16];
        for (int i = 0; i < nb; i++)
        {
            ReadOnlySpan<float> xb = x.Slice(i * BlockSize, BlockSize);
            Span<byte> block = y.Slice(i * TypeSize, TypeSize);
            Span<byte> packedScales = block.Slice(ScalesOffset, 16);

            float maxScale = 0;
            float maxMin = 0;
            for (int j = 0; j < 16; j++)
            {
                ReadOnlySpan<float> xs = xb.Slice(16 * j, 16);
                for (int l = 0; l < 16; l++)
                {
                    weights[l] = MathF.Abs(xs[l]);
                }
                scales[j] = QuantMath.MakeQkx2Quants(3, xs, weights, levels.Slice(16 * j, 16), out mins[j], scratch, -0.5f, 0.1f, 15, true);
                if (scales[j] > maxScale)
                {
                    maxScale = scales[j];
                }
                if (mins[j] > maxMin)
                {
                    maxMin = mins[j];
                }
            }

            float d;
            if (maxScale > 0)
            {
                float iscale = q4scale / maxScale;
                for (int j = 0; j < 16; j++)
                {
                    packedScales[j] = (byte)QuantMath.NearestInt(iscale * scales[j]);
                }
                d = QuantMath.WriteHalf(block, DOffset, maxScale / q4scale);
            }
            else
            {
                packedScales.Clear();
                d = QuantMath.WriteHalf(block, DOffset, 0f);
            }
            float dmin;
            if (maxMin > 0)
            {
                float iscale = q4scale / maxMin;
                for (int j = 0; j < 16; j++)
                {
                    packedScales[j] = (byte)(packedScales[j] | (QuantMath.NearestInt(iscale * mins[j]) << 4));
                }
                dmin = QuantMath.WriteHalf(block, DminOffset, maxMin / q4scale);
            }
            else
            {
                dmin = QuantMath.WriteHalf(block, DminOffset, 0f);
            }

            for (int j = 0; j < 16; j++)
            {
                float ds = d * (packedScales[j] & 0xF);
                if (ds == 0)
                {
                    continue;
                }
                float dm = dmin * (packedScales[j] >> 4);
                for (int ii = 0; ii < 16; ii++)
                {
                    int l = QuantMath.NearestInt((xb[16 * j + ii] + dm) / ds);
                    levels[16 * j + ii] = (byte)Math.Max(0, Math.Min(3, l));
                }
            }

            QuantMath.Pack2Bit(levels, block.Slice(QsOffset, 64));
        }
    }

    /// <summary>
    /// quantize_row_q2_K_impl, the path llama.cpp takes when it has an importance matrix. With
    /// σ² = Σx²/256 over the super-block, each weight gets w = q·sqrt(σ² + x²) (q = its column's importance),
    /// each sub-block of 16 make_qkx3_quants (nmax = 3, squared error, 37 candidate iscales), and the 16
    /// scales and 16 mins are quantized to 4 bits by make_qp_quants weighted by each sub-block's Σw. Every
    /// weight is then re-rounded against the stored scale and min, as in the reference.
    /// </summary>
    public static void QuantizeRowImportance(ReadOnlySpan<float> x /* (k), k % 256 == 0 */, ReadOnlySpan<float> importance /* (k) */, Span<byte> y /* (k/256·84) */)
    {
        int nb = x.Length / BlockSize;
        Span<byte> levels = stackalloc byte[BlockSize];
        Span<byte> scratch = stackalloc byte[16];
        Span<float> weights = stackalloc float[16];
        Span<float> mins = stackalloc float[16];
        Span<float> scales = stackalloc float[16];
        Span<float> sumWeights = stackalloc float[16];
        Span<byte> scaleLevels = stackalloc byte[16];
        Span<byte> minLevels = stackalloc byte[16];
        for (int i = 0; i < nb; i++)
        {
            ReadOnlySpan<float> xb = x.Slice(i * BlockSize, BlockSize);
            ReadOnlySpan<float> qb = importance.Slice(i * BlockSize, BlockSize);
            Span<byte> block = y.Slice(i * TypeSize, TypeSize);
            Span<byte> packedScales = block.Slice(ScalesOffset, 16);

            float sumX2 = 0;
            for (int j = 0; j < BlockSize; j++)
            {
                sumX2 += xb[j] * xb[j];
            }
            float sigma2 = sumX2 / BlockSize;
            for (int j = 0; j < 16; j++)
            {
                ReadOnlySpan<float> xs = xb.Slice(16 * j, 16);
                float sw = 0;
                for (int l = 0; l < 16; l++)
                {
                    weights[l] = qb[16 * j + l] * MathF.Sqrt(sigma2 + xs[l] * xs[l]);
                }
                for (int l = 0; l < 16; l++)
                {
                    sw += weights[l];
                }
                sumWeights[j] = sw;
                scales[j] = WeightedQuantMath.MakeQkx3Quants(3, xs, weights, levels.Slice(16 * j, 16), out mins[j], scratch, -0.9f, 0.05f, 36, false);
            }

            float dm = WeightedQuantMath.MakeQpQuants(15, scales, scaleLevels, sumWeights);
            float mm = WeightedQuantMath.MakeQpQuants(15, mins, minLevels, sumWeights);
            dm = QuantMath.WriteHalf(block, DOffset, dm);
            mm = QuantMath.WriteHalf(block, DminOffset, mm);
            for (int j = 0; j < 16; j++)
            {
                packedScales[j] = (byte)(scaleLevels[j] | (minLevels[j] << 4));
            }

            for (int j = 0; j < 16; j++)
            {
                float ds = dm * (packedScales[j] & 0xF);
                if (ds == 0)
                {
                    continue;
                }
                float m = mm * (packedScales[j] >> 4);
                for (int ii = 0; ii < 16; ii++)
                {
                    int l = QuantMath.NearestInt((xb[16 * j + ii] + m) / ds);
                    levels[16 * j + ii] = (byte)Math.Max(0, Math.Min(3, l));
                }
            }

            QuantMath.Pack2Bit(levels, block.Slice(QsOffset, 64));
        }
    }

    /// <summary>dequantize_row_q2_K: y = (d·sc)·l − (dmin·mn), sub-block by sub-block in the packing order.</summary>
    public static void DequantizeRow(ReadOnlySpan<byte> x /* (k/256·84) */, Span<float> y /* (k) */)
    {
        int nb = y.Length / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            ReadOnlySpan<byte> block = x.Slice(i * TypeSize, TypeSize);
            Span<float> yb = y.Slice(i * BlockSize, BlockSize);
            float d = QuantMath.ReadHalf(block, DOffset);
            float min = QuantMath.ReadHalf(block, DminOffset);
            int output = 0;
            int sub = 0;
            for (int half = 0; half < 2; half++)
            {
                ReadOnlySpan<byte> q = block.Slice(QsOffset + 32 * half, 32);
                for (int shift = 0; shift < 8; shift += 2)
                {
                    for (int part = 0; part < 2; part++)
                    {
                        byte sc = block[ScalesOffset + sub++];
                        float dl = d * (sc & 0xF);
                        float ml = min * (sc >> 4);
                        for (int l = 0; l < 16; l++)
                        {
                            yb[output++] = dl * ((q[16 * part + l] >> shift) & 3) - ml;
                        }
                    }
                }
            }
        }
    }
}
