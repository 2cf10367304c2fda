using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using ModelSmith.Formats;
using ModelSmith.Tensors;

namespace ModelSmith.Quantization.Kernels;

/// <summary>
/// Q2_K against Q8_K (ggml_vec_dot_q2_K_q8_K): levels are the 2-bit l (qs at byte 16: in each half n of
/// 128, chunk 4n + s reads bits 2s..2s+1 of qs[32n + l]), a 4-bit scale and min per 16 elements.
/// </summary>
internal readonly unsafe struct Q2_KFormat : IKQuantFormat
{
    public static GgmlType Type => GgmlType.Q2_K;

    public static int TypeSize => 84;

    public static byte Offset => 0;

    public static KQuantForm Form => KQuantForm.TotalWithMins;

    public static void UnpackScales(byte* block, short* scales, short* mins, out float d, out float dmin)
    {
        d = RowConvert.HalfToSingle(*(ushort*)(block + 80));
        dmin = RowConvert.HalfToSingle(*(ushort*)(block + 82));
        for (int j = 0; j < 16; j++)
        {
            scales[j] = (short)(block[j] & 0xF);
            mins[j] = (short)(block[j] >> 4);
        }
    }

    public static void UnpackLevels(byte* block, byte* levels)
    {
        for (int n = 0; n < 2; n++)
        {
            byte* qs = block + 16 + 32 * n;
            for (int s = 0; s < 4; s++)
            {
                for (int l = 0; l < 32; l++) levels[128 * n + 32 * s + l] = (byte)((qs[l] >> (2 * s)) & 3);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void UnpackLevels512(byte* block, byte* levels)
    {
        Vector512<byte> three = Vector512.Create((byte)3);
        Vector512<byte> qs = InterleaveBytes.Halves(Vector512.Load(block + 16));
        for (int s = 0; s < 4; s++)
        {
            Vector512<byte> v = Vector512.ShiftRightLogical(qs.AsUInt16(), 2 * s).AsByte() & three;
            v.GetLower().Store(levels + 32 * s);
            v.GetUpper().Store(levels + 128 + 32 * s);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void UnpackLevels256(byte* block, byte* levels)
    {
        Vector256<byte> three = Vector256.Create((byte)3);
        for (int n = 0; n < 2; n++)
        {
            Vector256<byte> qs = InterleaveBytes.One(Vector256.Load(block + 16 + 32 * n));
            for (int s = 0; s < 4; s++) (Vector256.ShiftRightLogical(qs.AsUInt16(), 2 * s).AsByte() & three).Store(levels + 128 * n + 32 * s);
        }
    }
}
