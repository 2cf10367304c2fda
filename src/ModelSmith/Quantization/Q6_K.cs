using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ModelSmith.Quantization;

/// <summary>
/// Q6_K: super-blocks of 256 weights in 16 sub-blocks of 16, each weight a 6-bit level l ∈ [−32, 31] with
/// weight = d·sc·l, where sc is the sub-block's signed 8-bit scale. 6.5625 bits per weight.
///
/// Block layout (210 bytes, ggml-common.h block_q6_K):
/// <code>
///   offset  size  field
///   0       128   ql      low 4 bits of l + 32: for each half of 128 weights (64 bytes), byte l holds
///                         weights l (low nibble) and l+64 (high nibble), byte 32+l weights l+32 and l+96
///   128     64    qh      high 2 bits of l + 32: for each half (32 bytes), byte l holds weights l, l+32,
///                         l+64, l+96 in bits 0-1, 2-3, 4-5, 6-7
///   192     16    scales  int8 sub-block scales
///   208     2     d       F16 super-block scale
/// </code>
/// </summary>
internal static class Q6_K
{
    public const int BlockSize = QuantMath.QK_K;
    public const int TypeSize = 210;

    private const int QlOffset = 0;
    private const int QhOffset = 128;
    private const int ScalesOffset = 192;
    private const int DOffset = 208;

    /// <summary>
    /// quantize_row_q6_K_ref. Per sub-block: make_qx_quants (nmax = 32, weights x², 19 candidate scales).
    /// The signed scales are quantized to 8 bits against the one of largest magnitude
    /// (iscale = −128/max, sc = min(127, round(iscale·scale)), stored d = 1/iscale), then every weight is
    /// re-rounded: l = clamp(round(x/(d·sc)), −32, 31). A super-block whose scales are all below 1e-15
    /// is stored as all zero bytes.
    /// </summary>
    public static void QuantizeRowReference(ReadOnlySpan<float> x /* (k), k % 256 == 0 */, Span<byte> y /* (k/256·210) */) =>
        QuantizeRow(x, y, vector: false);

    /// <summary>
    /// <see cref="QuantizeRowReference"/> with the scale search, the re-rounding and the packing in 256-bit
    /// vectors where the hardware allows (the same bits).
    /// </summary>
    public static void QuantizeRow(ReadOnlySpan<float> x /* (k), k % 256 == 0 */, Span<byte> y /* (k/256·210) */) =>
        QuantizeRow(x, y, QuantLanes.IsSupported);

    private static void QuantizeRow(ReadOnlySpan<float> x /* (k), k % 256 == 0 */, Span<byte> y /* (k/256·210) */, bool vector)
    {
        int nb = x.Length / BlockSize;
        Span<sbyte> levels = stackalloc sbyte[BlockSize];
        Span<float> scales = stackalloc float[16];
        for (int i = 0; i < nb; i++)
        {
            ReadOnlySpan<float> xb = x.Slice(i * BlockSize, BlockSize);
            Span<byte> block = y.Slice(i * TypeSize, TypeSize);

            SubBlockScales(xb, levels, scales, vector);
            float maxScale = 0;
            float maxAbsScale = 0;
            for (int ib = 0; ib < 16; ib++)
            {
                float scale = scales[ib];
                float absScale = MathF.Abs(scale);
                if (absScale > maxAbsScale)
                {
                    maxAbsScale = absScale;
                    maxScale = scale;
                }
            }

            StoreBlock(xb, block, scales, levels, maxScale, maxAbsScale, vector);
        }
    }

    /// <summary>
    /// make_qx_quants (nmax = 32, weights x²) of each of the 16 sub-blocks of 16: levels l + 32 and the scale.
    /// On the 8 sub-blocks of each half at once in vector lanes where the hardware allows
    /// (<see cref="QuantLanes.MakeQxQuants16"/>, the same bits).
    /// </summary>
    internal static void SubBlockScales(ReadOnlySpan<float> xb /* (256) */, Span<sbyte> levels /* (256) */, Span<float> scales /* (16) */, bool vector)
    {
        if (vector)
        {
            QuantLanes.MakeQxQuants16(32, xb[..128], levels[..128], scales[..8]);
            QuantLanes.MakeQxQuants16(32, xb.Slice(128, 128), levels.Slice(128, 128), scales.Slice(8, 8));
            return;
        }
        for (int ib = 0; ib < 16; ib++)
        {
            scales[ib] = QuantMath.MakeQxQuants(32, xb.Slice(16 * ib, 16), levels.Slice(16 * ib, 16));
        }
    }

