using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ModelSmith.Quantization.Kernels;

/// <summary>Scale unpacking shared by the K-quant formats.</summary>
internal static unsafe class KScales
{
    /// <summary>
    /// The 8 six-bit scales and mins packed in 12 bytes (get_scale_min_k4), each written twice: once per
    /// 16-element group of its 32-element sub-block. packed: (12), scales and mins: (16).
    /// </summary>
    public static void ScaleMinK4(byte* packed, short* scales, short* mins)
    {
        ScaleMinK4(packed, out ulong sc, out ulong mn);
        for (int j = 0; j < 8; j++)
        {
            scales[2 * j] = scales[2 * j + 1] = (short)(byte)(sc >> (8 * j));
            mins[2 * j] = mins[2 * j + 1] = (short)(byte)(mn >> (8 * j));
        }
    }

    /// <summary>
    /// The 8 scales and 8 mins of Q4_K/Q5_K as bytes of two 64-bit words, with ggml's masks (bytes 0..3
    /// hold scales 0..3 and bytes 4..7 mins 0..3 in their low 6 bits; bytes 8..11 the low nibbles of
    /// scales/mins 4..7, whose top 2 bits sit in the spare bits 6-7 of bytes 0..7). packed: (12).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ScaleMinK4(byte* packed, out ulong scales, out ulong mins)
    {
        const uint kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
        uint u0 = Unsafe.ReadUnaligned<uint>(packed);
        uint u1 = Unsafe.ReadUnaligned<uint>(packed + 4);
        uint u2 = Unsafe.ReadUnaligned<uint>(packed + 8);
        uint s0 = u0 & kmask1;
        uint s1 = (u2 & kmask2) | (((u0 >> 6) & kmask3) << 4);
        uint m0 = u1 & kmask1;
        uint m1 = ((u2 >> 4) & kmask2) | (((u1 >> 6) & kmask3) << 4);
        scales = s0 | ((ulong)s1 << 32);
        mins = m0 | ((ulong)m1 << 32);
    }

    /// <summary>
    /// Q3_K's 16 six-bit scales (not yet offset by −32) as bytes: low nibbles of scales 0..7 in the low
    /// nibbles of bytes 0..7, of scales 8..15 in their high nibbles, top 2 bits of scale j in bits
    /// 2·(j / 4) of byte 8 + j % 4. packed: (12), scales: (16).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> Q3Scales(byte* packed)
    {
        const uint kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
        uint a0 = Unsafe.ReadUnaligned<uint>(packed);
        uint a1 = Unsafe.ReadUnaligned<uint>(packed + 4);
        uint tmp = Unsafe.ReadUnaligned<uint>(packed + 8);
        return Vector128.Create(
            (a0 & kmask2) | ((tmp & kmask1) << 4),
            (a1 & kmask2) | (((tmp >> 2) & kmask1) << 4),
            ((a0 >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4),
            ((a1 >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4)).AsByte();
    }

    /// <summary>Eight bytes b0..b7 as the 16 words b0, b0, b1, b1, ..., b7, b7 (one per 16-element group).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<short> Twice(ulong eight)
    {
        Vector128<byte> b = Vector128.CreateScalarUnsafe(eight).AsByte();
        return Avx2.ConvertToVector256Int16(Sse2.UnpackLow(b, b));
    }
}
