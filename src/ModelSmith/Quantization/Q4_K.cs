namespace ModelSmith.Quantization;

/// <summary>
/// Q4_K: super-blocks of 256 weights in 8 sub-blocks of 32, each weight a 4-bit level l ∈ [0, 15] with
/// weight = d·sc·l − dmin·mn, where sc and mn are the sub-block's 6-bit scale and min. 4.5 bits per weight.
///
/// Block layout (144 bytes, ggml-common.h block_q4_K):
/// <code>
///   offset  size  field
///   0       2     d       F16 super-block scale of the scales
///   2       2     dmin    F16 super-block scale of the mins
///   4       12    scales  8 six-bit scales and 8 six-bit mins (see <see cref="QuantMath.GetScaleMinK4"/>)
///   16      128   qs      4-bit levels: for each 64 weights, 32 bytes with weight l in the low nibble of
///                         byte l and weight l+32 in its high nibble
/// </code>
/// </summary>
internal static class Q4_K
{
    public const int BlockSize = QuantMath.QK_K;
    public const int TypeSize = 144;

    private const int DOffset = 0;
    private const int DminOffset = 2;
    private const int ScalesOffset = 4;
    private const int QsOffset = 16;

    /// <summary>
    /// quantize_row_q4_K_ref. Per sub-block of 32: weights w = rms(x) + |x|, make_qkx2_quants with
    /// nmax = 15, squared error, 21 candidate iscales (15 − 1 + 0.1·is)/(max − min). Scales and mins are
    /// quantized to 6 bits against their maxima (d = max_scale/63, dmin = max_min/63), then every weight is
    /// re-rounded against the stored values: l = clamp(round((x + dmin·mn)/(d·sc)), 0, 15).
    /// </summary>
    public static void QuantizeRow(ReadOnlySpan<float> x /* (k), k % 256 == 0 */, Span<byte> y /* (k/256·144) */) =>
        QuantizeSuperBlocks<Nibbles>(15, -1f, 0.1f, 20, x, y);

    /// <summary>
    /// quantize_row_q4_K_impl with an importance matrix. With σ² = 2·Σx²/256 over the super-block, each
    /// weight gets w = q·sqrt(σ² + x²); each sub-block of 32 is fitted by make_qkx3_quants (nmax = 15,
    /// squared error, 37 candidate iscales), and the 8 scales and 8 mins are quantized to 6 bits by
    /// make_qp_quants weighted by each sub-block's Σw (d and dmin are the scales those return). Every weight
    /// is then re-rounded against the stored values, as in the reference.
    /// </summary>
    public static void QuantizeRowImportance(ReadOnlySpan<float> x /* (k), k % 256 == 0 */, ReadOnlySpan<float> importance /* (k) */, Span<byte> y /* (k/256·144) */) =>
        QuantizeSuperBlocksImportance<Nibbles>(15, clampTo63: false, x, importance, y);

    /// <summary>
    /// How a format with Q4_K's 16-byte header (d, dmin, 12 bytes of 6-bit scales and mins) stores its 256
    /// levels in the rest of the super-block: Q4_K as nibbles, Q5_K as nibbles plus a plane of high bits.
    /// </summary>
    internal interface ILevelPacking
    {
        /// <summary>Bytes per super-block of 256 weights.</summary>
        static abstract int TypeSize { get; }

        /// <summary>Writes the levels (0..nmax) into the block after its header.</summary>
        static abstract void Pack(ReadOnlySpan<byte> levels /* (256) */, Span<byte> block /* (TypeSize) */);
    }

    /// <summary>Q4_K's qs: for each 64 weights, 32 bytes with weight l in the low nibble and l+32 in the high.</summary>
    private readonly struct Nibbles : ILevelPacking
    {
        public static int TypeSize => Q4_K.TypeSize;

        public static void Pack(ReadOnlySpan<byte> levels /* (256) 0..15 */, Span<byte> block /* (144) */)
        {
            Span<byte> q = block.Slice(QsOffset, 128);
            for (int j = 0; j < BlockSize; j += 64)
            {
                for (int l = 0; l < 32; l++)
                {
                    q[j / 2 + l] = (byte)(levels[j + l] | (levels[j + l + 32] << 4));
                }
            }
        }
    }

