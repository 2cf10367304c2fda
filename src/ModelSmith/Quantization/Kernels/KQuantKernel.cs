using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using ModelSmith.Formats;

namespace ModelSmith.Quantization.Kernels;

/// <summary>How a K-quant's generic ggml kernel turns its integer sums into floats.</summary>
internal enum KQuantForm
{
    /// <summary>Q2_K: sumf += (d_y·d)·Σ_all − (d_y·dmin)·Σ bsums·mins, one integer sum per super-block.</summary>
    TotalWithMins,

    /// <summary>Q3_K, Q6_K: eight lane sums, sums[l] += (d·d_y)·aux32[l]; sumf = Σ_l sums[l] at the end.</summary>
    Lanes,

    /// <summary>Q4_K, Q5_K: <see cref="Lanes"/> plus sumf −= (dmin·d_y)·Σ bsums·mins per super-block.</summary>
    LanesWithMins,
}

/// <summary>What <see cref="KQuantKernel{TF}"/> needs to know about one K-quant format.</summary>
internal unsafe interface IKQuantFormat
{
    static abstract GgmlType Type { get; }

    static abstract int TypeSize { get; }

    /// <summary>The offset the unpacked levels carry so they are unsigned (Q3_K: 4, Q6_K: 32, else 0).</summary>
    static abstract byte Offset { get; }

    static abstract KQuantForm Form { get; }

    /// <summary>
    /// One super-block's scales, scalar: the scale of each 16-element group (16; a 32-element sub-block's
    /// scale twice), the min paired with each of Q8_K's 16 bsums (16; zeros if the format has none), d and
    /// dmin (0 if none) as floats.
    /// </summary>
    static abstract void UnpackScales(byte* block, short* scales, short* mins, out float d, out float dmin);

    /// <summary>Byte offset of the super-block's F16 scale d.</summary>
    static abstract int DOffset { get; }

    /// <summary>Byte offset of the F16 dmin, or −1 if the format has none.</summary>
    static abstract int DMinOffset { get; }

    /// <summary>The 16 group scales and 16 mins of <see cref="UnpackScales"/> into registers with AVX2 (d and dmin aside).</summary>
    static abstract void ScaleWords(byte* block, out Vector256<short> scales, out Vector256<short> mins);

    /// <summary>One super-block's levels (with the offset) in natural order, scalar. levels: (256).</summary>
    static abstract void UnpackLevels(byte* block, byte* levels);

    /// <summary>
    /// One super-block's levels in the interleaved order of <see cref="QuantizedActivations.Interleave"/>,
    /// two 32-element chunks per register, with AVX-512 VBMI (every K-quant stores element 32c + l of a
    /// chunk at byte l of some 32-byte array, so reordering the packed bytes reorders the levels). The
    /// registers hold chunks (0, 1), (2, 3), (4, 5), (6, 7), or (0, 2), (1, 3), (4, 6), (5, 7) where
    /// <see cref="NibblePairs"/>.
    /// </summary>
    static abstract void Levels512(byte* block, out Vector512<byte> l0, out Vector512<byte> l1, out Vector512<byte> l2, out Vector512<byte> l3);

    /// <summary>
    /// Whether <see cref="Levels512"/> pairs chunks c and c + 2: the low and high nibbles of the same 64
    /// packed bytes (Q4_K, Q5_K), so no shuffle regroups them; the kernels arrange the activations and the
    /// scales to match instead, once per super-block for every row.
    /// </summary>
    static abstract bool NibblePairs { get; }

    /// <summary>The interleaved levels with AVX2, stored. levels: (256).</summary>
    static abstract void UnpackLevels256(byte* block, byte* levels);
}

