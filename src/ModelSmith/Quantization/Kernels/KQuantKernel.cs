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

    /// <summary>One super-block's levels (with the offset) in natural order, scalar. levels: (256).</summary>
    static abstract void UnpackLevels(byte* block, byte* levels);

    /// <summary>
    /// One super-block's levels straight into the interleaved order of <see cref="QuantizedActivations.Interleave"/>
    /// with AVX-512 VBMI (every K-quant stores element 32c + l of a run of 32 at byte l of some 32-byte
    /// array, so reordering the packed bytes reorders the levels). levels: (256).
    /// </summary>
    static abstract void UnpackLevels512(byte* block, byte* levels);

    /// <summary><see cref="UnpackLevels512"/> with AVX2.</summary>
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
/// 32 elements give the eight lanes in order, 64 in a 512-bit register give two sets to fold.</para>
/// <para><b>Signed levels</b> (Q3_K, Q6_K) are unpacked with their offset (level + 4, level + 32) to be
/// unsigned for pmaddubsw; offset·(q_a + q_b) per pair is subtracted in 16 bits before the scales.
/// No intermediate saturates: |pair| ≤ 2·63·127, |difference| ≤ 32·254.</para>
/// <para><b>Unpacked row</b>: levels (K bytes, interleaved), then the scale pairs pmaddwd reads (one int16
/// per level pair: K bytes), then per super-block the 16 min words, d and dmin.</para>
/// </remarks>
internal sealed unsafe class KQuantKernel<TF> : QuantKernel where TF : struct, IKQuantFormat
{
    public static readonly KQuantKernel<TF> Instance = new();

    public override GgmlType Type => TF.Type;

    public override GgmlType ActivationType => GgmlType.Q8_K;

    public override int BlockSize => 256;

    public override int UnpackedRowBytes(int k) => 2 * Align64(k) + Align64(k / 256 * 32) + 2 * Align64(k / 256 * 4);

    private static short* ScalePairs(byte* unpacked, int k) => (short*)(unpacked + Align64(k));

    private static short* Mins(byte* unpacked, int k) => (short*)(unpacked + 2 * Align64(k));

    private static float* Scales(byte* unpacked, int k) => (float*)(unpacked + 2 * Align64(k) + Align64(k / 256 * 32));

    private static float* MinScales(byte* unpacked, int k) => (float*)(unpacked + 2 * Align64(k) + Align64(k / 256 * 32) + Align64(k / 256 * 4));

    public override void Unpack(byte* row, int k, byte* dst, QuantKernelPath path)
    {
        int nsb = k / 256;
        short* pairs = ScalePairs(dst, k);
        short* mins = Mins(dst, k);
        float* d = Scales(dst, k);
        float* dmin = MinScales(dst, k);
        byte* natural = stackalloc byte[256];
        short* scales = stackalloc short[16];
        ReadOnlySpan<byte> order = QuantizedActivations.Interleave;
        for (int i = 0; i < nsb; i++)
        {
            byte* block = row + (long)i * TF.TypeSize;
            byte* levels = dst + 256 * i;
            short* p = pairs + 128 * i;
            TF.UnpackScales(block, scales, mins + 16 * i, out d[i], out dmin[i]);
            if (path == QuantKernelPath.Scalar)
            {
                TF.UnpackLevels(block, natural);
                for (int c = 0; c < 256; c += 32)
                {
                    for (int j = 0; j < 32; j++) levels[c + j] = natural[c + order[j]];
                }
                // Chunk c of 32 levels: 8 pairs from group 2c, 8 from group 2c + 1, alternating.
                for (int c = 0; c < 8; c++)
                {
                    for (int l = 0; l < 8; l++)
                    {
                        p[16 * c + 2 * l] = scales[2 * c];
                        p[16 * c + 2 * l + 1] = scales[2 * c + 1];
                    }
                }
                continue;
            }
            if (path == QuantKernelPath.Avx512) TF.UnpackLevels512(block, levels);
            else TF.UnpackLevels256(block, levels);
            // The pair (s_2c, s_2c+1) is one 32-bit value: broadcast it over the chunk's 16 words.
            for (int c = 0; c < 8; c++) Vector256.Create(((int*)scales)[c]).Store((int*)(p + 16 * c));
        }
    }

