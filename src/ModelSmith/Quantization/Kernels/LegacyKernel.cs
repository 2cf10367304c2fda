using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using ModelSmith.Formats;

namespace ModelSmith.Quantization.Kernels;

/// <summary>What <see cref="LegacyKernel{TF}"/> needs to know about one format of 32-element blocks.</summary>
internal unsafe interface ILegacyFormat
{
    static abstract GgmlType Type { get; }

    /// <summary>ggml's vec_dot_type: Q8_0 or Q8_1.</summary>
    static abstract GgmlType ActivationType { get; }

    static abstract int TypeSize { get; }

    /// <summary>
    /// log2 of the offset the unpacked levels carry (level + 2^shift stored as an unsigned byte, so the
    /// unsigned×signed byte multiply-adds apply; the kernels subtract 2^shift·Σq afterwards), or −1 when the
    /// stored levels are already unsigned (Q4_1, Q5_1) or kept signed (Q8_0, see <see cref="Signed"/>).
    /// </summary>
    static abstract int OffsetShift { get; }

    /// <summary>Levels stored as signed bytes (Q8_0); the kernels multiply |level| by q·sign(level).</summary>
    static abstract bool Signed { get; }

    /// <summary>The block has a min m (Q4_1, Q5_1), paired with the activations' s.</summary>
    static abstract bool HasMin { get; }

    /// <summary>One block's 32 levels (with the offset, natural order), its d and its m (0 if none). Scalar.</summary>
    static abstract void UnpackBlock(byte* block, byte* levels, out float d, out float m);

    /// <summary>One block's 32 levels (with the offset) in a register, with AVX2.</summary>
    static abstract Vector256<byte> Levels(byte* block);

    /// <summary>The block's contribution to ggml's sumf, in its generic kernel's operation order.
    /// sumi: the integer dot product of the true levels with the quants.</summary>
    static abstract float Term(int sumi, float dx, float dy, float mx, float sy);

    /// <summary><see cref="Term(int, float, float, float, float)"/> for eight blocks, lane by lane (same operations).</summary>
    static abstract Vector256<float> Term(Vector256<int> sumi, Vector256<float> dx, Vector256<float> dy, Vector256<float> mx, Vector256<float> sy);
}

/// <summary>
/// Dot products for the formats of 32-element blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) against Q8_0/Q8_1
/// activations.
/// </summary>
/// <remarks>
/// <para><b>Order.</b> ggml's generic kernels add one float term per block to a running sum, in block order,
/// and every term is computed from the block's exact integer dot product. So the SIMD paths compute eight
/// blocks' integer dot products at once, the eight terms with vector float ops that repeat the scalar ones
/// lane by lane, and then add them to the running sum one at a time. Every path returns ggml's generic
/// result bit for bit.</para>
/// <para><b>Decode</b> (<see cref="DotPackedRows"/>) reads the stored blocks: each block's levels are unpacked
/// in a register, vpdpbusd (or pmaddubsw+pmaddwd) gives 8 partial sums per block, and a transposing
/// reduction leaves block i's sum in lane i. Four rows run together so their four add chains overlap,
/// with the rows 8 ahead prefetched. Q4_0 and Q8_0 on AVX-512 have their own four-row kernels
/// (<see cref="DotPacked4Q4_0"/>, <see cref="DotPacked4Q8_0"/>: two blocks per 512-bit register, 1.2-1.5x
/// and 1.2x the 256-bit one on weights in cache, 1.1-1.16x from memory for Q8_0).</para>
/// <para><b>Prefill</b> unpacks a row once (<see cref="Unpack"/>: the K levels as bytes with the format's
/// offset, each full group of 8 blocks stored as the transpose of its 8×8 matrix of 4-byte words; then d
/// and m per block as floats) against activations quantized in the same grouped order, so one 32-byte load
/// holds 4 levels of each of 8 blocks and vpdpbusd accumulates block i in lane i with no reduction. Tiles
/// of 4 tokens × 2 rows (4 rows with AVX-512's 32 registers, <see cref="DotTile"/>) share each load; the
/// eight running sums of a 2 × 4 tile sit in the lanes of one vector, and a transpose of the tile's terms
/// adds them block by block, so each sum still sees ggml's float adds in ggml's order.</para>
/// </remarks>
internal sealed unsafe class LegacyKernel<TF> : QuantKernel where TF : struct, ILegacyFormat
{
    public static readonly LegacyKernel<TF> Instance = new();

    public override GgmlType Type => TF.Type;

    public override GgmlType ActivationType => TF.ActivationType;

    public override int BlockSize => 32;

    public override int UnpackedRowBytes(int k) => Align64(k) + (TF.HasMin ? 2 : 1) * Align64(k / 32 * 4);

    private static float* Scales(byte* unpacked, int k) => (float*)(unpacked + Align64(k));

    private static float* Mins(byte* unpacked, int k) => (float*)(unpacked + Align64(k) + Align64(k / 32 * 4));

    public override bool GroupsBlocks => true;

    public override void Unpack(byte* row, int k, byte* dst, QuantKernelPath path)
    {
        int nb = k / 32;
        float* d = Scales(dst, k);
        float* m = Mins(dst, k);
        for (int b = 0; b < nb; b++)
        {
            byte* block = row + (long)b * TF.TypeSize;
            if (path == QuantKernelPath.Scalar)
            {
                TF.UnpackBlock(block, dst + 32 * b, out d[b], out float mb);
                if (TF.HasMin) m[b] = mb;
                continue;
            }
            TF.Levels(block).Store(dst + 32 * b);
            d[b] = HalfScale.ToSingle(*(ushort*)block);
            if (TF.HasMin) m[b] = HalfScale.ToSingle(*(ushort*)(block + 2));
        }
        QuantizedActivations.GroupBlocks(dst, nb);
    }

    public override float Dot(byte* unpacked, QuantizedActivations a, int token, QuantKernelPath path)
    {
        int k = a.K, nb = a.Blocks;
        sbyte* q = a.Quants + (long)token * k;
        int o = token * nb;
        float* dx = Scales(unpacked, k);
        float* mx = Mins(unpacked, k);
        float* dy = a.Scales + o;
        int* qsum = a.BlockSums + o;
        float* sy = a.Offsets + o;
        return path switch
        {
            QuantKernelPath.Scalar => DotScalar(unpacked, dx, mx, q, dy, qsum, sy, nb),
            QuantKernelPath.Avx2 => DotAvx2<MaddDot>(unpacked, dx, mx, q, dy, qsum, sy, nb),
            _ => AvxVnni.IsSupported ? DotAvx2<VnniDot>(unpacked, dx, mx, q, dy, qsum, sy, nb) : DotAvx2<MaddDot>(unpacked, dx, mx, q, dy, qsum, sy, nb),
        };
    }

    public override void DotTokens(byte* unpacked, QuantizedActivations a, int t0, int count, QuantKernelPath path, float* y, int ldy)
    {
        if (path == QuantKernelPath.Scalar || count < 4)
        {
            base.DotTokens(unpacked, a, t0, count, path, y, ldy);
            return;
        }
        int j = 0;
        bool vnni = path != QuantKernelPath.Avx2 && AvxVnni.IsSupported;
        for (; j + 4 <= count; j += 4)
        {
            if (vnni) Dot4<VnniDot>(unpacked, a, t0 + j, y + (long)j * ldy, ldy);
            else Dot4<MaddDot>(unpacked, a, t0 + j, y + (long)j * ldy, ldy);
        }
        for (; j < count; j++) y[(long)j * ldy] = Dot(unpacked, a, t0 + j, path);
    }