/// <summary>
/// Dot products for the K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) against Q8_K activations, equal bit for bit
/// to ggml's generic kernels.
/// </summary>
/// <remarks>
/// <para><b>What must be kept.</b> ggml's generic Q3_K..Q6_K kernels keep eight integer lane sums per
/// super-block, aux32[l] = Σ scale(e)·q[e]·level[e] over the elements e ≡ l (mod 8), and accumulate
/// sums[l] += d·aux32[l] in float across super-blocks. Any integer order is exact, but elements of different
/// lanes must never meet in one sum. The activations are stored interleaved (bytes 4l..4l+3 of each run
/// of 32 hold elements l, l+8, l+16, l+24) and the weight levels are unpacked in the same order, so
/// pmaddubsw's pair sums (4l, 4l+1) and (4l+2, 4l+3) each hold one lane of one 16-element group; pmaddwd
/// against the pair of group scales (s_2c, s_2c+1) then adds the two groups of lane l into dword l. Each
/// 32 elements give the eight lanes in order, 64 in a 512-bit register give two sets to fold. The float
/// steps (sums += d·aux, the min term) are the generic kernel's, lane by lane.</para>
/// <para><b>Signed levels</b> (Q3_K, Q6_K) are unpacked with their offset (level + 4, level + 32) to be
/// unsigned for pmaddubsw; offset·(q_a + q_b) per pair is subtracted in 16 bits before the scales.
/// No intermediate saturates: |pair| ≤ 2·63·127, |difference| ≤ 32·254.</para>
/// <para><b>Decode</b> (<see cref="DotPacked"/>) unpacks each super-block in registers and multiplies it at
/// once; with AVX-512, <see cref="DotPackedRows"/> runs four rows together (<see cref="DotPacked4"/>). <b>Prefill</b> unpacks a row once (<see cref="Unpack"/>: interleaved levels, then per super-block
/// the 16 scales, the 16 mins, d and dmin) and runs every token against it (<see cref="Dot"/>).</para>
/// </remarks>
internal sealed unsafe class KQuantKernel<TF> : QuantKernel where TF : struct, IKQuantFormat
{
    public static readonly KQuantKernel<TF> Instance = new();

    public override GgmlType Type => TF.Type;

    public override GgmlType ActivationType => GgmlType.Q8_K;

    public override int BlockSize => 256;

    public override int UnpackedRowBytes(int k) => Align64(k) + 2 * Align64(k / 256 * 32) + 2 * Align64(k / 256 * 4);

    private static short* ScaleWords(byte* unpacked, int k) => (short*)(unpacked + Align64(k));

    private static short* MinWords(byte* unpacked, int k) => (short*)(unpacked + Align64(k) + Align64(k / 256 * 32));

    private static float* Scales(byte* unpacked, int k) => (float*)(unpacked + Align64(k) + 2 * Align64(k / 256 * 32));

    private static float* MinScales(byte* unpacked, int k) => (float*)(unpacked + Align64(k) + 2 * Align64(k / 256 * 32) + Align64(k / 256 * 4));

    public override void Unpack(byte* row, int k, byte* dst, QuantKernelPath path)
    {
        int nsb = k / 256;
        short* scales = ScaleWords(dst, k);
        short* mins = MinWords(dst, k);
        float* d = Scales(dst, k);
        float* dmin = MinScales(dst, k);
        byte* natural = stackalloc byte[256];
        ReadOnlySpan<byte> order = QuantizedActivations.Interleave;
        for (int i = 0; i < nsb; i++)
        {
            byte* block = row + (long)i * TF.TypeSize;
            byte* levels = dst + 256 * i;
            if (path == QuantKernelPath.Scalar)
            {
                TF.UnpackScales(block, scales + 16 * i, mins + 16 * i, out d[i], out dmin[i]);
                TF.UnpackLevels(block, natural);
                for (int c = 0; c < 256; c += 32)
                {
                    for (int j = 0; j < 32; j++) levels[c + j] = natural[c + order[j]];
                }
                continue;
            }
            Scales(block, out Vector256<short> sc, out Vector256<short> mn, out d[i], out dmin[i]);
            sc.Store(scales + 16 * i);
            mn.Store(mins + 16 * i);
            if (path == QuantKernelPath.Avx512)
            {
                // Stored in chunk order, whichever way the registers pair the chunks.
                TF.Levels512(block, out Vector512<byte> l0, out Vector512<byte> l1, out Vector512<byte> l2, out Vector512<byte> l3);
                int second = TF.NibblePairs ? 64 : 32; // where each register's high half goes, after its low half
                int next = TF.NibblePairs ? 32 : 64;   // where the next register starts
                l0.GetLower().Store(levels);
                l0.GetUpper().Store(levels + second);
                l1.GetLower().Store(levels + next);
                l1.GetUpper().Store(levels + next + second);
                l2.GetLower().Store(levels + 128);
                l2.GetUpper().Store(levels + 128 + second);
                l3.GetLower().Store(levels + 128 + next);
                l3.GetUpper().Store(levels + 128 + next + second);
            }
            else
            {
                TF.UnpackLevels256(block, levels);
            }
        }
    }