    /// <summary>
    /// quantize_row_q6_K_impl with an importance matrix: each sub-block's scale comes from make_qx_quants
    /// (nmax = 32) weighted by the importance values themselves (no σ² term, unlike the other K-quants);
    /// the rest is the reference's.
    /// </summary>
    public static void QuantizeRowImportance(ReadOnlySpan<float> x /* (k), k % 256 == 0 */, ReadOnlySpan<float> importance /* (k) */, Span<byte> y /* (k/256·210) */)
    {
        int nb = x.Length / BlockSize;
        Span<sbyte> levels = stackalloc sbyte[BlockSize];
        Span<float> scales = stackalloc float[16];
        for (int i = 0; i < nb; i++)
        {
            ReadOnlySpan<float> xb = x.Slice(i * BlockSize, BlockSize);
            ReadOnlySpan<float> qb = importance.Slice(i * BlockSize, BlockSize);
            Span<byte> block = y.Slice(i * TypeSize, TypeSize);

            float maxScale = 0;
            float maxAbsScale = 0;
            for (int ib = 0; ib < 16; ib++)
            {
                float scale = WeightedQuantMath.MakeQxQuants(32, xb.Slice(16 * ib, 16), qb.Slice(16 * ib, 16), levels.Slice(16 * ib, 16));
                scales[ib] = scale;
                float absScale = MathF.Abs(scale);
                if (absScale > maxAbsScale)
                {
                    maxAbsScale = absScale;
                    maxScale = scale;
                }
            }
            StoreBlock(xb, block, scales, levels, maxScale, maxAbsScale, QuantLanes.IsSupported);
        }
    }

    /// <summary>
    /// The end shared by both paths: the 16 signed sub-block scales to int8 against the one of largest
    /// magnitude (iscale = −128/max, stored d = 1/iscale), every weight re-rounded against its stored scale,
    /// l = clamp(round(x/(d·sc)), −32, 31), and the levels packed. A super-block whose scales are all below
    /// 1e-15 is stored as all zero bytes. <paramref name="vector"/>: re-round and pack with
    /// <see cref="RequantizeAndPackVector"/>.
    /// </summary>
    private static void StoreBlock(ReadOnlySpan<float> xb /* (256) */, Span<byte> block /* (210) */, ReadOnlySpan<float> scales /* (16) */,
        Span<sbyte> levels /* (256) */, float maxScale, float maxAbsScale, bool vector)
    {
        if (maxAbsScale < QuantMath.GroupMaxEps)
        {
            block.Clear();
            return;
        }

        float iscale = -128f / maxScale;
        float d = QuantMath.WriteHalf(block, DOffset, 1 / iscale);
        Span<byte> packedScales = block.Slice(ScalesOffset, 16);
        for (int ib = 0; ib < 16; ib++)
        {
            packedScales[ib] = (byte)(sbyte)Math.Min(127, QuantMath.NearestInt(iscale * scales[ib]));
        }

        if (vector)
        {
            RequantizeAndPackVector(xb, packedScales, d, levels, block);
            return;
        }
        for (int j = 0; j < 16; j++)
        {
            float ds = d * (sbyte)packedScales[j];
            if (ds == 0)
            {
                continue;
            }
            for (int ii = 0; ii < 16; ii++)
            {
                int l = QuantMath.NearestInt(xb[16 * j + ii] / ds);
                levels[16 * j + ii] = (sbyte)(Math.Max(-32, Math.Min(31, l)) + 32);
            }
        }

        Span<byte> ql = block.Slice(QlOffset, 128);
        Span<byte> qh = block.Slice(QhOffset, 64);
        for (int j = 0; j < BlockSize; j += 128)
        {
            Span<byte> qlHalf = ql.Slice(j / 2, 64);
            Span<byte> qhHalf = qh.Slice(j / 4, 32);
            for (int l = 0; l < 32; l++)
            {
                int l0 = levels[j + l];
                int l1 = levels[j + l + 32];
                int l2 = levels[j + l + 64];
                int l3 = levels[j + l + 96];
                qlHalf[l] = (byte)((l0 & 0xF) | ((l2 & 0xF) << 4));
                qlHalf[l + 32] = (byte)((l1 & 0xF) | ((l3 & 0xF) << 4));
                qhHalf[l] = (byte)((l0 >> 4) | ((l1 >> 4) << 2) | ((l2 >> 4) << 4) | ((l3 >> 4) << 6));
            }
        }
    }

