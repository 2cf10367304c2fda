using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using ModelSmith.Formats;

namespace ModelSmith.Quantization.Kernels;

/// <summary>
/// Q4_K against Q8_K (ggml_vec_dot_q4_K_q8_K): levels are the nibbles (qs at byte 16: each 32 bytes hold
/// chunk 2j in the low nibbles and chunk 2j + 1 in the high), 6-bit scale and min per 32 elements.
/// </summary>
internal readonly unsafe struct Q4_KFormat : IKQuantFormat
{
    public static GgmlType Type => GgmlType.Q4_K;

    public static int TypeSize => 144;

    public static byte Offset => 0;

    public static KQuantForm Form => KQuantForm.LanesWithMins;

    public static void UnpackScales(byte* block, short* scales, short* mins, out float d, out float dmin)
    {
        d = HalfScale.ToSingle(*(ushort*)block);
        dmin = HalfScale.ToSingle(*(ushort*)(block + 2));
        KScales.ScaleMinK4(block + 4, scales, mins);
    }

    public static int DOffset => 0;

    public static int DMinOffset => 2;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ScaleWords(byte* block, out Vector256<short> scales, out Vector256<short> mins)
    {
        KScales.ScaleMinK4(block + 4, out ulong sc, out ulong mn);
        scales = KScales.Twice(sc);
        mins = KScales.Twice(mn);
    }

    public static void UnpackLevels(byte* block, byte* levels)
    {
        byte* qs = block + 16;
        for (int j = 0; j < 4; j++)
        {
            for (int l = 0; l < 32; l++)
            {
                levels[64 * j + l] = (byte)(qs[32 * j + l] & 0xF);
                levels[64 * j + 32 + l] = (byte)(qs[32 * j + l] >> 4);
            }
        }
    }

    public static bool NibblePairs => true;

    /// <summary>Chunks (0, 2), (1, 3), (4, 6), (5, 7): the low and the high nibbles of bytes 16..79, then 80..143.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Levels512(byte* block, out Vector512<byte> l0, out Vector512<byte> l1, out Vector512<byte> l2, out Vector512<byte> l3)
    {
        Nibbles(block + 16, out l0, out l1);
        Nibbles(block + 80, out l2, out l3);
    }

    // 64 packed bytes (chunks c..c+3): the low nibbles hold chunks c | c+2, the high nibbles c+1 | c+3.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Nibbles(byte* qs, out Vector512<byte> low, out Vector512<byte> high)
    {
        Vector512<byte> mask = Vector512.Create((byte)0x0F);
        Vector512<byte> v = InterleaveBytes.Halves(Vector512.Load(qs));
        low = v & mask;
        high = Vector512.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & mask;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void UnpackLevels256(byte* block, byte* levels)
    {
        Vector256<byte> mask = Vector256.Create((byte)0x0F);
        for (int j = 0; j < 4; j++)
        {
            Vector256<byte> v = InterleaveBytes.One(Vector256.Load(block + 16 + 32 * j));
            (v & mask).Store(levels + 64 * j);
            (Vector256.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & mask).Store(levels + 64 * j + 32);
        }
    }
}