    public override float Dot(byte* unpacked, QuantizedActivations a, int token, QuantKernelPath path)
    {
        int k = a.K, nsb = a.Blocks;
        sbyte* q = a.Quants + (long)token * k;
        float* dy = a.Scales + token * nsb;
        short* bsums = a.GroupSums + 16 * token * nsb;
        short* scales = ScaleWords(unpacked, k);
        short* mins = MinWords(unpacked, k);
        float* dx = Scales(unpacked, k);
        float* dmx = MinScales(unpacked, k);
        if (path == QuantKernelPath.Scalar) return DotScalar(unpacked, scales, mins, dx, dmx, q, dy, bsums, nsb);

        var acc = new Accumulator();
        for (int i = 0; i < nsb; i++)
        {
            byte* w = unpacked + 256 * i;
            sbyte* y = q + 256 * i;
            Vector256<short> sc = Vector256.Load(scales + 16 * i);
            Vector256<int> aux = path == QuantKernelPath.Avx512
                ? Unpacked512(w, y, sc)
                : Lanes256(w, y, sc, path == QuantKernelPath.Avx2Vnni);
            acc.Add(aux, dx[i], dmx[i], dy[i], Vector256.Load(bsums + 16 * i), Vector256.Load(mins + 16 * i));
        }
        return acc.Result();
    }

    public override bool HasPackedDot => true;

    public override float DotPacked(byte* row, QuantizedActivations a, int token, QuantKernelPath path)
    {
        int k = a.K, nsb = a.Blocks;
        sbyte* q = a.Quants + (long)token * k;
        float* dy = a.Scales + token * nsb;
        short* bsums = a.GroupSums + 16 * token * nsb;
        if (path == QuantKernelPath.Scalar)
        {
            byte* unpacked = stackalloc byte[256 + 64];
            byte* natural = stackalloc byte[256];
            ReadOnlySpan<byte> order = QuantizedActivations.Interleave;
            float sumf = 0;
            float* sums = stackalloc float[8];
            for (int l = 0; l < 8; l++) sums[l] = 0;
            for (int i = 0; i < nsb; i++)
            {
                byte* block = row + (long)i * TF.TypeSize;
                short* sc = (short*)(unpacked + 256);
                TF.UnpackScales(block, sc, sc + 16, out float dx, out float dmx);
                TF.UnpackLevels(block, natural);
                for (int c = 0; c < 256; c += 32)
                {
                    for (int j = 0; j < 32; j++) unpacked[c + j] = natural[c + order[j]];
                }
                AccumulateScalar(unpacked, sc, sc + 16, dx, dmx, q + 256 * i, dy[i], bsums + 16 * i, sums, ref sumf);
            }
            return FinishScalar(sums, sumf);
        }

        var acc = new Accumulator();
        byte* levels = stackalloc byte[256];
        for (int i = 0; i < nsb; i++)
        {
            byte* block = row + (long)i * TF.TypeSize;
            sbyte* y = q + 256 * i;
            Scales(block, out Vector256<short> sc, out Vector256<short> mn, out float dx, out float dmx);
            Vector256<int> aux;
            if (path == QuantKernelPath.Avx512)
            {
                TF.Levels512(block, out Vector512<byte> l0, out Vector512<byte> l1, out Vector512<byte> l2, out Vector512<byte> l3);
                aux = Lanes512(l0, l1, l2, l3, y, sc);
            }
            else
            {
                TF.UnpackLevels256(block, levels);
                aux = Lanes256(levels, y, sc, path == QuantKernelPath.Avx2Vnni);
            }
            acc.Add(aux, dx, dmx, dy[i], Vector256.Load(bsums + 16 * i), mn);
        }
        return acc.Result();
    }

    /// <summary>One super-block's scales and mins in registers, d and dmin as floats (dmin 0 if the format has none).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Scales(byte* block, out Vector256<short> scales, out Vector256<short> mins, out float d, out float dmin)
    {
        TF.ScaleWords(block, out scales, out mins);
        d = HalfScale.ToSingle(*(ushort*)(block + TF.DOffset));
        dmin = TF.DMinOffset < 0 ? 0f : HalfScale.ToSingle(*(ushort*)(block + TF.DMinOffset));
    }

    /// <summary>How many rows ahead of the four being multiplied <see cref="DotPacked4"/> prefetches.</summary>
    private const int PrefetchRows = 8;

    public override void DotPackedRows(byte* rows, int rowBytes, int count, QuantizedActivations a, int token, QuantKernelPath path, float* y)
    {
        int r = 0;
        if (path == QuantKernelPath.Avx512)
        {
            for (; r + 4 <= count; r += 4) DotPacked4(rows + (long)r * rowBytes, rowBytes, a, token, y + r);
        }
        for (; r < count; r++) y[r] = DotPacked(rows + (long)r * rowBytes, a, token, path);
    }

