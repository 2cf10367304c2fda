using System.Buffers.Binary;
using ModelSmith.Formats;

namespace ModelSmith.Quantization.Kernels;

/// <summary>
/// The definition our quantized matmul is tested against: llama.cpp's CPU backend for one weight row and
/// one activation row, written out literally on ggml's own block bytes.
/// </summary>
/// <remarks>
/// <para>ggml multiplies a block-quantized weight by first converting the F32 activations to the weight
/// type's <c>vec_dot_type</c> (Q8_0 for Q4_0, Q5_0 and Q8_0; Q8_1 for Q4_1 and Q5_1; Q8_K for the
/// K-quants), then calling <c>ggml_vec_dot_&lt;type&gt;_q8_&lt;x&gt;</c>: integer dot products per block, the
/// block scales applied in float. The activation quantizers here are the ones an x86 build runs
/// (<c>quantize_row_q8_0</c>/<c>q8_1</c> of ggml-cpu/arch/x86/quants.c, which compute the inverse scale
/// as 127/amax and round half to even, and <c>quantize_row_q8_K_ref</c>); the dot products are the
/// portable <c>ggml_vec_dot_*_generic</c> of ggml-cpu/quants.c with their float operations in their order
/// (no fused multiply-add), so a result here is reproducible bit for bit.</para>
/// <para>Nothing here is fast: it exists to define, per type, the exact float every kernel must return.</para>
/// </remarks>
internal static unsafe class VecDotReference
{
    /// <summary>Weight types the quantized matmul multiplies directly.</summary>
    public static bool Supports(GgmlType type) => type is GgmlType.Q8_0 or GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0
        or GgmlType.Q5_1 or GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K;

    /// <summary>ggml's vec_dot_type: the type activations are quantized to before the dot product.</summary>
    public static GgmlType VecDotType(GgmlType type) => type switch
    {
        GgmlType.Q8_0 or GgmlType.Q4_0 or GgmlType.Q5_0 => GgmlType.Q8_0,
        GgmlType.Q4_1 or GgmlType.Q5_1 => GgmlType.Q8_1,
        GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K => GgmlType.Q8_K,
        _ => throw new NotSupportedException($"{type} has no quantized dot product (supported: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K)."),
    };

    /// <summary>x quantized to <paramref name="vecDotType"/> as ggml's bytes. x: (K), K a multiple of the block size.</summary>
    public static byte[] QuantizeActivations(GgmlType vecDotType, ReadOnlySpan<float> x)
    {
        var bytes = new byte[GgmlTypeInfo.ByteCount(vecDotType, x.Length)];
        switch (vecDotType)
        {
            case GgmlType.Q8_0: QuantizeQ8_0(x, bytes); break;
            case GgmlType.Q8_1: QuantizeQ8_1(x, bytes); break;
            case GgmlType.Q8_K: Q8_K.QuantizeRow(x, bytes); break;
            default: throw new NotSupportedException($"{vecDotType} is not an activation type.");
        }
        return bytes;
    }

    /// <summary>
    /// One weight row · one activation row: ggml_vec_dot_&lt;type&gt;_&lt;vec_dot_type&gt;_generic.
    /// w: a row of K elements in <paramref name="type"/>, a: the activations quantized by
    /// <see cref="QuantizeActivations"/> to <see cref="VecDotType"/>.
    /// </summary>
    public static float Dot(GgmlType type, ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int k)
    {
        if (w.Length != GgmlTypeInfo.ByteCount(type, k) || a.Length != GgmlTypeInfo.ByteCount(VecDotType(type), k))
            throw new ArgumentException($"A {type} row of {k} elements and its activations need {GgmlTypeInfo.ByteCount(type, k)} and {GgmlTypeInfo.ByteCount(VecDotType(type), k)} bytes; got {w.Length} and {a.Length}.");
        fixed (byte* x = w)
        fixed (byte* y = a)
        {
            return type switch
            {
                GgmlType.Q4_0 => DotQ4_0(k, x, y),
                GgmlType.Q4_1 => DotQ4_1(k, x, y),
                GgmlType.Q5_0 => DotQ5_0(k, x, y),
                GgmlType.Q5_1 => DotQ5_1(k, x, y),
                GgmlType.Q8_0 => DotQ8_0(k, x, y),
                GgmlType.Q2_K => DotQ2_K(k, x, y),
                GgmlType.Q3_K => DotQ3_K(k, x, y),
                GgmlType.Q4_K => DotQ4_K(k, x, y),
                GgmlType.Q5_K => DotQ5_K(k, x, y),
                GgmlType.Q6_K => DotQ6_K(k, x, y),
                _ => throw new NotSupportedException($"{type} has no quantized dot product."),
            };
        }
    }

