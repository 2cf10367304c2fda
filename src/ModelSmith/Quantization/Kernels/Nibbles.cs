using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ModelSmith.Quantization.Kernels;

/// <summary>Bit unpacking shared by the 32-element block formats.</summary>
internal static unsafe class Nibbles
{
    /// <summary>16 packed bytes → 32 levels: byte j's low nibble is level j, its high nibble level j + 16.</summary>
    /// <remarks>
    /// With AVX2 the 16 bytes are loaded into both halves (a broadcast load, no shuffle), the upper half's
    /// dwords shifted right by 4 (each byte then holds its high nibble in its low 4 bits) and both halves
    /// masked: two operations instead of four.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Split(byte* packed)
    {
        if (Avx2.IsSupported)
        {
            Vector256<uint> both = Avx2.BroadcastVector128ToVector256((uint*)packed);
            Vector256<uint> shifted = Avx2.ShiftRightLogicalVariable(both, Vector256.Create(0u, 0, 0, 0, 4, 4, 4, 4));
            return shifted.AsByte() & Vector256.Create((byte)0x0F);
        }
        Vector128<byte> v = Vector128.Load(packed);
        Vector128<byte> mask = Vector128.Create((byte)0x0F);
        return Vector256.Create(v & mask, Vector128.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & mask);
    }

    /// <summary>
    /// Q5_0/Q5_1 levels: the nibbles of <see cref="Split"/> with bit j of <paramref name="qh"/> as bit 4 of
    /// level j. Spreads the 32 bits over 32 bytes with a byte shuffle (byte j takes byte j/8 of qh), an AND
    /// with 1 &lt;&lt; (j mod 8) and a compare.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> FiveBit(uint qh, byte* packed)
    {
        Vector256<byte> nibbles = Split(packed);
        Vector256<byte> spread = Avx2.Shuffle(Vector256.Create(qh).AsByte(), Vector256.Create(
            (byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
        Vector256<byte> bit = Vector256.Create(
            (byte)1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
        Vector256<byte> high = Vector256.Equals(spread & bit, bit) & Vector256.Create((byte)0x10);
        return nibbles | high;
    }

    /// <summary><see cref="FiveBit"/> one byte at a time.</summary>
    public static void FiveBitScalar(uint qh, byte* packed, byte* levels)
    {
        for (int j = 0; j < 16; j++)
        {
            levels[j] = (byte)((uint)(packed[j] & 0x0F) | (((qh >> j) & 1) << 4));
            levels[j + 16] = (byte)((uint)(packed[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
        }
    }
}
