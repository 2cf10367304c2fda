using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ModelSmith.Quantization.Kernels;

/// <summary>
/// The reorder of <see cref="QuantizedActivations.Interleave"/> applied to packed K-quant bytes: in each
/// run of 32, byte 4l + t takes byte 8t + l.
/// </summary>
internal static class InterleaveBytes
{
    /// <summary>Both 32-byte halves of <paramref name="v"/> reordered (one vpermb).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<byte> Halves(Vector512<byte> v) => Avx512Vbmi.PermuteVar64x8(v, Vector512.Create(
        (byte)0, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27, 4, 12, 20, 28, 5, 13, 21, 29, 6, 14, 22, 30, 7, 15, 23, 31,
        32, 40, 48, 56, 33, 41, 49, 57, 34, 42, 50, 58, 35, 43, 51, 59, 36, 44, 52, 60, 37, 45, 53, 61, 38, 46, 54, 62, 39, 47, 55, 63));

    /// <summary><paramref name="v"/> reordered into both halves of a 512-bit register.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<byte> Twice(Vector256<byte> v) => Avx512Vbmi.PermuteVar64x8(v.ToVector512Unsafe(), Vector512.Create(
        (byte)0, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27, 4, 12, 20, 28, 5, 13, 21, 29, 6, 14, 22, 30, 7, 15, 23, 31,
        0, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27, 4, 12, 20, 28, 5, 13, 21, 29, 6, 14, 22, 30, 7, 15, 23, 31));

    /// <summary>
    /// <paramref name="v"/> reordered with AVX2. Every output lane takes bytes from both input lanes
    /// (t = 0, 1 from the low 16, t = 2, 3 from the high 16): each input half is broadcast to both lanes and
    /// shuffled, with the other half's positions zeroed, and the two are ORed.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> One(Vector256<byte> v)
    {
        Vector256<byte> low = Avx2.Permute4x64(v.AsUInt64(), 0b01_00_01_00).AsByte();
        Vector256<byte> high = Avx2.Permute4x64(v.AsUInt64(), 0b11_10_11_10).AsByte();
        Vector256<byte> fromLow = Avx2.Shuffle(low, Vector256.Create(
            (byte)0, 8, 0x80, 0x80, 1, 9, 0x80, 0x80, 2, 10, 0x80, 0x80, 3, 11, 0x80, 0x80,
            4, 12, 0x80, 0x80, 5, 13, 0x80, 0x80, 6, 14, 0x80, 0x80, 7, 15, 0x80, 0x80));
        Vector256<byte> fromHigh = Avx2.Shuffle(high, Vector256.Create(
            (byte)0x80, 0x80, 0, 8, 0x80, 0x80, 1, 9, 0x80, 0x80, 2, 10, 0x80, 0x80, 3, 11,
            0x80, 0x80, 4, 12, 0x80, 0x80, 5, 13, 0x80, 0x80, 6, 14, 0x80, 0x80, 7, 15));
        return fromLow | fromHigh;
    }
}
