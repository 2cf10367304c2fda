using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using ModelSmith.Formats;

namespace ModelSmith.Quantization.Kernels;

/// <summary>
/// Q5_K against Q8_K (ggml_vec_dot_q5_K_q8_K): Q4_K's nibbles (qs at byte 48) plus bit c of qh[l] (qh at
/// byte 16) as bit 4 of element 32c + l.
/// </summary>
internal readonly unsafe struct Q5_KFormat : IKQuantFormat
{
    public static GgmlType Type => GgmlType.Q5_K;

    public static int TypeSize => 176;

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
        byte* qh = block + 16;
        byte* qs = block + 48;
        for (int j = 0; j < 4; j++)
        {
            for (int l = 0; l < 32; l++)
            {
                levels[64 * j + l] = (byte)((qs[32 * j + l] & 0xF) + (((qh[l] >> (2 * j)) & 1) << 4));
                levels[64 * j + 32 + l] = (byte)((qs[32 * j + l] >> 4) + (((qh[l] >> (2 * j + 1)) & 1) << 4));
            }
        }
    }

    public static bool NibblePairs => true;

    /// <summary>Chunks (0, 2), (1, 3), (4, 6), (5, 7): the low and the high nibbles of bytes 48..111, then 112..175, each with its qh bit.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Levels512(byte* block, out Vector512<byte> l0, out Vector512<byte> l1, out Vector512<byte> l2, out Vector512<byte> l3)
    {
        Vector512<byte> qh = InterleaveBytes.Twice(Vector256.Load(block + 16));
        Nibbles(block + 48, qh, Vector512.Create((byte)1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4), out l0, out l1);
        Nibbles(block + 112, qh, Vector512.Create((byte)16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64), out l2, out l3);
    }

    // 64 packed bytes (chunks c..c+3): low nibbles c | c+2 (qh bits c | c+2: lowBit), high nibbles
    // c+1 | c+3 (the next bits), each with its qh bit as bit 4.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Nibbles(byte* qs, Vector512<byte> qh, Vector512<byte> lowBit, out Vector512<byte> low, out Vector512<byte> high)
    {
        Vector512<byte> mask = Vector512.Create((byte)0x0F);
        Vector512<byte> sixteen = Vector512.Create((byte)0x10);
        Vector512<byte> v = InterleaveBytes.Halves(Vector512.Load(qs));
        Vector512<byte> highBit = lowBit + lowBit;
        low = (v & mask) | (Vector512.Equals(qh & lowBit, lowBit) & sixteen);
        high = (Vector512.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & mask) | (Vector512.Equals(qh & highBit, highBit) & sixteen);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void UnpackLevels256(byte* block, byte* levels)
    {
        Vector256<byte> mask = Vector256.Create((byte)0x0F);
        Vector256<byte> sixteen = Vector256.Create((byte)0x10);
        Vector256<byte> qh = InterleaveBytes.One(Vector256.Load(block + 16));
        for (int j = 0; j < 4; j++)
        {
            Vector256<byte> v = InterleaveBytes.One(Vector256.Load(block + 48 + 32 * j));
            Vector256<byte> lowBit = Vector256.Create((byte)(1 << (2 * j)));
            Vector256<byte> highBit = lowBit + lowBit;
            ((v & mask) | (Vector256.Equals(qh & lowBit, lowBit) & sixteen)).Store(levels + 64 * j);
            ((Vector256.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & mask) | (Vector256.Equals(qh & highBit, highBit) & sixteen)).Store(levels + 64 * j + 32);
        }
    }
}