    public override float Dot(byte* unpacked, QuantizedActivations a, int token, QuantKernelPath path)
    {
        int k = a.K, nsb = a.Blocks;
        sbyte* q = a.Quants + (long)token * k;
        float* dy = a.Scales + token * nsb;
        short* bsums = a.GroupSums + 16 * token * nsb;
        short* pairs = ScalePairs(unpacked, k);
        short* mins = Mins(unpacked, k);
        float* dx = Scales(unpacked, k);
        float* dmx = MinScales(unpacked, k);
        int* aux = stackalloc int[8];
        float* sums = stackalloc float[8];
        for (int l = 0; l < 8; l++) sums[l] = 0;
        float sumf = 0;
        for (int i = 0; i < nsb; i++)
        {
            byte* w = unpacked + 256 * i;
            sbyte* y = q + 256 * i;
            short* s = pairs + 128 * i;
            switch (path)
            {
                case QuantKernelPath.Avx512: Lanes512(w, y, s).Store(aux); break;
                case QuantKernelPath.Avx2: Lanes256(w, y, s, vnni: false).Store(aux); break;
                case QuantKernelPath.Avx2Vnni: Lanes256(w, y, s, vnni: true).Store(aux); break;
                default: LanesScalar(w, y, s, aux); break;
            }
            if (TF.Form == KQuantForm.TotalWithMins)
            {
                int isum = 0, summs = 0;
                for (int l = 0; l < 8; l++) isum += aux[l];
                for (int j = 0; j < 16; j++) summs += bsums[16 * i + j] * mins[16 * i + j];
                float dall = dy[i] * dx[i];
                float dmin = dy[i] * dmx[i];
                sumf += dall * isum - dmin * summs;
                continue;
            }
            float d = dx[i] * dy[i];
            for (int l = 0; l < 8; l++) sums[l] += d * aux[l];
            if (TF.Form == KQuantForm.LanesWithMins)
            {
                int sumi = 0;
                for (int j = 0; j < 16; j++) sumi += bsums[16 * i + j] * mins[16 * i + j];
                float dmin = dmx[i] * dy[i];
                sumf -= dmin * sumi;
            }
        }
        if (TF.Form != KQuantForm.TotalWithMins)
        {
            for (int l = 0; l < 8; l++) sumf += sums[l];
        }
        return sumf;
    }

    /// <summary>aux[l] for one super-block, one element at a time. w: (256) interleaved levels, y: (256), s: (128) scale pairs.</summary>
    private static void LanesScalar(byte* w, sbyte* y, short* s, int* aux)
    {
        int offset = TF.Offset;
        for (int l = 0; l < 8; l++) aux[l] = 0;
        for (int c = 0; c < 8; c++)
        {
            for (int l = 0; l < 8; l++)
            {
                int b = 32 * c + 4 * l;
                int pair0 = w[b] * y[b] + w[b + 1] * y[b + 1] - offset * (y[b] + y[b + 1]);
                int pair1 = w[b + 2] * y[b + 2] + w[b + 3] * y[b + 3] - offset * (y[b + 2] + y[b + 3]);
                aux[l] += pair0 * s[16 * c + 2 * l] + pair1 * s[16 * c + 2 * l + 1];
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Lanes512(byte* w, sbyte* y, short* s)
    {
        Vector512<int> acc = Vector512<int>.Zero;
        for (int p = 0; p < 4; p++)
        {
            Vector512<sbyte> yv = Vector512.Load(y + 64 * p);
            Vector512<short> t = Avx512BW.MultiplyAddAdjacent(Vector512.Load(w + 64 * p), yv);
            if (TF.Offset != 0) t -= Avx512BW.MultiplyAddAdjacent(Vector512.Create(TF.Offset), yv);
            acc += Avx512BW.MultiplyAddAdjacent(t, Vector512.Load(s + 32 * p));
        }
        return acc.GetLower() + acc.GetUpper();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Lanes256(byte* w, sbyte* y, short* s, bool vnni)
    {
        Vector256<int> acc = Vector256<int>.Zero;
        for (int c = 0; c < 8; c++)
        {
            Vector256<sbyte> yv = Vector256.Load(y + 32 * c);
            Vector256<short> t = Avx2.MultiplyAddAdjacent(Vector256.Load(w + 32 * c), yv);
            if (TF.Offset != 0) t -= Avx2.MultiplyAddAdjacent(Vector256.Create(TF.Offset), yv);
            acc = vnni
                ? AvxVnni.MultiplyWideningAndAdd(acc, t, Vector256.Load(s + 16 * c))
                : acc + Avx2.MultiplyAddAdjacent(t, Vector256.Load(s + 16 * c));
        }
        return acc;
    }
}