    // ---- activation quantizers (x86 quantize_row_q8_0 / q8_1) ----

    /// <summary>
    /// x86 quantize_row_q8_0: amax over the block, d = amax/127 stored as F16, q = round-half-even(x·id)
    /// with id = 127/amax (0 for an all-zero block), saturated to int8 by the packs.
    /// </summary>
    public static void QuantizeQ8_0(ReadOnlySpan<float> x /* (K) */, Span<byte> y /* (K/32·34) */)
    {
        for (int i = 0; i < x.Length / 32; i++)
        {
            ReadOnlySpan<float> xb = x.Slice(32 * i, 32);
            Span<byte> block = y.Slice(34 * i, 34);
            float amax = AbsMax(xb);
            BinaryPrimitives.WriteUInt16LittleEndian(block, QuantMath.FloatToHalfBits(amax / 127f));
            float id = amax != 0f ? 127f / amax : 0f;
            for (int j = 0; j < 32; j++) block[2 + j] = (byte)(sbyte)RoundToInt8(xb[j] * id);
        }
    }

    /// <summary>
    /// x86 quantize_row_q8_1: the quants of <see cref="QuantizeQ8_0"/>, plus s = d·Σq stored as F16 (d the
    /// unrounded amax/127). Block: d (F16), s (F16), qs[32].
    /// </summary>
    public static void QuantizeQ8_1(ReadOnlySpan<float> x /* (K) */, Span<byte> y /* (K/32·36) */)
    {
        for (int i = 0; i < x.Length / 32; i++)
        {
            ReadOnlySpan<float> xb = x.Slice(32 * i, 32);
            Span<byte> block = y.Slice(36 * i, 36);
            float amax = AbsMax(xb);
            float d = amax / 127f;
            float id = amax != 0f ? 127f / amax : 0f;
            int sum = 0;
            for (int j = 0; j < 32; j++)
            {
                int q = RoundToInt8(xb[j] * id);
                sum += q;
                block[4 + j] = (byte)(sbyte)q;
            }
            BinaryPrimitives.WriteUInt16LittleEndian(block, QuantMath.FloatToHalfBits(d));
            BinaryPrimitives.WriteUInt16LittleEndian(block[2..], QuantMath.FloatToHalfBits(d * sum));
        }
    }

    private static float AbsMax(ReadOnlySpan<float> xb)
    {
        float amax = 0f;
        for (int j = 0; j < xb.Length; j++)
        {
            float a = MathF.Abs(xb[j]);
            if (a > amax) amax = a;
        }
        return amax;
    }

    // _mm256_round_ps(v, _MM_ROUND_NEAREST), _mm256_cvtps_epi32 and the saturating packs to int8.
    private static int RoundToInt8(float v) => (int)Math.Clamp(MathF.Round(v, MidpointRounding.ToEven), -128f, 127f);

    private static float H(byte* p) => QuantMath.HalfBitsToFloat(*(ushort*)p);

    // ---- ggml_vec_dot_*_generic ----

