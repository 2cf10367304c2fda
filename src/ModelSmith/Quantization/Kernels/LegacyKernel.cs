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
/// <para><b>Unpacked row</b>: the K levels as bytes (with the format's offset), then d per block (float),
/// then m per block for Q4_1/Q5_1.</para>
/// <para><b>Order.</b> ggml's generic kernels add one float term per block to a running sum, in block order,
/// and every term is computed from the block's exact integer dot product. So the SIMD path computes eight
/// blocks' integer sums at once (vpdpbusd or pmaddubsw+pmaddwd, 8 partial sums per block, then a
/// transposing reduction that leaves block i's sum in lane i), the eight terms with vector float ops that
/// repeat the scalar ones lane by lane, and then adds them to the running sum one at a time. Every path
/// returns ggml's generic result bit for bit.</para>
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
            QuantKernelPath.Avx2 => DotAvx2(unpacked, dx, mx, q, dy, qsum, sy, nb, vnni: false),
            _ => DotAvx2(unpacked, dx, mx, q, dy, qsum, sy, nb, vnni: AvxVnni.IsSupported),
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
        for (; j + 4 <= count; j += 4) Dot4(unpacked, a, t0 + j, path != QuantKernelPath.Avx2 && AvxVnni.IsSupported, y + (long)j * ldy, ldy);
        for (; j < count; j++) y[(long)j * ldy] = Dot(unpacked, a, t0 + j, path);
    }

    /// <summary>
    /// Four tokens against one unpacked row: each block's levels are loaded once for the four, and the
    /// four running sums (one dependent chain each, in block order) interleave. y[j·ldy] for j in [0, 4).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot4(byte* levels, QuantizedActivations a, int t0, bool vnni, float* y, int ldy)
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
            Vector256<byte> wa = Vector256.Load(w), wb = Vector256.Load(w + 32);
            Vector256<int> p0 = Pair(wa, wb, q0 + o, vnni), p1 = Pair(wa, wb, q1 + o, vnni), p2 = Pair(wa, wb, q2 + o, vnni), p3 = Pair(wa, wb, q3 + o, vnni);
            wa = Vector256.Load(w + 64);
            wb = Vector256.Load(w + 96);
            p0 = Avx2.HorizontalAdd(p0, Pair(wa, wb, q0 + o + 64, vnni));
            p1 = Avx2.HorizontalAdd(p1, Pair(wa, wb, q1 + o + 64, vnni));
            p2 = Avx2.HorizontalAdd(p2, Pair(wa, wb, q2 + o + 64, vnni));
            p3 = Avx2.HorizontalAdd(p3, Pair(wa, wb, q3 + o + 64, vnni));
            wa = Vector256.Load(w + 128);
            wb = Vector256.Load(w + 160);
            Vector256<int> r0 = Pair(wa, wb, q0 + o + 128, vnni), r1 = Pair(wa, wb, q1 + o + 128, vnni), r2 = Pair(wa, wb, q2 + o + 128, vnni), r3 = Pair(wa, wb, q3 + o + 128, vnni);
            wa = Vector256.Load(w + 192);
            wb = Vector256.Load(w + 224);
            r0 = Avx2.HorizontalAdd(r0, Pair(wa, wb, q0 + o + 192, vnni));
            r1 = Avx2.HorizontalAdd(r1, Pair(wa, wb, q1 + o + 192, vnni));
            r2 = Avx2.HorizontalAdd(r2, Pair(wa, wb, q2 + o + 192, vnni));
            r3 = Avx2.HorizontalAdd(r3, Pair(wa, wb, q3 + o + 192, vnni));
            Vector256<float> d = Vector256.Load(dx + b);
            Vector256<float> m = TF.HasMin ? Vector256.Load(mx + b) : default;
            Terms(p0, r0, d, m, a, t0, b).Store(terms);
            Terms(p1, r1, d, m, a, t0 + 1, b).Store(terms + 8);
            Terms(p2, r2, d, m, a, t0 + 2, b).Store(terms + 16);
            Terms(p3, r3, d, m, a, t0 + 3, b).Store(terms + 24);
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
            s0 += TailTerm(wv, dx, mx, a, t0, b, vnni);
            s1 += TailTerm(wv, dx, mx, a, t0 + 1, b, vnni);
            s2 += TailTerm(wv, dx, mx, a, t0 + 2, b, vnni);
            s3 += TailTerm(wv, dx, mx, a, t0 + 3, b, vnni);
        }
        y[0] = s0;
        y[ldy] = s1;
        y[2L * ldy] = s2;
        y[3L * ldy] = s3;
    }

    // hadd of two blocks' partial sums: lanes 0-1 and 4-5 hold block a's pair sums, 2-3 and 6-7 block b's.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Pair(Vector256<byte> wa, Vector256<byte> wb, sbyte* y, bool vnni) =>
        Avx2.HorizontalAdd(BlockDot(wa, y, vnni), BlockDot(wb, y + 32, vnni));

    // The eight terms of blocks b..b+7 for token t, from the hadd trees of blocks 0-3 (h0123) and 4-7 (h4567).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Terms(Vector256<int> h0123, Vector256<int> h4567, Vector256<float> dx, Vector256<float> mx, QuantizedActivations a, int t, int b)
    {
        int o = t * a.Blocks + b;
        Vector256<int> sumi = Avx2.Permute2x128(h0123, h4567, 0x20) + Avx2.Permute2x128(h0123, h4567, 0x31);
        if (TF.OffsetShift >= 0) sumi -= Vector256.Load(a.BlockSums + o) << TF.OffsetShift;
        return TF.Term(sumi, dx, Vector256.Load(a.Scales + o), mx, TF.HasMin ? Vector256.Load(a.Offsets + o) : default);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float TailTerm(Vector256<byte> wv, float* dx, float* mx, QuantizedActivations a, int t, int b, bool vnni)
    {
        int o = t * a.Blocks + b;
        int sumi = Vector256.Sum(BlockDot(wv, a.Quants + (long)t * a.K + 32 * b, vnni));
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
                sumf += TF.Term(BlockSumScalar(levels, q + 32 * b, qsum[b]), dx, dy[b], mx, TF.HasMin ? sy[b] : 0f);
            }
            return sumf;
        }
        return DotPackedAvx2(row, q, dy, qsum, sy, nb, path == QuantKernelPath.Avx2 ? false : AvxVnni.IsSupported);
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
        for (; r + 4 <= count; r += 4)
            DotPacked4(rows + (long)r * rowBytes, rowBytes, q, a.Scales + o, a.BlockSums + o, a.Offsets + o, nb, vnni, y + r);
        for (; r < count; r++) y[r] = DotPacked(rows + (long)r * rowBytes, a, token, path);
    }

    /// <summary>
    /// Four rows at once, their running sums interleaved: each row's sum is a chain of dependent float
    /// adds in block order (ggml's order), so one row alone waits on the add latency every block; four
    /// chains fill those waits. rows: 4 rows of rowBytes, y: (4).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DotPacked4(byte* rows, int rowBytes, sbyte* q, float* dy, int* qsum, float* sy, int nb, bool vnni, float* y)
    {
        float* terms = stackalloc float[32];
        byte* r0 = rows, r1 = rows + rowBytes, r2 = rows + 2 * rowBytes, r3 = rows + 3 * rowBytes;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            long offset = (long)b * TF.TypeSize;
            // The next four rows, at the pace these are read: with four rows in flight the hardware
            // prefetcher alone leaves DRAM idle (measured 12 GB/s without, 15-16 with, Q8_0, one thread).
            byte* ahead = rows + 4L * rowBytes + offset;
            for (int i = 0; i < 8 * TF.TypeSize + 64; i += 64)
            {
                Sse.Prefetch0(ahead + i);
                Sse.Prefetch0(ahead + rowBytes + i);
                Sse.Prefetch0(ahead + 2 * rowBytes + i);
                Sse.Prefetch0(ahead + 3 * rowBytes + i);
            }
            GroupTerms(r0 + offset, q, dy, qsum, sy, b, vnni).Store(terms);
            GroupTerms(r1 + offset, q, dy, qsum, sy, b, vnni).Store(terms + 8);
            GroupTerms(r2 + offset, q, dy, qsum, sy, b, vnni).Store(terms + 16);
            GroupTerms(r3 + offset, q, dy, qsum, sy, b, vnni).Store(terms + 24);
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
            long offset = (long)b * TF.TypeSize;
            s0 += BlockTerm(r0 + offset, q, dy, qsum, sy, b, vnni);
            s1 += BlockTerm(r1 + offset, q, dy, qsum, sy, b, vnni);
            s2 += BlockTerm(r2 + offset, q, dy, qsum, sy, b, vnni);
            s3 += BlockTerm(r3 + offset, q, dy, qsum, sy, b, vnni);
        }
        y[0] = s0;
        y[1] = s1;
        y[2] = s2;
        y[3] = s3;
    }

    /// <summary><see cref="DotAvx2"/> straight from the stored blocks: levels unpacked in registers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float DotPackedAvx2(byte* row, sbyte* q, float* dy, int* qsum, float* sy, int nb, bool vnni)
    {
        float* terms = stackalloc float[8];
        float sumf = 0;
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            GroupTerms(row + (long)b * TF.TypeSize, q, dy, qsum, sy, b, vnni).Store(terms);
            for (int i = 0; i < 8; i++) sumf += terms[i];
        }
        for (; b < nb; b++) sumf += BlockTerm(row + (long)b * TF.TypeSize, q, dy, qsum, sy, b, vnni);
        return sumf;
    }

    /// <summary>The float terms of blocks b..b+7 of one stored row (w points at block b).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> GroupTerms(byte* w, sbyte* q, float* dy, int* qsum, float* sy, int b, bool vnni)
    {
        sbyte* y = q + 32 * b;
        Vector256<int> s0 = BlockDot(TF.Levels(w), y, vnni);
        Vector256<int> s1 = BlockDot(TF.Levels(w + TF.TypeSize), y + 32, vnni);
        Vector256<int> s2 = BlockDot(TF.Levels(w + 2 * TF.TypeSize), y + 64, vnni);
        Vector256<int> s3 = BlockDot(TF.Levels(w + 3 * TF.TypeSize), y + 96, vnni);
        Vector256<int> s4 = BlockDot(TF.Levels(w + 4 * TF.TypeSize), y + 128, vnni);
        Vector256<int> s5 = BlockDot(TF.Levels(w + 5 * TF.TypeSize), y + 160, vnni);
        Vector256<int> s6 = BlockDot(TF.Levels(w + 6 * TF.TypeSize), y + 192, vnni);
        Vector256<int> s7 = BlockDot(TF.Levels(w + 7 * TF.TypeSize), y + 224, vnni);
        Vector256<int> sumi = Transpose8(s0, s1, s2, s3, s4, s5, s6, s7);
        if (TF.OffsetShift >= 0) sumi -= Vector256.Load(qsum + b) << TF.OffsetShift;
        // Each block starts with d (and m): the first four bytes of the eight blocks, d in the low half.
        // Eight scalar loads beat vpgatherdd here (measured on Zen 5).
        Vector256<int> heads = Vector256.Create(
            *(int*)w, *(int*)(w + TF.TypeSize), *(int*)(w + 2 * TF.TypeSize), *(int*)(w + 3 * TF.TypeSize),
            *(int*)(w + 4 * TF.TypeSize), *(int*)(w + 5 * TF.TypeSize), *(int*)(w + 6 * TF.TypeSize), *(int*)(w + 7 * TF.TypeSize));
        Vector256<float> dx = HalfScale.ToSingle(heads);
        Vector256<float> mx = TF.HasMin ? HalfScale.ToSingle(Vector256.ShiftRightLogical(heads, 16)) : default;
        return TF.Term(sumi, dx, Vector256.Load(dy + b), mx, TF.HasMin ? Vector256.Load(sy + b) : default);
    }

    /// <summary>The float term of block b of one stored row (w points at it).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float BlockTerm(byte* w, sbyte* q, float* dy, int* qsum, float* sy, int b, bool vnni)
    {
        int sumi = Vector256.Sum(BlockDot(TF.Levels(w), q + 32 * b, vnni));
        if (TF.OffsetShift >= 0) sumi -= qsum[b] << TF.OffsetShift;
        float mx = TF.HasMin ? HalfScale.ToSingle(*(ushort*)(w + 2)) : 0f;
        return TF.Term(sumi, HalfScale.ToSingle(*(ushort*)w), dy[b], mx, TF.HasMin ? sy[b] : 0f);
    }

    /// <summary>levels: (32·nb), dx, mx, dy, qsum, sy: (nb), q: (32·nb).</summary>
    private static float DotScalar(byte* levels, float* dx, float* mx, sbyte* q, float* dy, int* qsum, float* sy, int nb)
    {
        float sumf = 0;
        for (int b = 0; b < nb; b++) sumf += TF.Term(BlockSumScalar(levels + 32 * b, q + 32 * b, qsum[b]), dx[b], dy[b], TF.HasMin ? mx[b] : 0f, TF.HasMin ? sy[b] : 0f);
        return sumf;
    }

    // Σ level·q over one block, the offset taken out.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int BlockSumScalar(byte* levels, sbyte* q, int qsum)
    {
        int s = 0;
        if (TF.Signed)
        {
            for (int j = 0; j < 32; j++) s += (sbyte)levels[j] * q[j];
            return s;
        }
        for (int j = 0; j < 32; j++) s += levels[j] * q[j];
        return TF.OffsetShift >= 0 ? s - (qsum << TF.OffsetShift) : s;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float DotAvx2(byte* levels, float* dx, float* mx, sbyte* q, float* dy, int* qsum, float* sy, int nb, bool vnni)
    {
        float* terms = stackalloc float[8];
        float sumf = 0;
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            byte* w = levels + 32 * b;
            sbyte* y = q + 32 * b;
            Vector256<int> s0 = BlockDot(Vector256.Load(w), y, vnni), s1 = BlockDot(Vector256.Load(w + 32), y + 32, vnni);
            Vector256<int> s2 = BlockDot(Vector256.Load(w + 64), y + 64, vnni), s3 = BlockDot(Vector256.Load(w + 96), y + 96, vnni);
            Vector256<int> s4 = BlockDot(Vector256.Load(w + 128), y + 128, vnni), s5 = BlockDot(Vector256.Load(w + 160), y + 160, vnni);
            Vector256<int> s6 = BlockDot(Vector256.Load(w + 192), y + 192, vnni), s7 = BlockDot(Vector256.Load(w + 224), y + 224, vnni);
            Vector256<int> sumi = Transpose8(s0, s1, s2, s3, s4, s5, s6, s7);
            if (TF.OffsetShift >= 0) sumi -= Vector256.Load(qsum + b) << TF.OffsetShift;
            Vector256<float> t = TF.Term(
                sumi, Vector256.Load(dx + b), Vector256.Load(dy + b),
                TF.HasMin ? Vector256.Load(mx + b) : default, TF.HasMin ? Vector256.Load(sy + b) : default);
            t.Store(terms);
            sumf += terms[0];
            sumf += terms[1];
            sumf += terms[2];
            sumf += terms[3];
            sumf += terms[4];
            sumf += terms[5];
            sumf += terms[6];
            sumf += terms[7];
        }
        for (; b < nb; b++)
        {
            int sumi = Vector256.Sum(BlockDot(Vector256.Load(levels + 32 * b), q + 32 * b, vnni));
            if (TF.OffsetShift >= 0) sumi -= qsum[b] << TF.OffsetShift;
            sumf += TF.Term(sumi, dx[b], dy[b], TF.HasMin ? mx[b] : 0f, TF.HasMin ? sy[b] : 0f);
        }
        return sumf;
    }

    /// <summary>Eight partial sums of level·q over one block (offset still in): lane i sums bytes 4i..4i+3.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> BlockDot(Vector256<byte> wv, sbyte* y, bool vnni)
    {
        Vector256<sbyte> yv = Vector256.Load(y);
        if (TF.Signed)
        {
            // |w|·(q·sign(w)): an unsigned×signed product with the same value, as ggml's x86 kernels do.
            yv = Avx2.Sign(yv, wv.AsSByte());
            wv = Avx2.Abs(wv.AsSByte());
        }
        if (vnni) return AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, wv, yv);
        // Pairs of |w|·q fit int16 without saturating: |w| ≤ 128 and |q| ≤ 127 (ggml's quants never reach −128).
        return Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(wv, yv), Vector256<short>.One);
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