    public override void DotTile(byte* unpacked, int stride, int rows, QuantizedActivations a, int t0, int count, QuantKernelPath path, float* y, int ldy)
    {
        if (path == QuantKernelPath.Scalar || count != 4)
        {
            base.DotTile(unpacked, stride, rows, a, t0, count, path, y, ldy);
            return;
        }
        bool vnni = path != QuantKernelPath.Avx2 && AvxVnni.IsSupported;
        int r = 0;
        // Four rows need 16 accumulators plus the loads: only with AVX-512's 32 vector registers (with 16,
        // the spills make four rows slower than two, measured).
        for (; Avx512F.IsSupported && r + 4 <= rows; r += 4)
        {
            if (vnni) Dot4x4<VnniDot>(unpacked + (long)r * stride, stride, a, t0, y + r, ldy);
            else Dot4x4<MaddDot>(unpacked + (long)r * stride, stride, a, t0, y + r, ldy);
        }
        for (; r + 2 <= rows; r += 2)
        {
            if (vnni) Dot2x4<VnniDot>(unpacked + (long)r * stride, stride, a, t0, y + r, ldy);
            else Dot2x4<MaddDot>(unpacked + (long)r * stride, stride, a, t0, y + r, ldy);
        }
        for (; r < rows; r++) DotTokens(unpacked + (long)r * stride, a, t0, count, path, y + r, ldy);
    }