    private static float DotQ4_0(int n, byte* x, byte* y)
    {
        int nb = n / 32;
        float sumf = 0;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* xb = x + 18 * ib, yb = y + 34 * ib;
            sbyte* yq = (sbyte*)(yb + 2);
            int sumi0 = 0, sumi1 = 0;
            for (int j = 0; j < 16; j++)
            {
                int v0 = (xb[2 + j] & 0x0F) - 8;
                int v1 = (xb[2 + j] >> 4) - 8;
                sumi0 += v0 * yq[j];
                sumi1 += v1 * yq[j + 16];
            }
            int sumi = sumi0 + sumi1;
            sumf += sumi * H(xb) * H(yb);
        }
        return sumf;
    }

    private static float DotQ4_1(int n, byte* x, byte* y)
    {
        int nb = n / 32;
        float sumf = 0;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* xb = x + 20 * ib, yb = y + 36 * ib;
            sbyte* yq = (sbyte*)(yb + 4);
            int sumi0 = 0, sumi1 = 0;
            for (int j = 0; j < 16; j++)
            {
                int v0 = xb[4 + j] & 0x0F;
                int v1 = xb[4 + j] >> 4;
                sumi0 += v0 * yq[j];
                sumi1 += v1 * yq[j + 16];
            }
            int sumi = sumi0 + sumi1;
            sumf += (H(xb) * H(yb)) * sumi + H(xb + 2) * H(yb + 2);
        }
        return sumf;
    }

    private static float DotQ5_0(int n, byte* x, byte* y)
    {
        int nb = n / 32;
        float sumf = 0;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* xb = x + 22 * ib, yb = y + 34 * ib;
            sbyte* yq = (sbyte*)(yb + 2);
            uint qh = *(uint*)(xb + 2);
            int sumi0 = 0, sumi1 = 0;
            for (int j = 0; j < 16; j++)
            {
                byte xh0 = (byte)(((qh & (1u << j)) >> j) << 4);
                byte xh1 = (byte)((qh & (1u << (j + 16))) >> (j + 12));
                int x0 = (sbyte)(((xb[6 + j] & 0x0F) | xh0) - 16);
                int x1 = (sbyte)(((xb[6 + j] >> 4) | xh1) - 16);
                sumi0 += x0 * yq[j];
                sumi1 += x1 * yq[j + 16];
            }
            int sumi = sumi0 + sumi1;
            sumf += (H(xb) * H(yb)) * sumi;
        }
        return sumf;
    }

    private static float DotQ5_1(int n, byte* x, byte* y)
    {
        int nb = n / 32;
        float sumf = 0;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* xb = x + 24 * ib, yb = y + 36 * ib;
            sbyte* yq = (sbyte*)(yb + 4);
            uint qh = *(uint*)(xb + 4);
            int sumi0 = 0, sumi1 = 0;
            for (int j = 0; j < 16; j++)
            {
                byte xh0 = (byte)((qh >> j << 4) & 0x10);
                byte xh1 = (byte)((qh >> (j + 12)) & 0x10);
                int x0 = (xb[8 + j] & 0xF) | xh0;
                int x1 = (xb[8 + j] >> 4) | xh1;
                sumi0 += x0 * yq[j];
                sumi1 += x1 * yq[j + 16];
            }
            int sumi = sumi0 + sumi1;
            sumf += (H(xb) * H(yb)) * sumi + H(xb + 2) * H(yb + 2);
        }
        return sumf;
    }

    private static float DotQ8_0(int n, byte* x, byte* y)
    {
        int nb = n / 32;
        float sumf = 0;
        for (int ib = 0; ib < nb; ib++)
        {
            byte* xb = x + 34 * ib, yb = y + 34 * ib;
            sbyte* xq = (sbyte*)(xb + 2), yq = (sbyte*)(yb + 2);
            int sumi = 0;
            for (int j = 0; j < 32; j++) sumi += xq[j] * yq[j];
            sumf += sumi * (H(xb) * H(yb));
        }
        return sumf;
    }

    // block_q8_K: d (F32) at 0, qs[256] at 4, bsums[16] (int16) at 260.
    private static float Q8KScale(byte* yb) => *(float*)yb;

    private static sbyte* Q8KQuants(byte* yb) => (sbyte*)(yb + 4);

    private static short* Q8KBsums(byte* yb) => (short*)(yb + 260);

    private static float DotQ2_K(int n, byte* x, byte* y)
    {
        int nb = n / 256;
        float sumf = 0;
        for (int i = 0; i < nb; i++)
        {
            byte* xb = x + 84 * i, yb = y + 292 * i;
            byte* q2 = xb + 16;
            sbyte* q8 = Q8KQuants(yb);
            byte* sc = xb;
            short* bsums = Q8KBsums(yb);
            int summs = 0;
            for (int j = 0; j < 16; j++) summs += bsums[j] * (sc[j] >> 4);
            float dall = Q8KScale(yb) * H(xb + 80);
            float dmin = Q8KScale(yb) * H(xb + 82);
            int isum = 0, isc = 0;
            for (int k = 0; k < 2; k++)
            {
                int shift = 0;
                for (int j = 0; j < 4; j++)
                {
                    int d = sc[isc++] & 0xF;
                    int isuml = 0;
                    for (int l = 0; l < 16; l++) isuml += q8[l] * ((q2[l] >> shift) & 3);
                    isum += d * isuml;
                    d = sc[isc++] & 0xF;
                    isuml = 0;
                    for (int l = 16; l < 32; l++) isuml += q8[l] * ((q2[l] >> shift) & 3);
                    isum += d * isuml;
                    shift += 2;
                    q8 += 32;
                }
                q2 += 32;
            }
            sumf += dall * isum - dmin * summs;
        }
        return sumf;
    }

    private static float DotQ3_K(int n, byte* x, byte* y)
    {
        const uint kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
        int nb = n / 256;
        sbyte* aux8 = stackalloc sbyte[256];
        short* aux16 = stackalloc short[8];
        float* sums = stackalloc float[8];
        int* aux32 = stackalloc int[8];
        uint* auxs = stackalloc uint[4];
        sbyte* scales = (sbyte*)auxs;
        for (int l = 0; l < 8; l++) sums[l] = 0;
        float sumf = 0;
        for (int i = 0; i < nb; i++)
        {
            byte* xb = x + 110 * i, yb = y + 292 * i;
            byte* q3 = xb + 32;
            byte* hm = xb;
            sbyte* q8 = Q8KQuants(yb);
            for (int l = 0; l < 8; l++) aux32[l] = 0;
            sbyte* a = aux8;
            byte m = 1;
            for (int j = 0; j < 256; j += 128)
            {
                for (int shift = 0; shift < 8; shift += 2)
                {
                    for (int l = 0; l < 32; l++) a[l] = (sbyte)((q3[l] >> shift) & 3);
                    for (int l = 0; l < 32; l++) a[l] -= (sbyte)((hm[l] & m) != 0 ? 0 : 4);
                    a += 32;
                    m <<= 1;
                }
                q3 += 32;
            }
            a = aux8;
            Buffer.MemoryCopy(xb + 96, auxs, 12, 12);
            uint tmp = auxs[2];
            auxs[2] = ((auxs[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
            auxs[3] = ((auxs[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
            auxs[0] = (auxs[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
            auxs[1] = (auxs[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
            for (int j = 0; j < 16; j++)
            {
                for (int half = 0; half < 2; half++)
                {
                    for (int l = 0; l < 8; l++) aux16[l] = (short)(q8[l] * a[l]);
                    for (int l = 0; l < 8; l++) aux32[l] += (scales[j] - 32) * aux16[l];
                    q8 += 8;
                    a += 8;
                }
            }
            float d = H(xb + 108) * Q8KScale(yb);
            for (int l = 0; l < 8; l++) sums[l] += d * aux32[l];
        }
        for (int l = 0; l < 8; l++) sumf += sums[l];
        return sumf;
    }

    private static float DotQ4_K(int n, byte* x, byte* y) => DotQ4Q5_K(n, x, y, fiveBit: false);

    private static float DotQ5_K(int n, byte* x, byte* y) => DotQ4Q5_K(n, x, y, fiveBit: true);

    // ggml_vec_dot_q4_K_q8_K_generic and ggml_vec_dot_q5_K_q8_K_generic, which differ only in the fifth bit.
    private static float DotQ4Q5_K(int n, byte* x, byte* y, bool fiveBit)
    {
        const uint kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
        int typeSize = fiveBit ? 176 : 144;
        int nb = n / 256;
        uint* utmp = stackalloc uint[4];
        byte* scales = (byte*)utmp;
        byte* mins = (byte*)(utmp + 2);
        sbyte* aux8 = stackalloc sbyte[256];
        short* aux16 = stackalloc short[8];
        float* sums = stackalloc float[8];
        int* aux32 = stackalloc int[8];
        for (int l = 0; l < 8; l++) sums[l] = 0;
        float sumf = 0;
        for (int i = 0; i < nb; i++)
        {
            byte* xb = x + typeSize * i, yb = y + 292 * i;
            byte* q4 = xb + (fiveBit ? 48 : 16);
            byte* hm = xb + 16;
            sbyte* q8 = Q8KQuants(yb);
            for (int l = 0; l < 8; l++) aux32[l] = 0;
            sbyte* a = aux8;
            byte m = 1;
            for (int j = 0; j < 4; j++)
            {
                for (int l = 0; l < 32; l++) a[l] = (sbyte)(q4[l] & 0xF);
                if (fiveBit)
                {
                    for (int l = 0; l < 32; l++) a[l] += (sbyte)((hm[l] & m) != 0 ? 16 : 0);
                }
                a += 32;
                m <<= 1;
                for (int l = 0; l < 32; l++) a[l] = (sbyte)(q4[l] >> 4);
                if (fiveBit)
                {
                    for (int l = 0; l < 32; l++) a[l] += (sbyte)((hm[l] & m) != 0 ? 16 : 0);
                }
                a += 32;
                m <<= 1;
                q4 += 32;
            }
            Buffer.MemoryCopy(xb + 4, utmp, 12, 12);
            utmp[3] = ((utmp[2] >> 4) & kmask2) | (((utmp[1] >> 6) & kmask3) << 4);
            uint uaux = utmp[1] & kmask1;
            utmp[1] = (utmp[2] & kmask2) | (((utmp[0] >> 6) & kmask3) << 4);
            utmp[2] = uaux;
            utmp[0] &= kmask1;

            short* bsums = Q8KBsums(yb);
            int sumi = 0;
            for (int j = 0; j < 16; j++) sumi += bsums[j] * mins[j / 2];
            a = aux8;
            int isc = 0;
            for (int j = 0; j < 8; j++)
            {
                int scale = scales[isc++];
                for (int quarter = 0; quarter < 4; quarter++)
                {
                    for (int l = 0; l < 8; l++) aux16[l] = (short)(q8[l] * a[l]);
                    for (int l = 0; l < 8; l++) aux32[l] += scale * aux16[l];
                    q8 += 8;
                    a += 8;
                }
            }
            float d = H(xb) * Q8KScale(yb);
            for (int l = 0; l < 8; l++) sums[l] += d * aux32[l];
            float dmin = H(xb + 2) * Q8KScale(yb);
            sumf -= dmin * sumi;
        }
        for (int l = 0; l < 8; l++) sumf += sums[l];
        return sumf;
    }

    private static float DotQ6_K(int n, byte* x, byte* y)
    {
        int nb = n / 256;
        sbyte* aux8 = stackalloc sbyte[256];
        short* aux16 = stackalloc short[8];
        float* sums = stackalloc float[8];
        int* aux32 = stackalloc int[8];
        for (int l = 0; l < 8; l++) sums[l] = 0;
        float sumf = 0;
        for (int i = 0; i < nb; i++)
        {
            byte* xb = x + 210 * i, yb = y + 292 * i;
            byte* q4 = xb;
            byte* qh = xb + 128;
            sbyte* sc = (sbyte*)(xb + 192);
            sbyte* q8 = Q8KQuants(yb);
            for (int l = 0; l < 8; l++) aux32[l] = 0;
            sbyte* a = aux8;
            for (int j = 0; j < 256; j += 128)
            {
                for (int l = 0; l < 32; l++)
                {
                    a[l + 0] = (sbyte)((sbyte)((q4[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
                    a[l + 32] = (sbyte)((sbyte)((q4[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
                    a[l + 64] = (sbyte)((sbyte)((q4[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                    a[l + 96] = (sbyte)((sbyte)((q4[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
                }
                a += 128;
                q4 += 64;
                qh += 32;
            }
            a = aux8;
            int isc = 0;
            for (int j = 0; j < 16; j++)
            {
                int scale = sc[isc++];
                for (int half = 0; half < 2; half++)
                {
                    for (int l = 0; l < 8; l++) aux16[l] = (short)(q8[l] * a[l]);
                    for (int l = 0; l < 8; l++) aux32[l] += scale * aux16[l];
                    q8 += 8;
                    a += 8;
                }
            }
            float d = H(xb + 208) * Q8KScale(yb);
            for (int l = 0; l < 8; l++) sums[l] += d * aux32[l];
        }
        for (int l = 0; l < 8; l++) sumf += sums[l];
        return sumf;
    }
}