    /// <summary>
    /// Four stored rows · one token with AVX-512, y: (4). Each row's integer lane sums are computed as in
    /// <see cref="DotPacked"/>; what four rows share is done once: the activation loads, the offset term
    /// offset·(q_a + q_b) of the signed formats, and the F16 → float widening of the four d and dmin (in one
    /// branch-free vector step). ggml's per-row scalar float steps (the min term, Q2_K's totals, the final
    /// sum over the eight lanes) run with the four rows in the four lanes of one register, each lane doing
    /// its row's scalar operations in the scalar order, so every y[r] has the bits of one DotPacked call.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DotPacked4(byte* row0, int rowBytes, QuantizedActivations a, int token, float* y)
    {
        int k = a.K, nsb = a.Blocks;
        sbyte* q = a.Quants + (long)token * k;
        float* dys = a.Scales + token * nsb;
        short* bsums = a.GroupSums + 16 * token * nsb;
        Vector256<float> sums0 = default, sums1 = default, sums2 = default, sums3 = default; // (8) lane sums of each row
        Vector128<float> sumf = default; // (4) each row's scalar sumf
        // Four rows read side by side are four interleaved streams, which the hardware prefetchers do not
        // follow (measured: half the speed of one row at a time from memory). So the rows PrefetchRows
        // ahead are fetched into L2 explicitly, the group's 4·rowBytes spread evenly over the super-blocks;
        // with it the decode matvec runs at 1.2-1.8x the one-row speed.
        byte* ahead = row0 + (long)PrefetchRows * rowBytes;
        int span = 4 * rowBytes;
        for (int i = 0; i < nsb; i++)
        {
            for (int off = (i * span / nsb) & ~63, to = (i + 1) * span / nsb; off < to; off += 64) Sse.Prefetch2(ahead + off);
            byte* b0 = row0 + (long)i * TF.TypeSize;
            byte* b1 = b0 + rowBytes;
            byte* b2 = b1 + rowBytes;
            byte* b3 = b2 + rowBytes;
            sbyte* yq = q + 256 * i;
            float dy = dys[i];

            // d of rows 0..3 in lanes 0..3, dmin in lanes 4..7.
            Vector256<int> halves = TF.DMinOffset < 0
                ? Vector256.Create(*(ushort*)(b0 + TF.DOffset), *(ushort*)(b1 + TF.DOffset), *(ushort*)(b2 + TF.DOffset), *(ushort*)(b3 + TF.DOffset), 0, 0, 0, 0)
                : Vector256.Create(*(ushort*)(b0 + TF.DOffset), *(ushort*)(b1 + TF.DOffset), *(ushort*)(b2 + TF.DOffset), *(ushort*)(b3 + TF.DOffset),
                    *(ushort*)(b0 + TF.DMinOffset), *(ushort*)(b1 + TF.DMinOffset), *(ushort*)(b2 + TF.DMinOffset), *(ushort*)(b3 + TF.DMinOffset));
            Vector256<float> scales = HalfScale.ToSingle(halves);
            Vector128<float> dx = scales.GetLower();  // (4)
            Vector128<float> dmx = scales.GetUpper(); // (4)

            Activations512(yq, out Vector512<sbyte> y0, out Vector512<sbyte> y1, out Vector512<sbyte> y2, out Vector512<sbyte> y3);
            Offsets o = default;
            if (TF.Offset != 0)
            {
                Vector512<byte> offset = Vector512.Create(TF.Offset);
                o.O0 = Avx512BW.MultiplyAddAdjacent(offset, y0);
                o.O1 = Avx512BW.MultiplyAddAdjacent(offset, y1);
                o.O2 = Avx512BW.MultiplyAddAdjacent(offset, y2);
                o.O3 = Avx512BW.MultiplyAddAdjacent(offset, y3);
            }

            Vector256<int> aux0 = RowLanes(b0, y0, y1, y2, y3, in o, out Vector256<short> mn0);
            Vector256<int> aux1 = RowLanes(b1, y0, y1, y2, y3, in o, out Vector256<short> mn1);
            Vector256<int> aux2 = RowLanes(b2, y0, y1, y2, y3, in o, out Vector256<short> mn2);
            Vector256<int> aux3 = RowLanes(b3, y0, y1, y2, y3, in o, out Vector256<short> mn3);

            Vector128<float> dyv = Vector128.Create(dy);
            if (TF.Form == KQuantForm.TotalWithMins)
            {
                Vector256<short> bs = Vector256.Load(bsums + 16 * i);
                Vector128<int> isum = Sum4(aux0, aux1, aux2, aux3);
                Vector128<int> summs = Sum4(Avx2.MultiplyAddAdjacent(bs, mn0), Avx2.MultiplyAddAdjacent(bs, mn1), Avx2.MultiplyAddAdjacent(bs, mn2), Avx2.MultiplyAddAdjacent(bs, mn3));
                sumf += (dyv * dx) * Vector128.ConvertToSingle(isum) - (dyv * dmx) * Vector128.ConvertToSingle(summs);
                continue;
            }
            Vector128<float> d = dx * dyv;
            sums0 += Vector256.Create(d.GetElement(0)) * Vector256.ConvertToSingle(aux0);
            sums1 += Vector256.Create(d.GetElement(1)) * Vector256.ConvertToSingle(aux1);
            sums2 += Vector256.Create(d.GetElement(2)) * Vector256.ConvertToSingle(aux2);
            sums3 += Vector256.Create(d.GetElement(3)) * Vector256.ConvertToSingle(aux3);
            if (TF.Form == KQuantForm.LanesWithMins)
            {
                Vector256<short> bs = Vector256.Load(bsums + 16 * i);
                Vector128<int> sumi = Sum4(Avx2.MultiplyAddAdjacent(bs, mn0), Avx2.MultiplyAddAdjacent(bs, mn1), Avx2.MultiplyAddAdjacent(bs, mn2), Avx2.MultiplyAddAdjacent(bs, mn3));
                sumf -= (dmx * dyv) * Vector128.ConvertToSingle(sumi);
            }
        }
        if (TF.Form != KQuantForm.TotalWithMins)
        {
            sumf = FourRows.AddInOrder(sumf, sums0, sums1, sums2, sums3); // sumf += sums[0] + ... + sums[7], row by row
        }
        sumf.Store(y);
    }

