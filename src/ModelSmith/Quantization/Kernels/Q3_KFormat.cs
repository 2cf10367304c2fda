using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using ModelSmith.Formats;
using ModelSmith.Tensors;

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
        d = RowConvert.HalfToSingle(*(ushort*)(block + 108));
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
    public static void UnpackLevels512(byte* block, byte* levels)
    {
        Vector512<byte> three = Vector512.Create((byte)3);
        Vector512<byte> four = Vector512.Create((byte)4);
        Vector512<byte> hm = InterleaveBytes.Twice(Vector256.Load(block));
        Vector512<byte> qs = InterleaveBytes.Halves(Vector512.Load(block + 32));
        for (int s = 0; s < 4; s++)
        {
            // Lower half: chunk s (hmask bit s); upper half: chunk 4 + s (bit 4 + s).
            Vector512<byte> bit = Vector512.Create(Vector256.Create((byte)(1 << s)), Vector256.Create((byte)(1 << (4 + s))));
            Vector512<byte> v = (Vector512.ShiftRightLogical(qs.AsUInt16(), 2 * s).AsByte() & three) | (Vector512.Equals(hm & bit, bit) & four);
            v.GetLower().Store(levels + 32 * s);
            v.GetUpper().Store(levels + 128 + 32 * s);
        }
    }

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
