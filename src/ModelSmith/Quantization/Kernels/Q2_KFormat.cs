using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using ModelSmith.Formats;

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
        d = HalfScale.ToSingle(*(ushort*)(block + 80));
        dmin = HalfScale.ToSingle(*(ushort*)(block + 82));
        for (int j = 0; j < 16; j++)
        {
            scales[j] = (short)(block[j] & 0xF);
            mins[j] = (short)(block[j] >> 4);
        }
    }

    public static bool NibblePairs => false;

    public static int DOffset => 80;

    public static int DMinOffset => 82;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ScaleWords(byte* block, out Vector256<short> scales, out Vector256<short> mins)
    {
        Vector128<byte> v = Vector128.Load(block);
        scales = Avx2.ConvertToVector256Int16(v & Vector128.Create((byte)0x0F));
        mins = Avx2.ConvertToVector256Int16(Vector128.ShiftRightLogical(v, 4));
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
    public static void Levels512(byte* block, out Vector512<byte> l01, out Vector512<byte> l23, out Vector512<byte> l45, out Vector512<byte> l67)
    {
        Vector512<ushort> q0 = InterleaveBytes.Twice(Vector256.Load(block + 16)).AsUInt16();
        Vector512<ushort> q1 = InterleaveBytes.Twice(Vector256.Load(block + 48)).AsUInt16();
        // Fields (0, 1) and (2, 3) of each half: a different shift per 256-bit half.
        Vector512<ushort> shift01 = Vector512.Create((ushort)0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2);
        Vector512<ushort> shift23 = Vector512.Create((ushort)4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6);
        Vector512<byte> three = Vector512.Create((byte)3);
        l01 = Avx512BW.ShiftRightLogicalVariable(q0, shift01).AsByte() & three;
        l23 = Avx512BW.ShiftRightLogicalVariable(q0, shift23).AsByte() & three;
        l45 = Avx512BW.ShiftRightLogicalVariable(q1, shift01).AsByte() & three;
        l67 = Avx512BW.ShiftRightLogicalVariable(q1, shift23).AsByte() & three;
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