    /// <summary>The offset term of the signed formats for the four registers of activations (<see cref="Activations512"/>), shared by the rows.</summary>
    private struct Offsets
    {
        public Vector512<short> O0, O1, O2, O3;
    }

    /// <summary>aux[l] of one stored super-block against loaded activations; the mins come out for the min term.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> RowLanes(byte* block, Vector512<sbyte> y0, Vector512<sbyte> y1, Vector512<sbyte> y2, Vector512<sbyte> y3, in Offsets o, out Vector256<short> mins)
    {
        TF.ScaleWords(block, out Vector256<short> sc, out mins);
        TF.Levels512(block, out Vector512<byte> l0, out Vector512<byte> l1, out Vector512<byte> l2, out Vector512<byte> l3);
        ScalePairs(sc, TF.NibblePairs, out Vector512<int> p0, out Vector512<int> p1, out Vector512<int> p2, out Vector512<int> p3);
        Vector512<short> t0 = Avx512BW.MultiplyAddAdjacent(l0, y0);
        Vector512<short> t1 = Avx512BW.MultiplyAddAdjacent(l1, y1);
        Vector512<short> t2 = Avx512BW.MultiplyAddAdjacent(l2, y2);
        Vector512<short> t3 = Avx512BW.MultiplyAddAdjacent(l3, y3);
        if (TF.Offset != 0)
        {
            t0 -= o.O0;
            t1 -= o.O1;
            t2 -= o.O2;
            t3 -= o.O3;
        }
        Vector512<int> acc = Avx512BW.MultiplyAddAdjacent(t0, p0.AsInt16()) + Avx512BW.MultiplyAddAdjacent(t1, p1.AsInt16())
            + Avx512BW.MultiplyAddAdjacent(t2, p2.AsInt16()) + Avx512BW.MultiplyAddAdjacent(t3, p3.AsInt16());
        return acc.GetLower() + acc.GetUpper();
    }

    /// <summary>[Σa, Σb, Σc, Σd] of four vectors of 8 ints (integer sums, exact in any order).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> Sum4(Vector256<int> a, Vector256<int> b, Vector256<int> c, Vector256<int> d)
    {
        Vector256<int> abcd = Avx2.HorizontalAdd(Avx2.HorizontalAdd(a, b), Avx2.HorizontalAdd(c, d));
        return abcd.GetLower() + abcd.GetUpper();
    }