    /// <summary>
    /// The super-block loop of quantize_row_q4_K_ref and quantize_row_q5_K_ref, which differ only in nmax,
    /// the make_qkx2_quants search (rmin, rdelta, nstep) and how the levels are stored
    /// (<typeparamref name="TLevels"/>): <see cref="SubBlockScales"/>, <see cref="StoreScales"/>,
    /// <see cref="Requantize"/>, then the packing.
    /// </summary>
    internal static void QuantizeSuperBlocks<TLevels>(int nmax, float rmin, float rdelta, int nstep,
        ReadOnlySpan<float> x /* (k), k % 256 == 0 */, Span<byte> y /* (k/256·TypeSize) */)
        where TLevels : struct, ILevelPacking
    {
        int nb = x.Length / BlockSize;
        Span<byte> levels = stackalloc byte[BlockSize];
        Span<byte> scratch = stackalloc byte[32];
        Span<float> weights = stackalloc float[32];
        Span<float> mins = stackalloc float[8];
        Span<float> scales = stackalloc float[8];
        Span<byte> scaleLevels = stackalloc byte[8];
        Span<byte> minLevels = stackalloc byte[8];
        for (int i = 0; i < nb; i++)
        {
            ReadOnlySpan<float> xb = x.Slice(i * BlockSize, BlockSize);
            Span<byte> block = y.Slice(i * TLevels.TypeSize, TLevels.TypeSize);
            SubBlockScales(nmax, rmin, rdelta, nstep, xb, levels, scratch, weights, scales, mins, out float maxScale, out float maxMin);
            float d = StoreScales(block, scales, mins, maxScale, maxMin, scaleLevels, minLevels, out float dmin);
            Requantize(nmax, xb, block.Slice(ScalesOffset, 12), d, dmin, levels);
            TLevels.Pack(levels, block);
        }
    }

    /// <summary>
    /// The super-block loop of quantize_row_q4_K_impl and quantize_row_q5_K_impl, which differ only in nmax,
    /// whether the 6-bit scales and mins are clamped to 63 (<see cref="StoreScalesImportance"/>) and how the
    /// levels are stored (<typeparamref name="TLevels"/>).
    /// </summary>
    internal static void QuantizeSuperBlocksImportance<TLevels>(int nmax, bool clampTo63,
        ReadOnlySpan<float> x /* (k), k % 256 == 0 */, ReadOnlySpan<float> importance /* (k) */, Span<byte> y /* (k/256·TypeSize) */)
        where TLevels : struct, ILevelPacking
    {
        int nb = x.Length / BlockSize;
        Span<byte> levels = stackalloc byte[BlockSize];
        Span<byte> scratch = stackalloc byte[32];
        Span<float> weights = stackalloc float[32];
        Span<float> mins = stackalloc float[8];
        Span<float> scales = stackalloc float[8];
        Span<float> sumWeights = stackalloc float[8];
        Span<byte> scaleLevels = stackalloc byte[8];
        Span<byte> minLevels = stackalloc byte[8];
        for (int i = 0; i < nb; i++)
        {
            ReadOnlySpan<float> xb = x.Slice(i * BlockSize, BlockSize);
            Span<byte> block = y.Slice(i * TLevels.TypeSize, TLevels.TypeSize);
            SubBlockScalesImportance(nmax, xb, importance.Slice(i * BlockSize, BlockSize), levels, scratch, weights, scales, mins, sumWeights);
            float d = StoreScalesImportance(block, scales, mins, sumWeights, scaleLevels, minLevels, clampTo63, out float dmin);
            Requantize(nmax, xb, block.Slice(ScalesOffset, 12), d, dmin, levels);
            TLevels.Pack(levels, block);
        }
    }

