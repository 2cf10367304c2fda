namespace ModelSmith.Quantization;

/// <summary>
/// Q5_K: super-blocks of 256 weights in 8 sub-blocks of 32, each weight a 5-bit level l ∈ [0, 31] with
/// weight = d·sc·l − dmin·mn, where sc and mn are the sub-block's 6-bit scale and min. 5.5 bits per weight.
///
/// Block layout (176 bytes, ggml-common.h block_q5_K):
/// <code>
///   offset  size  field
///   0       2     d       F16 super-block scale of the scales
///   2       2     dmin    F16 super-block scale of the mins
///   4       12    scales  8 six-bit scales and 8 six-bit mins, packed as in Q4_K
///   16      32    qh      bit 4 of the levels: weight 64·p + l (l &lt; 32) in bit 2p of byte l, weight
///                         64·p + 32 + l in bit 2p + 1
///   48      128   qs      low 4 bits of the levels, packed as Q4_K's qs
/// </code>
/// </summary>
internal static class Q5_K
{
    public const int BlockSize = QuantMath.QK_K;
    public const int TypeSize = 176;

    private const int DOffset = 0;
    private const int DminOffset = 2;
    private const int ScalesOffset = 4;
    private const int QhOffset = 16;
    private const int QsOffset = 48;

    /// <summary>
    /// quantize_row_q5_K_ref: as Q4_K's reference with nmax = 31 and 16 candidate iscales
    /// (31 − 0.5 + 0.1·is)/(max − min) in make_qkx2_quants.
    /// </summary>
    public static void QuantizeRow(ReadOnlySpan<float> x /* (k), k % 256 == 0 */, Span<byte> y /* (k/256·176) */) =>
        Q4_K.QuantizeSuperBlocks<FiveBit>(31, -0.5f, 0.1f, 15, x, y);

    /// <summary>
    /// quantize_row_q5_K_impl with an importance matrix: as Q4_K's importance path with nmax = 31
    /// (make_qkx3_quants per sub-block, make_qp_quants for the 6-bit scales and mins, then re-rounding).
    /// </summary>
    public static void QuantizeRowImportance(ReadOnlySpan<float> x /* (k), k % 256 == 0 */, ReadOnlySpan<float> importance /* (k) */, Span<byte> y /* (k/256·176) */) =>
        Q4_K.QuantizeSuperBlocksImportance<FiveBit>(31, clampTo63: true, x, importance, y);

    /// <summary>Writes 256 five-bit levels: bit 4 to qh, the low 4 bits to qs (layout in the class comment).</summary>
    private readonly struct FiveBit : Q4_K.ILevelPacking
    {
        public static int TypeSize => Q5_K.TypeSize;

        public static void Pack(ReadOnlySpan<byte> levels /* (256) 0..31 */, Span<byte> block /* (176) */)
        {
            Span<byte> qh = block.Slice(QhOffset, 32);
            Span<byte> ql = block.Slice(QsOffset, 128);
            qh.Clear();
            byte m1 = 1;
            byte m2 = 2;
            for (int n = 0; n < BlockSize; n += 64)
            {
                for (int j = 0; j < 32; j++)
                {
                    int l1 = levels[n + j];
                    if (l1 > 15)
                    {
                        l1 -= 16;
                        qh[j] |= m1;
                    }
                    int l2 = levels[n + j + 32];
                    if (l2 > 15)
                    {
                        l2 -= 16;
                        qh[j] |= m2;
                    }
                    ql[n / 2 + j] = (byte)(l1 | (l2 << 4));
                }
                m1 <<= 2;
                m2 <<= 2;
            }
        }
    }

    /// <summary>dequantize_row_q5_K: y = (d·sc)·(low4 + 16·high) − (dmin·mn).</summary>
    public static void DequantizeRow(ReadOnlySpan<byte> x /* (k/256·176) */, Span<float> y /* (k) */)
    {
        int nb = y.Length / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            ReadOnlySpan<byte> block = x.Slice(i * TypeSize, TypeSize);
            Span<float> yb = y.Slice(i * BlockSize, BlockSize);
            ReadOnlySpan<byte> packedScales = block.Slice(ScalesOffset, 12);
            ReadOnlySpan<byte> qh = block.Slice(QhOffset, 32);
            float d = QuantMath.ReadHalf(block, DOffset);
            float min = QuantMath.ReadHalf(block, DminOffset);
            int u1 = 1;
            int u2 = 2;
            for (int j = 0, sub = 0; j < BlockSize; j += 64, sub += 2)
            {
                ReadOnlySpan<byte> ql = block.Slice(QsOffset + j / 2, 32);
                QuantMath.GetScaleMinK4(sub, packedScales, out int sc1, out int mn1);
                float d1 = d * sc1;
                float min1 = min * mn1;
                QuantMath.GetScaleMinK4(sub + 1, packedScales, out int sc2, out int mn2);
                float d2 = d * sc2;
                float min2 = min * mn2;
                for (int l = 0; l < 32; l++)
                {
                    yb[j + l] = d1 * ((ql[l] & 0xF) + ((qh[l] & u1) != 0 ? 16 : 0)) - min1;
                }
                for (int l = 0; l < 32; l++)
                {
                    yb[j + 32 + l] = d2 * ((ql[l] >> 4) + ((qh[l] & u2) != 0 ? 16 : 0)) - min2;
                }
                u1 <<= 2;
                u2 <<= 2;
            }
        }
    }
}
