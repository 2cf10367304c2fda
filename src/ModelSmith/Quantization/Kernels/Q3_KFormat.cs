using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using ModelSmith.Formats;

namespace ModelSmith.Quantization.Kernels;

/// <summary>
/// Q3_K against Q8_K (ggml_vec_dot_q3_K_q8_K): levels are l + 4 = the two low bits (qs at byte 32: in each
/// half n of 128, chunk 4n + s reads bits 2s..2s+1 of qs[32n + l]) plus 4 when bit 4n + s of hmask[l] is
/// set; 6-bit scales minus 32 per 16 elements.
/// </summary>
internal readonly unsafe struct Q3_KFormat : IKQuantFormat
{
    public static GgmlType Type => GgmlType.Q3_K;

    public static int TypeSize => 110;

    public static byte Offset => 4;

    public static KQuantForm Form => KQuantForm.Lanes;

    public static void UnpackScales(byte* block, short* scales, short* mins, out float d, out float dmin)
    {
        d = HalfScale.ToSingle(*(ushort*)(block + 108));
        dmin = 0f;
        byte* packed = block + 96;
        for (int j = 0; j < 16; j++)
        {
            int low = j < 8 ? packed[j] & 0xF : packed[j - 8] >> 4;
            int high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
            scales[j] = (short)((low | (high << 4)) - 32);
            mins[j] = 0;
        }
    }

    public static bool NibblePairs => false;

    public static int DOffset => 108;

    public static int DMinOffset => -1;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ScaleWords(byte* block, out Vector256<short> scales, out Vector256<short> mins)
    {
        scales = Avx2.ConvertToVector256Int16(KScales.Q3Scales(block + 96)) - Vector256.Create((short)32);
        mins = Vector256<short>.Zero;
    }

    public static void UnpackLevels(byte* block, byte* levels)
    {
        byte* hm = block;
        for (int n = 0; n < 2; n++)
        {
            byte* qs = block + 32 + 32 * n;
            for (int s = 0; s < 4; s++)
            {
                for (int l = 0; l < 32; l++)
                    levels[128 * n + 32 * s + l] = (byte)(((qs[l] >> (2 * s)) & 3) + (((hm[l] >> (4 * n + s)) & 1) << 2));
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Levels512(byte* block, out Vector512<byte> l01, out Vector512<byte> l23, out Vector512<byte> l45, out Vector512<byte> l67)
    {
        Vector512<byte> hm = InterleaveBytes.Twice(Vector256.Load(block));
        Vector512<ushort> q0 = InterleaveBytes.Twice(Vector256.Load(block + 32)).AsUInt16();
        Vector512<ushort> q1 = InterleaveBytes.Twice(Vector256.Load(block + 64)).AsUInt16();
        // Chunks (c, c+1) of half n: 2-bit fields (s, s+1), a different shift per 256-bit half, and hmask bits c, c+1.
        Vector512<ushort> shift01 = Vector512.Create((ushort)0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2);
        Vector512<ushort> shift23 = Vector512.Create((ushort)4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6);
        l01 = Chunks(q0, shift01, hm, Vector512.Create((byte)1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2));
        l23 = Chunks(q0, shift23, hm, Vector512.Create((byte)4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8));
        l45 = Chunks(q1, shift01, hm, Vector512.Create((byte)16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32));
        l67 = Chunks(q1, shift23, hm, Vector512.Create((byte)64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Chunks(Vector512<ushort> qs, Vector512<ushort> shift, Vector512<byte> hm, Vector512<byte> bit) =>
        (Avx512BW.ShiftRightLogicalVariable(qs, shift).AsByte() & Vector512.Create((byte)3)) | (Vector512.Equals(hm & bit, bit) & Vector512.Create((byte)4));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void UnpackLevels256(byte* block, byte* levels)
    {
        Vector256<byte> three = Vector256.Create((byte)3);
        Vector256<byte> four = Vector256.Create((byte)4);
        Vector256<byte> hm = InterleaveBytes.One(Vector256.Load(block));
        for (int n = 0; n < 2; n++)
        {
            Vector256<byte> qs = InterleaveBytes.One(Vector256.Load(block + 32 + 32 * n));
            for (int s = 0; s < 4; s++)
            {
                Vector256<byte> bit = Vector256.Create((byte)(1 << (4 * n + s)));
                ((Vector256.ShiftRightLogical(qs.AsUInt16(), 2 * s).AsByte() & three) | (Vector256.Equals(hm & bit, bit) & four)).Store(levels + 128 * n + 32 * s);
            }
        }
    }
}