    /// <summary>dequantize_row_q4_K: y = (d·sc)·l − (dmin·mn).</summary>
    public static void DequantizeRow(ReadOnlySpan<byte> x /* (k/256·144) */, Span<float> y /* (k) */)
    {
        int nb = y.Length / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            ReadOnlySpan<byte> block = x.Slice(i * TypeSize, TypeSize);
            Span<float> yb = y.Slice(i * BlockSize, BlockSize);
            ReadOnlySpan<byte> packedScales = block.Slice(ScalesOffset, 12);
            float d = QuantMath.ReadHalf(block, DOffset);
            float min = QuantMath.ReadHalf(block, DminOffset);
            for (int j = 0, sub = 0; j < BlockSize; j += 64, sub += 2)
            {
                ReadOnlySpan<byte> q = block.Slice(QsOffset + j / 2, 32);
                QuantMath.GetScaleMinK4(sub, packedScales, out int sc1, out int m1);
                float d1 = d * sc1;
                float min1 = min * m1;
                QuantMath.GetScaleMinK4(sub + 1, packedScales, out int sc2, out int m2);
                float d2 = d * sc2;
                float min2 = min * m2;
                for (int l = 0; l < 32; l++)
                {
                    yb[j + l] = d1 * (q[l] & 0xF) - min1;
                }
                for (int l = 0; l < 32; l++)
                {
                    yb[j + 32 + l] = d2 * (q[l] >> 4) - min2;
                }
            }
        }
    }

    /// <summary>
    /// The first pass shared by Q4_K and Q5_K (<see cref="SubBlockScalesReference"/>), on the 8 sub-blocks at
    /// once in vector lanes where the hardware allows (<see cref="QuantLanes.Qkx2SubBlocks"/>, the same bits).
    /// </summary>
    internal static void SubBlockScales(int nmax, float rmin, float rdelta, int nstep, ReadOnlySpan<float> xb /* (256) */,
        Span<byte> levels /* (256) */, Span<byte> scratch /* (32) */, Span<float> weights /* (32) */,
        Span<float> scales /* (8) */, Span<float> mins /* (8) */, out float maxScale, out float maxMin)
    {
        if (QuantLanes.IsSupported)
        {
            QuantLanes.Qkx2SubBlocks(nmax, rmin, rdelta, nstep, xb, levels, scales, mins, out maxScale, out maxMin);
            return;
        }
        SubBlockScalesReference(nmax, rmin, rdelta, nstep, xb, levels, scratch, weights, scales, mins, out maxScale, out maxMin);
    }

    /// <summary>
    /// The first pass shared by Q4_K and Q5_K: for each of the 8 sub-blocks of 32, weights
    /// w = sqrt(Σx²/32) + |x| and make_qkx2_quants; returns the largest scale and largest min (both ≥ 0).
    /// </summary>
    internal static void SubBlockScalesReference(int nmax, float rmin, float rdelta, int nstep, ReadOnlySpan<float> xb /* (256) */,
        Span<byte> levels /* (256) */, Span<byte> scratch /* (32) */, Span<float> weights /* (32) */,
        Span<float> scales /* (8) */, Span<float> mins /* (8) */, out float maxScale, out float maxMin)
    {
        maxScale = 0;
        maxMin = 0;
        for (int j = 0; j < 8; j++)
        {
            ReadOnlySpan<float> xs = xb.Slice(32 * j, 32);
            float sumX2 = 0;
            for (int l = 0; l < 32; l++)
            {
                sumX2 += xs[l] * xs[l];
            }
            float avX = MathF.Sqrt(sumX2 / 32);
            for (int l = 0; l < 32; l++)
            {
                weights[l] = avX + MathF.Abs(xs[l]);
            }
            scales[j] = QuantMath.MakeQkx2Quants(nmax, xs, weights, levels.Slice(32 * j, 32), out mins[j], scratch, rmin, rdelta, nstep, false);
            if (scales[j] > maxScale)
            {
                maxScale = scales[j];
            }
            if (mins[j] > maxMin)
            {
                maxMin = mins[j];
            }
        }
    }

    /// <summary>
    /// The first pass of the importance path shared by Q4_K and Q5_K: σ² = 2·Σx²/256, weights
    /// w = q·sqrt(σ² + x²), make_qkx3_quants per sub-block of 32 (rmin −0.9, rdelta 0.05, 36 steps);
    /// <paramref name="sumWeights"/>[j] = Σw of sub-block j.
    /// </summary>
    internal static void SubBlockScalesImportance(int nmax, ReadOnlySpan<float> xb /* (256) */, ReadOnlySpan<float> qb /* (256) */,
        Span<byte> levels /* (256) */, Span<byte> scratch /* (32) */, Span<float> weights /* (32) */,
        Span<float> scales /* (8) */, Span<float> mins /* (8) */, Span<float> sumWeights /* (8) */)
    {
        float sumX2 = 0;
        for (int l = 0; l < BlockSize; l++)
        {
            sumX2 += xb[l] * xb[l];
        }
        float sigma2 = 2 * sumX2 / BlockSize;
        for (int j = 0; j < 8; j++)
        {
            ReadOnlySpan<float> xs = xb.Slice(32 * j, 32);
            for (int l = 0; l < 32; l++)
            {
                weights[l] = qb[32 * j + l] * MathF.Sqrt(sigma2 + xs[l] * xs[l]);
            }
            float sw = 0;
            for (int l = 0; l < 32; l++)
            {
                sw += weights[l];
            }
            sumWeights[j] = sw;
            scales[j] = WeightedQuantMath.MakeQkx3Quants(nmax, xs, weights, levels.Slice(32 * j, 32), out mins[j], scratch, -0.9f, 0.05f, 36, false);
        }
    }

    /// <summary>
    /// The importance path's 6-bit scales and mins (Q4_K and Q5_K): make_qp_quants (nmax = 63) of the
    /// scales and of the mins, weighted by each sub-block's Σw; levels packed (Q5_K's impl clamps them to 63
    /// first, Q4_K's does not: make_qp_quants never returns more than 63 except for a negative scale, whose
    /// wrapped level each format then treats as ggml does), d and dmin stored as F16.
    /// Returns the stored d; <paramref name="dmin"/> is the stored dmin.
    /// </summary>
    internal static float StoreScalesImportance(Span<byte> block, ReadOnlySpan<float> scales /* (8) */, ReadOnlySpan<float> mins /* (8) */,
        ReadOnlySpan<float> sumWeights /* (8) */, Span<byte> scaleLevels /* (8) */, Span<byte> minLevels /* (8) */, bool clampTo63, out float dmin)
    {
        float dBlock = WeightedQuantMath.MakeQpQuants(63, scales, scaleLevels, sumWeights);
        float mBlock = WeightedQuantMath.MakeQpQuants(63, mins, minLevels, sumWeights);
        if (clampTo63)
        {
            for (int j = 0; j < 8; j++)
            {
                scaleLevels[j] = Math.Min((byte)63, scaleLevels[j]);
                minLevels[j] = Math.Min((byte)63, minLevels[j]);
            }
        }
        QuantMath.PackScaleMinK4(scaleLevels, minLevels, block.Slice(ScalesOffset, 12));
        float d = QuantMath.WriteHalf(block, DOffset, dBlock);
        dmin = QuantMath.WriteHalf(block, DminOffset, mBlock);
        return d;
    }

    /// <summary>
    /// Quantizes the 8 scales and mins to 6 bits (level = min(63, round(63·v/max)), truncated to a byte
    /// first as ggml's uint8_t does), packs them and stores d = max_scale/63 and dmin = max_min/63 as F16
    /// at bytes 0 and 2 (the same in Q4_K and Q5_K). Returns the stored d; <paramref name="dmin"/> is the stored dmin.
    /// </summary>
    internal static float StoreScales(Span<byte> block, ReadOnlySpan<float> scales /* (8) */, ReadOnlySpan<float> mins /* (8) */,
        float maxScale, float maxMin, Span<byte> scaleLevels /* (8) */, Span<byte> minLevels /* (8) */, out float dmin)
    {
        float invScale = maxScale > 0 ? 63f / maxScale : 0f;
        float invMin = maxMin > 0 ? 63f / maxMin : 0f;
        for (int j = 0; j < 8; j++)
        {
            scaleLevels[j] = Math.Min((byte)63, (byte)QuantMath.NearestInt(invScale * scales[j]));
            minLevels[j] = Math.Min((byte)63, (byte)QuantMath.NearestInt(invMin * mins[j]));
        }
        QuantMath.PackScaleMinK4(scaleLevels, minLevels, block.Slice(ScalesOffset, 12));
        float d = QuantMath.WriteHalf(block, DOffset, maxScale / 63f);
        dmin = QuantMath.WriteHalf(block, DminOffset, maxMin / 63f);
        return d;
    }

    /// <summary>
    /// Re-rounds every weight against the stored scale and min of its sub-block:
    /// l = clamp(round((x + dmin·mn)/(d·sc)), 0, nmax). A sub-block whose stored scale is zero keeps its
    /// first-pass levels.
    /// </summary>
    internal static void Requantize(int nmax, ReadOnlySpan<float> xb /* (256) */, ReadOnlySpan<byte> packedScales /* (12) */,
        float d, float dmin, Span<byte> levels /* (256) */)
    {
        for (int j = 0; j < 8; j++)
        {
            QuantMath.GetScaleMinK4(j, packedScales, out int sc, out int m);
            float ds = d * sc;
            if (ds == 0)
            {
                continue;
            }
            float dm = dmin * m;
            for (int ii = 0; ii < 32; ii++)
            {
                int l = QuantMath.NearestInt((xb[32 * j + ii] + dm) / ds);
                levels[32 * j + ii] = (byte)Math.Max(0, Math.Min(nmax, l));
            }
        }
    }
}