    /// <summary>ggml's float steps, per super-block and at the end, with the lane sums in a register.</summary>
    private struct Accumulator
    {
        private Vector256<float> _sums;
        private float _sumf;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Add(Vector256<int> aux, float dx, float dmx, float dy, Vector256<short> bsums, Vector256<short> mins)
        {
            if (TF.Form == KQuantForm.TotalWithMins)
            {
                int isum = Vector256.Sum(aux);
                int summs = Vector256.Sum(Avx2.MultiplyAddAdjacent(bsums, mins));
                float dall = dy * dx;
                float dmin = dy * dmx;
                _sumf += dall * isum - dmin * summs;
                return;
            }
            _sums += Vector256.Create(dx * dy) * Vector256.ConvertToSingle(aux);
            if (TF.Form == KQuantForm.LanesWithMins)
            {
                int sumi = Vector256.Sum(Avx2.MultiplyAddAdjacent(bsums, mins));
                _sumf -= (dmx * dy) * sumi;
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly float Result()
        {
            if (TF.Form == KQuantForm.TotalWithMins) return _sumf;
            float sumf = _sumf;
            sumf += _sums.GetElement(0);
            sumf += _sums.GetElement(1);
            sumf += _sums.GetElement(2);
            sumf += _sums.GetElement(3);
            sumf += _sums.GetElement(4);
            sumf += _sums.GetElement(5);
            sumf += _sums.GetElement(6);
            sumf += _sums.GetElement(7);
            return sumf;
        }
    }

    /// <summary>The unpacked row · one token, one element at a time.</summary>
    private static float DotScalar(byte* levels, short* scales, short* mins, float* dx, float* dmx, sbyte* q, float* dy, short* bsums, int nsb)
    {
        float sumf = 0;
        float* sums = stackalloc float[8];
        for (int l = 0; l < 8; l++) sums[l] = 0;
        for (int i = 0; i < nsb; i++)
            AccumulateScalar(levels + 256 * i, scales + 16 * i, mins + 16 * i, dx[i], dmx[i], q + 256 * i, dy[i], bsums + 16 * i, sums, ref sumf);
        return FinishScalar(sums, sumf);
    }

    /// <summary>One super-block of <see cref="DotScalar"/>: aux[l] from the interleaved levels, then ggml's float steps.</summary>
    private static void AccumulateScalar(byte* w, short* scales, short* mins, float dx, float dmx, sbyte* y, float dy, short* bsums, float* sums, ref float sumf)
    {
        int offset = TF.Offset;
        int* aux = stackalloc int[8];
        for (int l = 0; l < 8; l++) aux[l] = 0;
        for (int c = 0; c < 8; c++)
        {
            for (int l = 0; l < 8; l++)
            {
                int b = 32 * c + 4 * l;
                int pair0 = w[b] * y[b] + w[b + 1] * y[b + 1] - offset * (y[b] + y[b + 1]);
                int pair1 = w[b + 2] * y[b + 2] + w[b + 3] * y[b + 3] - offset * (y[b + 2] + y[b + 3]);
                aux[l] += pair0 * scales[2 * c] + pair1 * scales[2 * c + 1];
            }
        }
        int minSum = 0;
        for (int j = 0; j < 16; j++) minSum += bsums[j] * mins[j];
        if (TF.Form == KQuantForm.TotalWithMins)
        {
            int isum = 0;
            for (int l = 0; l < 8; l++) isum += aux[l];
            float dall = dy * dx;
            float dmin = dy * dmx;
            sumf += dall * isum - dmin * minSum;
            return;
        }
        float d = dx * dy;
        for (int l = 0; l < 8; l++) sums[l] += d * aux[l];
        if (TF.Form == KQuantForm.LanesWithMins) sumf -= (dmx * dy) * minSum;
    }

    private static float FinishScalar(float* sums, float sumf)
    {
        if (TF.Form == KQuantForm.TotalWithMins) return sumf;
        for (int l = 0; l < 8; l++) sumf += sums[l];
        return sumf;
    }

    /// <summary>
    /// aux[l] of one super-block: four registers of two interleaved chunks each, paired as
    /// <see cref="IKQuantFormat.Levels512"/> pairs them; y: (256), scales: (16).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Lanes512(Vector512<byte> l0, Vector512<byte> l1, Vector512<byte> l2, Vector512<byte> l3, sbyte* y, Vector256<short> scales)
    {
        ScalePairs(scales, TF.NibblePairs, out Vector512<int> p0, out Vector512<int> p1, out Vector512<int> p2, out Vector512<int> p3);
        Activations512(y, out Vector512<sbyte> y0, out Vector512<sbyte> y1, out Vector512<sbyte> y2, out Vector512<sbyte> y3);
        return Lanes512(l0, l1, l2, l3, p0, p1, p2, p3, y0, y1, y2, y3);
    }

    /// <summary>
    /// One super-block's activations y: (256) in four registers, chunks paired as <see cref="IKQuantFormat.Levels512"/>
    /// pairs the levels: (0, 1), (2, 3), ... as stored, or (0, 2), (1, 3), ... (two shuffles per 128 bytes,
    /// shared by every row that meets them).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Activations512(sbyte* y, out Vector512<sbyte> y0, out Vector512<sbyte> y1, out Vector512<sbyte> y2, out Vector512<sbyte> y3)
    {
        Vector512<sbyte> a = Vector512.Load(y), b = Vector512.Load(y + 64), c = Vector512.Load(y + 128), d = Vector512.Load(y + 192);
        if (!TF.NibblePairs)
        {
            (y0, y1, y2, y3) = (a, b, c, d);
            return;
        }
        y0 = Avx512F.Shuffle4x128(a.AsInt64(), b.AsInt64(), 0b01_00_01_00).AsSByte();
        y1 = Avx512F.Shuffle4x128(a.AsInt64(), b.AsInt64(), 0b11_10_11_10).AsSByte();
        y2 = Avx512F.Shuffle4x128(c.AsInt64(), d.AsInt64(), 0b01_00_01_00).AsSByte();
        y3 = Avx512F.Shuffle4x128(c.AsInt64(), d.AsInt64(), 0b11_10_11_10).AsSByte();
    }

    /// <summary>
    /// Int c of the scales is the pair (s_2c, s_2c+1) that chunk c multiplies by; vpermd spreads it over the
    /// chunk, for registers pairing chunks (0, 1), (2, 3), ... or, with <paramref name="nibblePairs"/>, (0, 2), (1, 3), ...
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ScalePairs(Vector256<short> scales, bool nibblePairs, out Vector512<int> p0, out Vector512<int> p1, out Vector512<int> p2, out Vector512<int> p3)
    {
        Vector512<int> pairs = scales.AsInt32().ToVector512Unsafe();
        if (nibblePairs)
        {
            p0 = Avx512F.PermuteVar16x32(pairs, Vector512.Create(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2));
            p1 = Avx512F.PermuteVar16x32(pairs, Vector512.Create(1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3));
            p2 = Avx512F.PermuteVar16x32(pairs, Vector512.Create(4, 4, 4, 4, 4, 4, 4, 4, 6, 6, 6, 6, 6, 6, 6, 6));
            p3 = Avx512F.PermuteVar16x32(pairs, Vector512.Create(5, 5, 5, 5, 5, 5, 5, 5, 7, 7, 7, 7, 7, 7, 7, 7));
            return;
        }
        p0 = Avx512F.PermuteVar16x32(pairs, Vector512.Create(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
        p1 = Avx512F.PermuteVar16x32(pairs, Vector512.Create(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
        p2 = Avx512F.PermuteVar16x32(pairs, Vector512.Create(4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5));
        p3 = Avx512F.PermuteVar16x32(pairs, Vector512.Create(6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7));
    }

    /// <summary>aux[l] of one super-block of unpacked levels w: (256), stored in chunk order, y: (256), scales: (16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Unpacked512(byte* w, sbyte* y, Vector256<short> scales)
    {
        ScalePairs(scales, false, out Vector512<int> p0, out Vector512<int> p1, out Vector512<int> p2, out Vector512<int> p3);
        return Lanes512(Vector512.Load(w), Vector512.Load(w + 64), Vector512.Load(w + 128), Vector512.Load(w + 192), p0, p1, p2, p3, y);
    }

    /// <summary>aux[l] against activations y: (256) in stored chunk order, as the prefill's unpacked levels are stored.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Lanes512(
        Vector512<byte> l0, Vector512<byte> l1, Vector512<byte> l2, Vector512<byte> l3,
        Vector512<int> p0, Vector512<int> p1, Vector512<int> p2, Vector512<int> p3, sbyte* y) =>
        Lanes512(l0, l1, l2, l3, p0, p1, p2, p3, Vector512.Load(y), Vector512.Load(y + 64), Vector512.Load(y + 128), Vector512.Load(y + 192));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Lanes512(
        Vector512<byte> l0, Vector512<byte> l1, Vector512<byte> l2, Vector512<byte> l3,
        Vector512<int> p0, Vector512<int> p1, Vector512<int> p2, Vector512<int> p3,
        Vector512<sbyte> y0, Vector512<sbyte> y1, Vector512<sbyte> y2, Vector512<sbyte> y3)
    {
        Vector512<int> acc = Chunks(l0, y0, p0) + Chunks(l1, y1, p1) + Chunks(l2, y2, p2) + Chunks(l3, y3, p3);
        return acc.GetLower() + acc.GetUpper();
    }

    public override void DotTokens(byte* unpacked, QuantizedActivations a, int t0, int count, QuantKernelPath path, float* y, int ldy)
    {
        if (path != QuantKernelPath.Avx512 || count < 4)
        {
            base.DotTokens(unpacked, a, t0, count, path, y, ldy);
            return;
        }
        int j = 0;
        for (; j + 4 <= count; j += 4) Dot4(unpacked, a, t0 + j, y + (long)j * ldy, ldy);
        for (; j < count; j++) y[(long)j * ldy] = Dot(unpacked, a, t0 + j, path);
    }

    /// <summary>Four tokens against one unpacked row, the levels and scale pairs loaded once for the four. y[j·ldy].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot4(byte* unpacked, QuantizedActivations a, int t0, float* y, int ldy)
    {
        int k = a.K, nsb = a.Blocks;
        short* scales = ScaleWords(unpacked, k);
        short* mins = MinWords(unpacked, k);
        float* dx = Scales(unpacked, k);
        float* dmx = MinScales(unpacked, k);
        sbyte* q0 = a.Quants + (long)t0 * k;
        float* dy = a.Scales + t0 * nsb;
        short* bsums = a.GroupSums + 16 * t0 * nsb;
        var acc0 = new Accumulator();
        var acc1 = new Accumulator();
        var acc2 = new Accumulator();
        var acc3 = new Accumulator();
        for (int i = 0; i < nsb; i++)
        {
            byte* w = unpacked + 256 * i;
            Vector512<byte> l01 = Vector512.Load(w), l23 = Vector512.Load(w + 64), l45 = Vector512.Load(w + 128), l67 = Vector512.Load(w + 192);
            ScalePairs(Vector256.Load(scales + 16 * i), false, out Vector512<int> p01, out Vector512<int> p23, out Vector512<int> p45, out Vector512<int> p67);
            Vector256<short> mn = Vector256.Load(mins + 16 * i);
            sbyte* yq = q0 + 256 * i;
            acc0.Add(Lanes512(l01, l23, l45, l67, p01, p23, p45, p67, yq), dx[i], dmx[i], dy[i], Vector256.Load(bsums + 16 * i), mn);
            acc1.Add(Lanes512(l01, l23, l45, l67, p01, p23, p45, p67, yq + k), dx[i], dmx[i], dy[nsb + i], Vector256.Load(bsums + 16 * (nsb + i)), mn);
            acc2.Add(Lanes512(l01, l23, l45, l67, p01, p23, p45, p67, yq + 2 * k), dx[i], dmx[i], dy[2 * nsb + i], Vector256.Load(bsums + 16 * (2 * nsb + i)), mn);
            acc3.Add(Lanes512(l01, l23, l45, l67, p01, p23, p45, p67, yq + 3 * k), dx[i], dmx[i], dy[3 * nsb + i], Vector256.Load(bsums + 16 * (3 * nsb + i)), mn);
        }
        y[0] = acc0.Result();
        y[ldy] = acc1.Result();
        y[2L * ldy] = acc2.Result();
        y[3L * ldy] = acc3.Result();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Chunks(Vector512<byte> levels, Vector512<sbyte> y, Vector512<int> pairs)
    {
        Vector512<short> t = Avx512BW.MultiplyAddAdjacent(levels, y);
        if (TF.Offset != 0) t -= Avx512BW.MultiplyAddAdjacent(Vector512.Create(TF.Offset), y);
        return Avx512BW.MultiplyAddAdjacent(t, pairs.AsInt16());
    }

    /// <summary>aux[l] of one super-block with AVX2. w: (256) interleaved levels, y: (256), scales: (16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Lanes256(byte* w, sbyte* y, Vector256<short> scales, bool vnni)
    {
        Vector256<int> acc = Vector256<int>.Zero;
        Vector256<int> pairs = scales.AsInt32();
        for (int c = 0; c < 8; c++)
        {
            Vector256<sbyte> yv = Vector256.Load(y + 32 * c);
            Vector256<short> t = Avx2.MultiplyAddAdjacent(Vector256.Load(w + 32 * c), yv);
            if (TF.Offset != 0) t -= Avx2.MultiplyAddAdjacent(Vector256.Create(TF.Offset), yv);
            Vector256<short> s = Avx2.PermuteVar8x32(pairs, Vector256.Create(c)).AsInt16();
            acc = vnni ? AvxVnni.MultiplyWideningAndAdd(acc, t, s) : acc + Avx2.MultiplyAddAdjacent(t, s);
        }
        return acc;
    }
}
