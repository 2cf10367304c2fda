using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using ModelSmith.Formats;
using ModelSmith.Tensors;

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
        d = RowConvert.HalfToSingle(*(ushort*)block);
        dmin = RowConvert.HalfToSingle(*(ushort*)(block + 2));
        KScales.ScaleMinK4(block + 4, scales, mins);
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

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void UnpackLevels512(byte* block, byte* levels)
    {
        Vector512<byte> mask = Vector512.Create((byte)0x0F);
        for (int h = 0; h < 2; h++)
        {
            Vector512<byte> v = InterleaveBytes.Halves(Vector512.Load(block + 16 + 64 * h));
            Vector512<byte> low = v & mask;
            Vector512<byte> high = Vector512.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & mask;
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
        for (int j = 0; j < 4; j++)
        {
            Vector256<byte> v = InterleaveBytes.One(Vector256.Load(block + 16 + 32 * j));
            (v & mask).Store(levels + 64 * j);
            (Vector256.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & mask).Store(levels + 64 * j + 32);
        }
    }
}