    /// <summary>
    /// The re-rounding and packing of <see cref="StoreBlock"/> in vectors: x/(d·sc) is a per-lane IEEE
    /// division, nearest_int and the clamp are per lane, and the levels (0..63, first-pass levels included)
    /// are packed 32 at a time with byte shifts, which drop the same high bits as the reference's casts.
    /// </summary>
    private static void RequantizeAndPackVector(ReadOnlySpan<float> xb /* (256) */, ReadOnlySpan<byte> packedScales /* (16) */, float d,
        Span<sbyte> levels /* (256) */, Span<byte> block /* (210) */)
    {
        ref float x = ref MemoryMarshal.GetReference(xb[..BlockSize]);
        Vector256<int> lo = Vector256.Create(-32);
        Vector256<int> hi = Vector256.Create(31);
        Vector256<int> offset = Vector256.Create(32);
        for (int j = 0; j < 16; j++)
        {
            float ds = d * (sbyte)packedScales[j];
            if (ds == 0)
            {
                continue;
            }
            Vector256<float> vds = Vector256.Create(ds);
            Vector256<int> a = Vector256.Min(Vector256.Max(QuantLanes.NearestInt(Vector256.LoadUnsafe(ref x, (nuint)(16 * j)) / vds), lo), hi) + offset;
            Vector256<int> b = Vector256.Min(Vector256.Max(QuantLanes.NearestInt(Vector256.LoadUnsafe(ref x, (nuint)(16 * j + 8)) / vds), lo), hi) + offset;
            Vector256<short> ab = Vector256.Narrow(a, b);
            Vector128.Narrow(ab.GetLower(), ab.GetUpper()).CopyTo(levels.Slice(16 * j, 16));
        }

        ReadOnlySpan<byte> l = MemoryMarshal.AsBytes(levels[..BlockSize]);
        Vector256<byte> nibble = Vector256.Create((byte)0xF);
        for (int j = 0; j < BlockSize; j += 128)
        {
            Vector256<byte> l0 = Vector256.Create(l.Slice(j, 32));
            Vector256<byte> l1 = Vector256.Create(l.Slice(j + 32, 32));
            Vector256<byte> l2 = Vector256.Create(l.Slice(j + 64, 32));
            Vector256<byte> l3 = Vector256.Create(l.Slice(j + 96, 32));
            ((l0 & nibble) | ((l2 & nibble) << 4)).CopyTo(block.Slice(QlOffset + j / 2, 32));
            ((l1 & nibble) | ((l3 & nibble) << 4)).CopyTo(block.Slice(QlOffset + j / 2 + 32, 32));
            ((l0 >> 4) | ((l1 >> 4) << 2) | ((l2 >> 4) << 4) | ((l3 >> 4) << 6)).CopyTo(block.Slice(QhOffset + j / 4, 32));
        }
    }

    /// <summary>dequantize_row_q6_K: y = (d·sc)·(l − 32).</summary>
    public static void DequantizeRow(ReadOnlySpan<byte> x /* (k/256·210) */, Span<float> y /* (k) */)
    {
        int nb = y.Length / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            ReadOnlySpan<byte> block = x.Slice(i * TypeSize, TypeSize);
            Span<float> yb = y.Slice(i * BlockSize, BlockSize);
            float d = QuantMath.ReadHalf(block, DOffset);
            for (int n = 0; n < BlockSize; n += 128)
            {
                ReadOnlySpan<byte> ql = block.Slice(QlOffset + n / 2, 64);
                ReadOnlySpan<byte> qh = block.Slice(QhOffset + n / 4, 32);
                ReadOnlySpan<byte> sc = block.Slice(ScalesOffset + n / 16, 8);
                Span<float> yh = yb.Slice(n, 128);
                for (int l = 0; l < 32; l++)
                {
                    int s = l / 16;
                    int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                    int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                    int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                    int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                    yh[l] = d * (sbyte)sc[s] * q1;
                    yh[l + 32] = d * (sbyte)sc[s + 2] * q2;
                    yh[l + 64] = d * (sbyte)sc[s + 4] * q3;
                    yh[l + 96] = d * (sbyte)sc[s + 6] * q4;
                }
            }
        }
    }
}
