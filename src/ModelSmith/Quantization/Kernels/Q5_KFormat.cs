using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using ModelSmith.Formats;
using ModelSmith.Tensors;

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
        d = RowConvert.HalfToSingle(*(ushort*)block);
        dmin = RowConvert.HalfToSingle(*(ushort*)(block + 2));
        KScales.ScaleMinK4(block + 4, scales, mins);
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

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void UnpackLevels512(byte* block, byte* levels)
    {
        Vector512<byte> mask = Vector512.Create((byte)0x0F);
        Vector512<byte> sixteen = Vector512.Create((byte)0x10);
        Vector512<byte> qh = InterleaveBytes.Twice(Vector256.Load(block + 16));
        for (int h = 0; h < 2; h++)
        {
            Vector512<byte> v = InterleaveBytes.Halves(Vector512.Load(block + 48 + 64 * h));
            // Low nibbles: chunks 4h (lower half) and 4h + 2 (upper); high nibbles: 4h + 1 and 4h + 3.
            Vector512<byte> lowBit = Vector512.Create(Vector256.Create((byte)(1 << (4 * h))), Vector256.Create((byte)(1 << (4 * h + 2))));
            Vector512<byte> highBit = lowBit + lowBit;
            Vector512<byte> low = (v & mask) | (Vector512.Equals(qh & lowBit, lowBit) & sixteen);
            Vector512<byte> high = (Vector512.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & mask) | (Vector512.Equals(qh & highBit, highBit) & sixteen);
            byte* o = levels + 128 * h;
            low.GetLower().Store(o);
            high.GetLower().Store(o + 32);
            low.GetUpper().Store(o + 64);
            high.GetUpper().Store(o + 96);
        }
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