    /// <summary>
    /// Two unpacked rows against four tokens: each 32-byte load of levels serves four tokens and each load
    /// of quants two rows, vpdpbusd leaves block i of each of the eight (row, token) pairs in lane i, and
    /// the eight running sums (one chain of float adds in block order each, ggml's order) live in the lanes
    /// of one vector: lane 4r + t is row r's sum for token t0 + t. An 8×8 transpose of the eight pairs'
    /// terms gives, per block, one vector to add. The accumulators start at −2^shift·Σq (the offset the
    /// levels carry), so the integer sums leave the loop exact. rows: 2 rows, stride bytes apart; y[t·ldy + r].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot2x4<TD>(byte* rows, int stride, QuantizedActivations a, int t0, float* y, int ldy)
        where TD : struct, IByteDot
    {
        int k = a.K, nb = a.Blocks;
        byte* l0 = rows, l1 = rows + stride;
        float* dx0 = Scales(l0, k), dx1 = Scales(l1, k);
        float* mx0 = Mins(l0, k), mx1 = Mins(l1, k);
        sbyte* q0 = a.Quants + (long)t0 * k, q1 = q0 + k, q2 = q1 + k, q3 = q2 + k;
        int o0 = t0 * nb, o1 = o0 + nb, o2 = o1 + nb, o3 = o2 + nb;
        Vector256<float> sums = Vector256<float>.Zero;
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            Vector256<int> n0 = Start(a, o0 + b), n1 = Start(a, o1 + b), n2 = Start(a, o2 + b), n3 = Start(a, o3 + b);
            Vector256<int> c00 = n0, c01 = n1, c02 = n2, c03 = n3, c10 = n0, c11 = n1, c12 = n2, c13 = n3;
            byte* w0 = l0 + 32 * b, w1 = l1 + 32 * b;
            int o = 32 * b;
            for (int j = 0; j < 256; j += 32)
            {
                Vector256<byte> v0 = Vector256.Load(w0 + j), v1 = Vector256.Load(w1 + j);
                Vector256<byte> m0 = TF.Signed ? Avx2.Abs(v0.AsSByte()) : v0, m1 = TF.Signed ? Avx2.Abs(v1.AsSByte()) : v1;
                c00 = Accumulate<TD>(c00, m0, v0, q0 + o + j);
                c10 = Accumulate<TD>(c10, m1, v1, q0 + o + j);
                c01 = Accumulate<TD>(c01, m0, v0, q1 + o + j);
                c11 = Accumulate<TD>(c11, m1, v1, q1 + o + j);
                c02 = Accumulate<TD>(c02, m0, v0, q2 + o + j);
                c12 = Accumulate<TD>(c12, m1, v1, q2 + o + j);
                c03 = Accumulate<TD>(c03, m0, v0, q3 + o + j);
                c13 = Accumulate<TD>(c13, m1, v1, q3 + o + j);
            }
            Vector256<float> d0 = Vector256.Load(dx0 + b), d1 = Vector256.Load(dx1 + b);
            Vector256<float> m0x = TF.HasMin ? Vector256.Load(mx0 + b) : default, m1x = TF.HasMin ? Vector256.Load(mx1 + b) : default;
            Vector256<float> e0 = Vector256.Load(a.Scales + o0 + b), e1 = Vector256.Load(a.Scales + o1 + b);
            Vector256<float> e2 = Vector256.Load(a.Scales + o2 + b), e3 = Vector256.Load(a.Scales + o3 + b);
            Vector256<float> s0 = TF.HasMin ? Vector256.Load(a.Offsets + o0 + b) : default, s1 = TF.HasMin ? Vector256.Load(a.Offsets + o1 + b) : default;
            Vector256<float> s2 = TF.HasMin ? Vector256.Load(a.Offsets + o2 + b) : default, s3 = TF.HasMin ? Vector256.Load(a.Offsets + o3 + b) : default;
            sums = AddInBlockOrder(sums,
                TF.Term(c00, d0, e0, m0x, s0), TF.Term(c01, d0, e1, m0x, s1), TF.Term(c02, d0, e2, m0x, s2), TF.Term(c03, d0, e3, m0x, s3),
                TF.Term(c10, d1, e0, m1x, s0), TF.Term(c11, d1, e1, m1x, s1), TF.Term(c12, d1, e2, m1x, s2), TF.Term(c13, d1, e3, m1x, s3));
        }
        float* s = stackalloc float[8];
        sums.Store(s);
        for (; b < nb; b++)
        {
            Vector256<byte> v0 = Vector256.Load(l0 + 32 * b), v1 = Vector256.Load(l1 + 32 * b);
            for (int t = 0; t < 4; t++)
            {
                s[t] += TailTerm<TD>(v0, dx0, mx0, a, t0 + t, b);
                s[4 + t] += TailTerm<TD>(v1, dx1, mx1, a, t0 + t, b);
            }
        }
        for (int t = 0; t < 4; t++)
        {
            y[(long)t * ldy] = s[t];
            y[(long)t * ldy + 1] = s[4 + t];
        }
    }

    /// <summary>
    /// <see cref="Dot2x4"/> for four rows: sixteen accumulators, each level load serving four tokens and each
    /// quant load four rows; rows 0–1 and rows 2–3 keep their running sums in one vector each.
    /// rows: 4 rows, stride bytes apart; y[t·ldy + r].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot4x4<TD>(byte* rows, int stride, QuantizedActivations a, int t0, float* y, int ldy)
        where TD : struct, IByteDot
    {
        if (TF.Signed)
        {
            Dot2x4<TD>(rows, stride, a, t0, y, ldy);
            Dot2x4<TD>(rows + 2L * stride, stride, a, t0, y + 2, ldy);
            return;
        }
        int k = a.K, nb = a.Blocks;
        byte* l0 = rows, l1 = rows + stride, l2 = l1 + stride, l3 = l2 + stride;
        sbyte* q0 = a.Quants + (long)t0 * k, q1 = q0 + k, q2 = q1 + k, q3 = q2 + k;
        int o0 = t0 * nb, o1 = o0 + nb, o2 = o1 + nb, o3 = o2 + nb;
        Vector256<float> sumsA = Vector256<float>.Zero, sumsB = Vector256<float>.Zero;
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            Vector256<int> n0 = Start(a, o0 + b), n1 = Start(a, o1 + b), n2 = Start(a, o2 + b), n3 = Start(a, o3 + b);
            Vector256<int> c00 = n0, c01 = n1, c02 = n2, c03 = n3, c10 = n0, c11 = n1, c12 = n2, c13 = n3;
            Vector256<int> c20 = n0, c21 = n1, c22 = n2, c23 = n3, c30 = n0, c31 = n1, c32 = n2, c33 = n3;
            int o = 32 * b;
            byte* w0 = l0 + o, w1 = l1 + o, w2 = l2 + o, w3 = l3 + o;
            for (int j = 0; j < 256; j += 32)
            {
                Vector256<byte> v0 = Vector256.Load(w0 + j), v1 = Vector256.Load(w1 + j), v2 = Vector256.Load(w2 + j), v3 = Vector256.Load(w3 + j);
                Vector256<sbyte> y0 = Vector256.Load(q0 + o + j), y1 = Vector256.Load(q1 + o + j);
                c00 = TD.Add(c00, v0, y0);
                c10 = TD.Add(c10, v1, y0);
                c20 = TD.Add(c20, v2, y0);
                c30 = TD.Add(c30, v3, y0);
                c01 = TD.Add(c01, v0, y1);
                c11 = TD.Add(c11, v1, y1);
                c21 = TD.Add(c21, v2, y1);
                c31 = TD.Add(c31, v3, y1);
                Vector256<sbyte> y2 = Vector256.Load(q2 + o + j), y3 = Vector256.Load(q3 + o + j);
                c02 = TD.Add(c02, v0, y2);
                c12 = TD.Add(c12, v1, y2);
                c22 = TD.Add(c22, v2, y2);
                c32 = TD.Add(c32, v3, y2);
                c03 = TD.Add(c03, v0, y3);
                c13 = TD.Add(c13, v1, y3);
                c23 = TD.Add(c23, v2, y3);
                c33 = TD.Add(c33, v3, y3);
            }
            Vector256<float> e0 = Vector256.Load(a.Scales + o0 + b), e1 = Vector256.Load(a.Scales + o1 + b);
            Vector256<float> e2 = Vector256.Load(a.Scales + o2 + b), e3 = Vector256.Load(a.Scales + o3 + b);
            Vector256<float> s0 = TF.HasMin ? Vector256.Load(a.Offsets + o0 + b) : default, s1 = TF.HasMin ? Vector256.Load(a.Offsets + o1 + b) : default;
            Vector256<float> s2 = TF.HasMin ? Vector256.Load(a.Offsets + o2 + b) : default, s3 = TF.HasMin ? Vector256.Load(a.Offsets + o3 + b) : default;
            Vector256<float> d0 = Vector256.Load(Scales(l0, k) + b), d1 = Vector256.Load(Scales(l1, k) + b);
            Vector256<float> m0 = TF.HasMin ? Vector256.Load(Mins(l0, k) + b) : default, m1 = TF.HasMin ? Vector256.Load(Mins(l1, k) + b) : default;
            sumsA = AddInBlockOrder(sumsA,
                TF.Term(c00, d0, e0, m0, s0), TF.Term(c01, d0, e1, m0, s1), TF.Term(c02, d0, e2, m0, s2), TF.Term(c03, d0, e3, m0, s3),
                TF.Term(c10, d1, e0, m1, s0), TF.Term(c11, d1, e1, m1, s1), TF.Term(c12, d1, e2, m1, s2), TF.Term(c13, d1, e3, m1, s3));
            Vector256<float> d2 = Vector256.Load(Scales(l2, k) + b), d3 = Vector256.Load(Scales(l3, k) + b);
            Vector256<float> m2 = TF.HasMin ? Vector256.Load(Mins(l2, k) + b) : default, m3 = TF.HasMin ? Vector256.Load(Mins(l3, k) + b) : default;
            sumsB = AddInBlockOrder(sumsB,
                TF.Term(c20, d2, e0, m2, s0), TF.Term(c21, d2, e1, m2, s1), TF.Term(c22, d2, e2, m2, s2), TF.Term(c23, d2, e3, m2, s3),
                TF.Term(c30, d3, e0, m3, s0), TF.Term(c31, d3, e1, m3, s1), TF.Term(c32, d3, e2, m3, s2), TF.Term(c33, d3, e3, m3, s3));
        }
        float* s = stackalloc float[16];
        sumsA.Store(s);
        sumsB.Store(s + 8);
        for (; b < nb; b++)
        {
            for (int r = 0; r < 4; r++)
            {
                byte* l = rows + (long)r * stride;
                Vector256<byte> v = Vector256.Load(l + 32 * b);
                for (int t = 0; t < 4; t++) s[4 * r + t] += TailTerm<TD>(v, Scales(l, k), Mins(l, k), a, t0 + t, b);
            }
        }
        for (int t = 0; t < 4; t++)
        {
            for (int r = 0; r < 4; r++) y[(long)t * ldy + r] = s[4 * r + t];
        }
    }

    /// <summary>The accumulator start of token offset o's eight blocks: −2^shift·Σq (zero without an offset).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Start(QuantizedActivations a, int o) =>
        TF.OffsetShift >= 0 ? Vector256<int>.Zero - (Vector256.Load(a.BlockSums + o) << TF.OffsetShift) : Vector256<int>.Zero;

    /// <summary>
    /// sums + the terms of eight blocks, one block at a time: t_p holds pair p's terms (lane i = block i);
    /// the 8×8 transpose gives, for block i, the vector of the eight pairs' terms (lane p), added in block
    /// order, so lane p sees the same float adds in the same order as a scalar running sum.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> AddInBlockOrder(Vector256<float> sums,
        Vector256<float> t0, Vector256<float> t1, Vector256<float> t2, Vector256<float> t3,
        Vector256<float> t4, Vector256<float> t5, Vector256<float> t6, Vector256<float> t7)
    {
        // c_i: blocks i (low half) and i + 4 (high half) of pairs 0..3; h_i: the same for pairs 4..7.
        FourRows.Columns(t0, t1, t2, t3, out Vector256<float> c0, out Vector256<float> c1, out Vector256<float> c2, out Vector256<float> c3);
        FourRows.Columns(t4, t5, t6, t7, out Vector256<float> h0, out Vector256<float> h1, out Vector256<float> h2, out Vector256<float> h3);
        sums += Avx.Permute2x128(c0, h0, 0x20);
        sums += Avx.Permute2x128(c1, h1, 0x20);
        sums += Avx.Permute2x128(c2, h2, 0x20);
        sums += Avx.Permute2x128(c3, h3, 0x20);
        sums += Avx.Permute2x128(c0, h0, 0x31);
        sums += Avx.Permute2x128(c1, h1, 0x31);
        sums += Avx.Permute2x128(c2, h2, 0x31);
        sums += Avx.Permute2x128(c3, h3, 0x31);
        return sums;
    }

    /// <summary>
    /// Four tokens against one unpacked row: each 32 bytes of levels (4 of each of 8 blocks, grouped) are
    /// loaded once for the four, vpdpbusd leaves block i's dot product in lane i, and the four running sums
    /// (one dependent chain each, in block order) interleave. y[j·ldy] for j in [0, 4).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot4<TD>(byte* levels, QuantizedActivations a, int t0, float* y, int ldy)
        where TD : struct, IByteDot
    {
        int k = a.K, nb = a.Blocks;
        float* dx = Scales(levels, k);
        float* mx = Mins(levels, k);
        sbyte* q0 = a.Quants + (long)t0 * k, q1 = q0 + k, q2 = q1 + k, q3 = q2 + k;
        float* terms = stackalloc float[32];
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            byte* w = levels + 32 * b;
            int o = 32 * b;
            Vector256<int> c0 = Vector256<int>.Zero, c1 = Vector256<int>.Zero, c2 = Vector256<int>.Zero, c3 = Vector256<int>.Zero;
            for (int j = 0; j < 256; j += 32)
            {
                Vector256<byte> wv = Vector256.Load(w + j);
                Vector256<byte> magnitude = TF.Signed ? Avx2.Abs(wv.AsSByte()) : wv;
                c0 = Accumulate<TD>(c0, magnitude, wv, q0 + o + j);
                c1 = Accumulate<TD>(c1, magnitude, wv, q1 + o + j);
                c2 = Accumulate<TD>(c2, magnitude, wv, q2 + o + j);
                c3 = Accumulate<TD>(c3, magnitude, wv, q3 + o + j);
            }
            Vector256<float> d = Vector256.Load(dx + b);
            Vector256<float> m = TF.HasMin ? Vector256.Load(mx + b) : default;
            Terms(c0, d, m, a, t0, b).Store(terms);
            Terms(c1, d, m, a, t0 + 1, b).Store(terms + 8);
            Terms(c2, d, m, a, t0 + 2, b).Store(terms + 16);
            Terms(c3, d, m, a, t0 + 3, b).Store(terms + 24);
            for (int i = 0; i < 8; i++)
            {
                s0 += terms[i];
                s1 += terms[8 + i];
                s2 += terms[16 + i];
                s3 += terms[24 + i];
            }
        }
        for (; b < nb; b++)
        {
            Vector256<byte> wv = Vector256.Load(levels + 32 * b);
            s0 += TailTerm<TD>(wv, dx, mx, a, t0, b);
            s1 += TailTerm<TD>(wv, dx, mx, a, t0 + 1, b);
            s2 += TailTerm<TD>(wv, dx, mx, a, t0 + 2, b);
            s3 += TailTerm<TD>(wv, dx, mx, a, t0 + 3, b);
        }
        y[0] = s0;
        y[ldy] = s1;
        y[2L * ldy] = s2;
        y[3L * ldy] = s3;
    }

    /// <summary>
    /// acc + the 4-byte dot products of grouped levels and quants: lane i gains 4 products of block i.
    /// magnitude: the levels (|levels| for signed formats), levels: as stored (their signs), y: 32 quants.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Accumulate<TD>(Vector256<int> acc, Vector256<byte> magnitude, Vector256<byte> levels, sbyte* y)
        where TD : struct, IByteDot
    {
        Vector256<sbyte> yv = Vector256.Load(y);
        if (TF.Signed) yv = Avx2.Sign(yv, levels.AsSByte());
        return TD.Add(acc, magnitude, yv);
    }

    // The eight terms of blocks b..b+7 for token t from their integer dot products (lane i = block b + i).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Terms(Vector256<int> sumi, Vector256<float> dx, Vector256<float> mx, QuantizedActivations a, int t, int b)
    {
        int o = t * a.Blocks + b;
        if (TF.OffsetShift >= 0) sumi -= Vector256.Load(a.BlockSums + o) << TF.OffsetShift;
        return TF.Term(sumi, dx, Vector256.Load(a.Scales + o), mx, TF.HasMin ? Vector256.Load(a.Offsets + o) : default);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float TailTerm<TD>(Vector256<byte> wv, float* dx, float* mx, QuantizedActivations a, int t, int b)
        where TD : struct, IByteDot
    {
        int o = t * a.Blocks + b;
        int sumi = Vector256.Sum(BlockDot<TD>(wv, a.Quants + (long)t * a.K + 32 * b));
        if (TF.OffsetShift >= 0) sumi -= a.BlockSums[o] << TF.OffsetShift;
        return TF.Term(sumi, dx[b], a.Scales[o], TF.HasMin ? mx[b] : 0f, TF.HasMin ? a.Offsets[o] : 0f);
    }

    public override bool HasPackedDot => true;

    public override float DotPacked(byte* row, QuantizedActivations a, int token, QuantKernelPath path)
    {
        int k = a.K, nb = a.Blocks;
        sbyte* q = a.Quants + (long)token * k;
        int o = token * nb;
        float* dy = a.Scales + o;
        int* qsum = a.BlockSums + o;
        float* sy = a.Offsets + o;
        if (path == QuantKernelPath.Scalar)
        {
            byte* levels = stackalloc byte[32];
            float sumf = 0;
            for (int b = 0; b < nb; b++)
            {
                TF.UnpackBlock(row + (long)b * TF.TypeSize, levels, out float dx, out float mx);
                int sumi = BlockSumScalar(levels, q + 32 * b);
                if (TF.OffsetShift >= 0) sumi -= qsum[b] << TF.OffsetShift;
                sumf += TF.Term(sumi, dx, dy[b], mx, TF.HasMin ? sy[b] : 0f);
            }
            return sumf;
        }
        return path != QuantKernelPath.Avx2 && AvxVnni.IsSupported
            ? DotPackedAvx2<VnniDot>(row, q, dy, qsum, sy, nb)
            : DotPackedAvx2<MaddDot>(row, q, dy, qsum, sy, nb);
    }

    public override void DotPackedRows(byte* rows, int rowBytes, int count, QuantizedActivations a, int token, QuantKernelPath path, float* y)
    {
        if (path == QuantKernelPath.Scalar)
        {
            base.DotPackedRows(rows, rowBytes, count, a, token, path, y);
            return;
        }
        int k = a.K, nb = a.Blocks;
        sbyte* q = a.Quants + (long)token * k;
        int o = token * nb;
        bool vnni = path != QuantKernelPath.Avx2 && AvxVnni.IsSupported;
        int r = 0;
        if (IsQ4_0 && path == QuantKernelPath.Avx512)
        {
            for (; r + 4 <= count; r += 4) DotPacked4Q4_0(rows + (long)r * rowBytes, rowBytes, q, a.Scales + o, a.BlockSums + o, nb, y + r);
        }
        if (IsQ8_0 && path == QuantKernelPath.Avx512)
        {
            for (; r + 4 <= count; r += 4) DotPacked4Q8_0(rows + (long)r * rowBytes, rowBytes, q, a.Scales + o, nb, y + r);
        }
        for (; r + 4 <= count; r += 4)
        {
            if (vnni) DotPacked4<VnniDot>(rows + (long)r * rowBytes, rowBytes, q, a.Scales + o, a.BlockSums + o, a.Offsets + o, nb, y + r);
            else DotPacked4<MaddDot>(rows + (long)r * rowBytes, rowBytes, q, a.Scales + o, a.BlockSums + o, a.Offsets + o, nb, y + r);
        }
        for (; r < count; r++) y[r] = DotPacked(rows + (long)r * rowBytes, a, token, path);
    }

    /// <summary>
    /// Four rows at once, their running sums interleaved: each row's sum is a chain of dependent float
    /// adds in block order (ggml's order), so one row alone waits on the add latency every block; four
    /// chains fill those waits. rows: 4 rows of rowBytes, y: (4).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DotPacked4<TD>(byte* rows, int rowBytes, sbyte* q, float* dy, int* qsum, float* sy, int nb, float* y)
        where TD : struct, IByteDot
    {
        byte* r0 = rows, r1 = rows + rowBytes, r2 = rows + 2 * rowBytes, r3 = rows + 3 * rowBytes;
        // Lane j holds row j's running sum: adding the transposed terms block by block is, lane by lane,
        // the same float adds in the same order as four scalar sums.
        Vector128<float> sums = Vector128<float>.Zero;
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            long offset = (long)b * TF.TypeSize;
            // The four rows after the next four, at the pace these are read: with four rows in flight the
            // hardware prefetcher alone leaves DRAM idle (measured 12 GB/s without, 15-16 with, Q8_0, one
            // thread), and fetching 8 rows ahead rather than 4 gave Q4_0 another 15% (270 → 310 tokens/s on
            // the 100M model's matrices).
            FourRows.Prefetch(rows + 8L * rowBytes + offset, rowBytes, 8 * TF.TypeSize + 64);
            Vector256<float> t0 = GroupTerms<TD>(r0 + offset, q, dy, qsum, sy, b);
            Vector256<float> t1 = GroupTerms<TD>(r1 + offset, q, dy, qsum, sy, b);
            Vector256<float> t2 = GroupTerms<TD>(r2 + offset, q, dy, qsum, sy, b);
            Vector256<float> t3 = GroupTerms<TD>(r3 + offset, q, dy, qsum, sy, b);
            sums = FourRows.AddInOrder(sums, t0, t1, t2, t3);
        }
        FinishRows<TD>(sums, rows, rowBytes, q, dy, qsum, sy, b, nb, y);
    }

    /// <summary>
    /// The four-row kernels' ending: each row's running sum (lane j of <paramref name="sums"/>) plus the terms
    /// of blocks [b, nb) that do not fill a group of 8, one block at a time. rows: 4 rows of rowBytes, y: (4).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void FinishRows<TD>(Vector128<float> sums, byte* rows, int rowBytes, sbyte* q, float* dy, int* qsum, float* sy, int b, int nb, float* y)
        where TD : struct, IByteDot
    {
        byte* r0 = rows, r1 = rows + rowBytes, r2 = rows + 2 * rowBytes, r3 = rows + 3 * rowBytes;
        float s0 = sums.GetElement(0), s1 = sums.GetElement(1), s2 = sums.GetElement(2), s3 = sums.GetElement(3);
        for (; b < nb; b++)
        {
            long offset = (long)b * TF.TypeSize;
            s0 += BlockTerm<TD>(r0 + offset, q, dy, qsum, sy, b);
            s1 += BlockTerm<TD>(r1 + offset, q, dy, qsum, sy, b);
            s2 += BlockTerm<TD>(r2 + offset, q, dy, qsum, sy, b);
            s3 += BlockTerm<TD>(r3 + offset, q, dy, qsum, sy, b);
        }
        y[0] = s0;
        y[1] = s1;
        y[2] = s2;
        y[3] = s3;
    }

    private static bool IsQ4_0 => TF.TypeSize == 18 && TF.OffsetShift == 3 && !TF.HasMin && !TF.Signed;

    /// <summary>
    /// <see cref="DotPacked4{TD}"/> for Q4_0 on 512-bit registers, the same bits. Each register holds two
    /// blocks' 32 levels: the 16 packed bytes of each block are picked out of the group's 144 bytes by a
    /// byte permute (twice, so one variable shift by 0 or 4 and a mask yield the low and the high nibbles),
    /// and the two blocks' activations are one 64-byte load, shared by the four rows. pmaddubsw then pmaddwd
    /// by ones leave 8 partial sums per block (exact: levels ≤ 15, |q| ≤ 127), and two rounds of unpack-and-add
    /// reduce four registers to the eight block sums, in the order 0, 2, 4, 6, 1, 3, 5, 7. The scales and the
    /// activations' d and Σq are picked out in that order too, and the four rows' terms are added to their
    /// running sums in block order, so every lane repeats the scalar float operations of its row.
    /// rows: 4 rows of rowBytes, q: (K), dy and qsum: (K/32), y: (4).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DotPacked4Q4_0(byte* rows, int rowBytes, sbyte* q, float* dy, int* qsum, int nb, float* y)
    {
        byte* r0 = rows, r1 = rows + rowBytes, r2 = rows + 2 * rowBytes, r3 = rows + 3 * rowBytes;
        // Byte j of a register holds packed byte j % 16 of the first block (j < 32) or the second: the group
        // is read as three 64-byte loads at 0, 64 and 80, all inside its 144 bytes.
        Vector512<byte> pick01 = Pick(2, 20);     // blocks 0, 1 from bytes [0, 64)
        Vector512<byte> pick23 = Pick(38, 56);    // blocks 2, 3 from bytes [0, 128), two registers
        Vector512<byte> pick45 = Pick(74 - 64, 92 - 64);   // blocks 4, 5 from bytes [64, 128)
        Vector512<byte> pick67 = Pick(110 - 80, 128 - 80); // blocks 6, 7 from bytes [80, 144)
        // Word 9i is block i's d; int lane j takes block order[j] = 0, 2, 4, 6, 1, 3, 5, 7.
        Vector512<short> heads = Vector512.Create(
            (short)0, 0, 18, 18, 36, 36, 54, 54, 9, 9, 27, 27, 45, 45, 63, 63,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
        Vector256<int> order = Vector256.Create(0, 2, 4, 6, 1, 3, 5, 7);
        Vector512<uint> nibbleShift = Vector512.Create(0u, 0, 0, 0, 4, 4, 4, 4, 0, 0, 0, 0, 4, 4, 4, 4);
        Vector128<float> sums = Vector128<float>.Zero; // (4) row j's running sum in lane j
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            long offset = (long)b * 18;
            FourRows.Prefetch(rows + 8L * rowBytes + offset, rowBytes, 8 * 18 + 64); // as in DotPacked4
            sbyte* yq = q + 32 * b;
            Vector512<sbyte> y01 = Vector512.Load(yq), y23 = Vector512.Load(yq + 64), y45 = Vector512.Load(yq + 128), y67 = Vector512.Load(yq + 192);
            Vector256<int> offsets = Avx2.PermuteVar8x32(Vector256.Load(qsum + b), order) << 3; // 8·Σq: the levels carry +8
            Vector256<float> dyo = Avx2.PermuteVar8x32(Vector256.Load(dy + b), order);

            Vector256<int> s0 = GroupSums(r0 + offset, y01, y23, y45, y67, pick01, pick23, pick45, pick67, nibbleShift, heads, out Vector256<int> h0) - offsets;
            Vector256<int> s1 = GroupSums(r1 + offset, y01, y23, y45, y67, pick01, pick23, pick45, pick67, nibbleShift, heads, out Vector256<int> h1) - offsets;
            Vector256<int> s2 = GroupSums(r2 + offset, y01, y23, y45, y67, pick01, pick23, pick45, pick67, nibbleShift, heads, out Vector256<int> h2) - offsets;
            Vector256<int> s3 = GroupSums(r3 + offset, y01, y23, y45, y67, pick01, pick23, pick45, pick67, nibbleShift, heads, out Vector256<int> h3) - offsets;
            Vector512<float> d01 = HalfScale.ToSingle(Vector512.Create(h0, h1));
            Vector512<float> d23 = HalfScale.ToSingle(Vector512.Create(h2, h3));
            // ggml: sumf += sumi·d_x·d_y, in that order.
            Vector256<float> t0 = Vector256.ConvertToSingle(s0) * d01.GetLower() * dyo;
            Vector256<float> t1 = Vector256.ConvertToSingle(s1) * d01.GetUpper() * dyo;
            Vector256<float> t2 = Vector256.ConvertToSingle(s2) * d23.GetLower() * dyo;
            Vector256<float> t3 = Vector256.ConvertToSingle(s3) * d23.GetUpper() * dyo;
            sums = FourRows.AddInOrderFromEvenOdd(sums, t0, t1, t2, t3);
        }
        FinishRows<MaddDot>(sums, rows, rowBytes, q, dy, qsum, null, b, nb, y);
    }

    /// <summary>vpermb indices: bytes first..first+15 twice, then second..second+15 twice.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Pick(byte first, byte second) =>
        Vector512.Create(Vector256.Create(first), Vector256.Create(second)) + Vector512.Create(
            (byte)0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
            0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);

    /// <summary>
    /// The integer sums Σ n·q (stored nibbles n = level + 8) of one row's group of 8 Q4_0 blocks, in the
    /// order 0, 2, 4, 6, 1, 3, 5, 7, and the blocks' F16 d's in the same order (low 16 bits of each int).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> GroupSums(byte* w, Vector512<sbyte> y01, Vector512<sbyte> y23, Vector512<sbyte> y45, Vector512<sbyte> y67,
        Vector512<byte> pick01, Vector512<byte> pick23, Vector512<byte> pick45, Vector512<byte> pick67, Vector512<uint> nibbleShift,
        Vector512<short> heads, out Vector256<int> d)
    {
        Vector512<byte> lo = Vector512.Load(w), mid = Vector512.Load(w + 64), hi = Vector512.Load(w + 80);
        d = Avx512BW.PermuteVar32x16x2(lo.AsInt16(), heads, mid.AsInt16()).GetLower().AsInt32();
        Vector512<byte> mask = Vector512.Create((byte)0x0F);
        Vector512<byte> l01 = Avx512F.ShiftRightLogicalVariable(Avx512Vbmi.PermuteVar64x8(lo, pick01).AsUInt32(), nibbleShift).AsByte() & mask;
        Vector512<byte> l23 = Avx512F.ShiftRightLogicalVariable(Avx512Vbmi.PermuteVar64x8x2(lo, pick23, mid).AsUInt32(), nibbleShift).AsByte() & mask;
        Vector512<byte> l45 = Avx512F.ShiftRightLogicalVariable(Avx512Vbmi.PermuteVar64x8(mid, pick45).AsUInt32(), nibbleShift).AsByte() & mask;
        Vector512<byte> l67 = Avx512F.ShiftRightLogicalVariable(Avx512Vbmi.PermuteVar64x8(hi, pick67).AsUInt32(), nibbleShift).AsByte() & mask;
        Vector512<short> ones = Vector512<short>.One;
        Vector512<int> s01 = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(l01, y01), ones); // block 0: lanes 0-1, block 1: lanes 2-3
        Vector512<int> s23 = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(l23, y23), ones);
        Vector512<int> s45 = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(l45, y45), ones);
        Vector512<int> s67 = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(l67, y67), ones);
        return PairSums(s01, s23, s45, s67);
    }

    /// <summary>
    /// Eight blocks' sums from four registers of block pairs (register p: block 2p's 8 partial sums in its
    /// low 256 bits, block 2p + 1's in the high), in the order 0, 2, 4, 6, 1, 3, 5, 7.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> PairSums(Vector512<int> s01, Vector512<int> s23, Vector512<int> s45, Vector512<int> s67)
    {
        // Per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3], then [Σa, Σb, Σc, Σd] of the lane's four ints.
        Vector512<int> x0 = Avx512F.UnpackLow(s01, s23) + Avx512F.UnpackHigh(s01, s23);
        Vector512<int> x1 = Avx512F.UnpackLow(s45, s67) + Avx512F.UnpackHigh(s45, s67);
        Vector512<int> lanes = Avx512F.UnpackLow(x0.AsInt64(), x1.AsInt64()).AsInt32() + Avx512F.UnpackHigh(x0.AsInt64(), x1.AsInt64()).AsInt32(); // added as ints: no carries between them
        // Lanes 0 + 1 hold the first block of each pair, lanes 2 + 3 the second.
        return Avx512F.Shuffle4x128(lanes, lanes, 0b00_00_10_00).GetLower() + Avx512F.Shuffle4x128(lanes, lanes, 0b00_00_11_01).GetLower();
    }

    private static bool IsQ8_0 => TF.TypeSize == 34 && TF.Signed && !TF.HasMin;

    /// <summary>
    /// <see cref="DotPacked4{TD}"/> for Q8_0 on 512-bit registers, the same bits. Each register holds two
    /// blocks' 32 signed levels (two 32-byte loads), and the two blocks' activations are one 64-byte load,
    /// shared by the four rows. AVX-512 has no vpsignb, so |l|·(q·sign l) is formed with a compare into a
    /// mask and a masked negate; pmaddubsw (exact: 2·128·127 &lt; 32767) then pmaddwd by ones leave 8 partial
    /// sums per block, reduced as in <see cref="DotPacked4Q4_0"/> to the order 0, 2, 4, 6, 1, 3, 5, 7. The
    /// eight d's are picked out of the group's 272 bytes by two word permutes. Terms are sumi·(d_x·d_y), as
    /// ggml's, added to the running sums in block order. rows: 4 rows of rowBytes, q: (K), dy: (K/32), y: (4).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DotPacked4Q8_0(byte* rows, int rowBytes, sbyte* q, float* dy, int nb, float* y)
    {
        byte* r0 = rows, r1 = rows + rowBytes, r2 = rows + 2 * rowBytes, r3 = rows + 3 * rowBytes;
        // Block i's d is word 17i of the group. Int lane j takes block order[j] = 0, 2, 4, 6, 1, 3, 5, 7:
        // blocks 0-3 from the group's bytes [0, 128), blocks 4-7 from [128, 256).
        Vector512<short> headsLow = Vector512.Create(
            (short)0, 0, 34, 34, 0, 0, 0, 0, 17, 17, 51, 51, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
        Vector512<short> headsHigh = Vector512.Create(
            (short)0, 0, 0, 0, 68 - 64, 68 - 64, 102 - 64, 102 - 64, 0, 0, 0, 0, 85 - 64, 85 - 64, 119 - 64, 119 - 64,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
        Vector256<int> order = Vector256.Create(0, 2, 4, 6, 1, 3, 5, 7);
        Vector128<float> sums = Vector128<float>.Zero; // (4) row j's running sum in lane j
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            long offset = (long)b * 34;
            FourRows.Prefetch(rows + 8L * rowBytes + offset, rowBytes, 8 * 34 + 64); // as in DotPacked4
            sbyte* yq = q + 32 * b;
            Vector512<sbyte> y01 = Vector512.Load(yq), y23 = Vector512.Load(yq + 64), y45 = Vector512.Load(yq + 128), y67 = Vector512.Load(yq + 192);
            Vector256<float> dyo = Avx2.PermuteVar8x32(Vector256.Load(dy + b), order);

            Vector256<int> s0 = GroupSumsQ8_0(r0 + offset, y01, y23, y45, y67, headsLow, headsHigh, out Vector256<int> h0);
            Vector256<int> s1 = GroupSumsQ8_0(r1 + offset, y01, y23, y45, y67, headsLow, headsHigh, out Vector256<int> h1);
            Vector256<int> s2 = GroupSumsQ8_0(r2 + offset, y01, y23, y45, y67, headsLow, headsHigh, out Vector256<int> h2);
            Vector256<int> s3 = GroupSumsQ8_0(r3 + offset, y01, y23, y45, y67, headsLow, headsHigh, out Vector256<int> h3);
            Vector512<float> d01 = HalfScale.ToSingle(Vector512.Create(h0, h1));
            Vector512<float> d23 = HalfScale.ToSingle(Vector512.Create(h2, h3));
            Vector256<float> t0 = Vector256.ConvertToSingle(s0) * (d01.GetLower() * dyo);
            Vector256<float> t1 = Vector256.ConvertToSingle(s1) * (d01.GetUpper() * dyo);
            Vector256<float> t2 = Vector256.ConvertToSingle(s2) * (d23.GetLower() * dyo);
            Vector256<float> t3 = Vector256.ConvertToSingle(s3) * (d23.GetUpper() * dyo);
            sums = FourRows.AddInOrderFromEvenOdd(sums, t0, t1, t2, t3);
        }
        FinishRows<MaddDot>(sums, rows, rowBytes, q, dy, null, null, b, nb, y);
    }

    /// <summary>
    /// The integer sums Σ l·q of one row's group of 8 Q8_0 blocks, in the order 0, 2, 4, 6, 1, 3, 5, 7, and
    /// the blocks' F16 d's in the same order (low 16 bits of each int).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> GroupSumsQ8_0(byte* w, Vector512<sbyte> y01, Vector512<sbyte> y23, Vector512<sbyte> y45, Vector512<sbyte> y67,
        Vector512<short> headsLow, Vector512<short> headsHigh, out Vector256<int> d)
    {
        Vector256<int> dLow = Avx512BW.PermuteVar32x16x2(Vector512.Load((short*)w), headsLow, Vector512.Load((short*)(w + 64))).GetLower().AsInt32();
        Vector256<int> dHigh = Avx512BW.PermuteVar32x16x2(Vector512.Load((short*)(w + 128)), headsHigh, Vector512.Load((short*)(w + 192))).GetLower().AsInt32();
        d = Avx2.Blend(dLow, dHigh, 0b1100_1100);
        Vector512<int> s01 = SignedPairDot(w, y01), s23 = SignedPairDot(w + 68, y23), s45 = SignedPairDot(w + 136, y45), s67 = SignedPairDot(w + 204, y67);
        return PairSums(s01, s23, s45, s67);
    }

    /// <summary>8 partial sums of l·q for each of the two Q8_0 blocks at w and w + 34 (low and high 256 bits).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> SignedPairDot(byte* w, Vector512<sbyte> yv)
    {
        Vector512<sbyte> l = Vector512.Create(Vector256.Load((sbyte*)(w + 2)), Vector256.Load((sbyte*)(w + 36)));
        // |l|·(q·sign l): an unsigned × signed product of the same value (q is 0 where l is, as |l| is).
        Vector512<sbyte> signed = Vector512.ConditionalSelect(Vector512.LessThan(l, Vector512<sbyte>.Zero), -yv, yv);
        Vector512<short> pairs = Avx512BW.MultiplyAddAdjacent(Vector512.Abs(l).AsByte(), signed);
        return Avx512BW.MultiplyAddAdjacent(pairs, Vector512<short>.One);
    }

    /// <summary><see cref="DotAvx2"/> straight from the stored blocks: levels unpacked in registers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float DotPackedAvx2<TD>(byte* row, sbyte* q, float* dy, int* qsum, float* sy, int nb)
        where TD : struct, IByteDot
    {
        float* terms = stackalloc float[8];
        float sumf = 0;
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            GroupTerms<TD>(row + (long)b * TF.TypeSize, q, dy, qsum, sy, b).Store(terms);
            for (int i = 0; i < 8; i++) sumf += terms[i];
        }
        for (; b < nb; b++) sumf += BlockTerm<TD>(row + (long)b * TF.TypeSize, q, dy, qsum, sy, b);
        return sumf;
    }

    /// <summary>The float terms of blocks b..b+7 of one stored row (w points at block b).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> GroupTerms<TD>(byte* w, sbyte* q, float* dy, int* qsum, float* sy, int b)
        where TD : struct, IByteDot
    {
        sbyte* y = q + 32 * b;
        Vector256<int> s0 = BlockDot<TD>(TF.Levels(w), y);
        Vector256<int> s1 = BlockDot<TD>(TF.Levels(w + TF.TypeSize), y + 32);
        Vector256<int> s2 = BlockDot<TD>(TF.Levels(w + 2 * TF.TypeSize), y + 64);
        Vector256<int> s3 = BlockDot<TD>(TF.Levels(w + 3 * TF.TypeSize), y + 96);
        Vector256<int> s4 = BlockDot<TD>(TF.Levels(w + 4 * TF.TypeSize), y + 128);
        Vector256<int> s5 = BlockDot<TD>(TF.Levels(w + 5 * TF.TypeSize), y + 160);
        Vector256<int> s6 = BlockDot<TD>(TF.Levels(w + 6 * TF.TypeSize), y + 192);
        Vector256<int> s7 = BlockDot<TD>(TF.Levels(w + 7 * TF.TypeSize), y + 224);
        Vector256<int> sumi = Transpose8(s0, s1, s2, s3, s4, s5, s6, s7);
        if (TF.OffsetShift >= 0) sumi -= Vector256.Load(qsum + b) << TF.OffsetShift;
        // Each block starts with d (and m): the first four bytes of the eight blocks, d in the low half.
        // Eight scalar loads beat vpgatherdd here (measured on Zen 5); for Q4_0 the eight d's lie in the
        // group's first 128 bytes, and one two-register word permute picks them out.
        Vector256<int> heads = TF.TypeSize == 18 && Avx512BW.IsSupported
            ? Heads18(w)
            : Vector256.Create(
                *(int*)w, *(int*)(w + TF.TypeSize), *(int*)(w + 2 * TF.TypeSize), *(int*)(w + 3 * TF.TypeSize),
                *(int*)(w + 4 * TF.TypeSize), *(int*)(w + 5 * TF.TypeSize), *(int*)(w + 6 * TF.TypeSize), *(int*)(w + 7 * TF.TypeSize));
        Vector256<float> dx = HalfScale.ToSingle(heads);
        Vector256<float> mx = TF.HasMin ? HalfScale.ToSingle(Vector256.ShiftRightLogical(heads, 16)) : default;
        return TF.Term(sumi, dx, Vector256.Load(dy + b), mx, TF.HasMin ? Vector256.Load(sy + b) : default);
    }

    /// <summary>
    /// The first two bytes (d) of eight consecutive 18-byte blocks at w, each in the low half of its lane;
    /// the high halves hold other bytes of the blocks. Reads w[0..128), inside the eight blocks' 144 bytes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Heads18(byte* w)
    {
        // Word 9i is block i's d (byte 18i); word 9i + 1 follows it, except for i = 7 (word 64 is out of the
        // two registers' reach), where word 63 stands in.
        Vector512<short> index = Vector512.Create(
            (short)0, 1, 9, 10, 18, 19, 27, 28, 36, 37, 45, 46, 54, 55, 63, 63,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
        return Avx512BW.PermuteVar32x16x2(Vector512.Load((short*)w), index, Vector512.Load((short*)(w + 64))).GetLower().AsInt32();
    }

    /// <summary>The float term of block b of one stored row (w points at it).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float BlockTerm<TD>(byte* w, sbyte* q, float* dy, int* qsum, float* sy, int b)
        where TD : struct, IByteDot
    {
        int sumi = Vector256.Sum(BlockDot<TD>(TF.Levels(w), q + 32 * b));
        if (TF.OffsetShift >= 0) sumi -= qsum[b] << TF.OffsetShift;
        float mx = TF.HasMin ? HalfScale.ToSingle(*(ushort*)(w + 2)) : 0f;
        return TF.Term(sumi, HalfScale.ToSingle(*(ushort*)w), dy[b], mx, TF.HasMin ? sy[b] : 0f);
    }

    /// <summary>levels and q: (32·nb), grouped; dx, mx, dy, qsum, sy: (nb).</summary>
    private static float DotScalar(byte* levels, float* dx, float* mx, sbyte* q, float* dy, int* qsum, float* sy, int nb)
    {
        float sumf = 0;
        int full = nb / 8 * 8;
        for (int b = 0; b < nb; b++)
        {
            int sumi = b < full ? GroupedSumScalar(levels + 32 * (b & ~7), q + 32 * (b & ~7), b & 7) : BlockSumScalar(levels + 32 * b, q + 32 * b);
            if (TF.OffsetShift >= 0) sumi -= qsum[b] << TF.OffsetShift;
            sumf += TF.Term(sumi, dx[b], dy[b], TF.HasMin ? mx[b] : 0f, TF.HasMin ? sy[b] : 0f);
        }
        return sumf;
    }

    // Σ level·q over block i of a group of 8 stored grouped (its 4-byte word j at word 8j + i), offset still in.
    private static int GroupedSumScalar(byte* levels, sbyte* q, int i)
    {
        int s = 0;
        for (int j = 0; j < 8; j++)
        {
            for (int t = 0; t < 4; t++)
            {
                int e = 32 * j + 4 * i + t;
                s += (TF.Signed ? (sbyte)levels[e] : levels[e]) * q[e];
            }
        }
        return s;
    }

    // Σ level·q over one block in natural order, offset still in.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int BlockSumScalar(byte* levels, sbyte* q)
    {
        int s = 0;
        for (int j = 0; j < 32; j++) s += (TF.Signed ? (sbyte)levels[j] : levels[j]) * q[j];
        return s;
    }

    /// <summary>levels and q: (32·nb), grouped; dx, mx, dy, qsum, sy: (nb).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float DotAvx2<TD>(byte* levels, float* dx, float* mx, sbyte* q, float* dy, int* qsum, float* sy, int nb)
        where TD : struct, IByteDot
    {
        float* terms = stackalloc float[8];
        float sumf = 0;
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            byte* w = levels + 32 * b;
            sbyte* y = q + 32 * b;
            Vector256<int> sumi = Vector256<int>.Zero;
            for (int j = 0; j < 256; j += 32)
            {
                Vector256<byte> wv = Vector256.Load(w + j);
                sumi = Accumulate<TD>(sumi, TF.Signed ? Avx2.Abs(wv.AsSByte()) : wv, wv, y + j);
            }
            if (TF.OffsetShift >= 0) sumi -= Vector256.Load(qsum + b) << TF.OffsetShift;
            Vector256<float> t = TF.Term(
                sumi, Vector256.Load(dx + b), Vector256.Load(dy + b),
                TF.HasMin ? Vector256.Load(mx + b) : default, TF.HasMin ? Vector256.Load(sy + b) : default);
            t.Store(terms);
            for (int i = 0; i < 8; i++) sumf += terms[i];
        }
        for (; b < nb; b++)
        {
            int sumi = Vector256.Sum(BlockDot<TD>(Vector256.Load(levels + 32 * b), q + 32 * b));
            if (TF.OffsetShift >= 0) sumi -= qsum[b] << TF.OffsetShift;
            sumf += TF.Term(sumi, dx[b], dy[b], TF.HasMin ? mx[b] : 0f, TF.HasMin ? sy[b] : 0f);
        }
        return sumf;
    }

    /// <summary>Eight partial sums of level·q over one block (offset still in): lane i sums bytes 4i..4i+3.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> BlockDot<TD>(Vector256<byte> wv, sbyte* y)
        where TD : struct, IByteDot
    {
        Vector256<sbyte> yv = Vector256.Load(y);
        if (TF.Signed)
        {
            // |w|·(q·sign(w)): an unsigned×signed product with the same value, as ggml's x86 kernels do.
            yv = Avx2.Sign(yv, wv.AsSByte());
            wv = Avx2.Abs(wv.AsSByte());
        }
        return TD.Add(Vector256<int>.Zero, wv, yv);
    }

    /// <summary>Lane i of the result = the sum of the eight lanes of s_i (integer, so any order is exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Transpose8(
        Vector256<int> s0, Vector256<int> s1, Vector256<int> s2, Vector256<int> s3,
        Vector256<int> s4, Vector256<int> s5, Vector256<int> s6, Vector256<int> s7)
    {
        Vector256<int> h0123 = Avx2.HorizontalAdd(Avx2.HorizontalAdd(s0, s1), Avx2.HorizontalAdd(s2, s3));
        Vector256<int> h4567 = Avx2.HorizontalAdd(Avx2.HorizontalAdd(s4, s5), Avx2.HorizontalAdd(s6, s7));
        return Avx2.Permute2x128(h0123, h4567, 0x20) + Avx2.Permute2x128(h0123, h4567, 0x31);
    }
}

/// <summary>Four-byte dot products (unsigned × signed bytes, summed per 32-bit lane) added to an accumulator.</summary>
internal interface IByteDot
{
    static abstract Vector256<int> Add(Vector256<int> acc, Vector256<byte> u, Vector256<sbyte> s);
}

/// <summary>AVX-VNNI's vpdpbusd: the four products and the add in one instruction, exact.</summary>
internal readonly struct VnniDot : IByteDot
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Add(Vector256<int> acc, Vector256<byte> u, Vector256<sbyte> s) => AvxVnni.MultiplyWideningAndAdd(acc, u, s);
}

/// <summary>
/// AVX2's pmaddubsw then pmaddwd by ones. Exact when no pair sum of pmaddubsw saturates int16: every level
/// used here is at most 31, or |level| ≤ 128 against quants in [−127, 127] (2·128·127 &lt; 32767).
/// </summary>
internal readonly struct MaddDot : IByteDot
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Add(Vector256<int> acc, Vector256<byte> u, Vector256<sbyte> s) =>
        acc + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, s), Vector256<short>.One);
}
