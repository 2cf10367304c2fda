using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using ModelSmith.Formats;
using ModelSmith.Tensors;

namespace ModelSmith.Quantization.Kernels;

/// <summary>
/// Q6_K against Q8_K (ggml_vec_dot_q6_K_q8_K): levels are the stored 6-bit l + 32 (low nibble from ql,
/// two high bits from qh), int8 scale per 16 elements. In each half of 128 (ql + 64n, qh + 32n), chunk
/// 4n reads ql[l] low and qh bits 0-1, chunk 4n+1 ql[l+32] low and bits 2-3, chunk 4n+2 ql[l] high and
/// bits 4-5, chunk 4n+3 ql[l+32] high and bits 6-7.
/// </summary>
internal readonly unsafe struct Q6_KFormat : IKQuantFormat
{
    public static GgmlType Type => GgmlType.Q6_K;

    public static int TypeSize => 210;

    public static byte Offset => 32;

    public static KQuantForm Form => KQuantForm.Lanes;

    public static void UnpackScales(byte* block, short* scales, short* mins, out float d, out float dmin)
    {
        d = RowConvert.HalfToSingle(*(ushort*)(block + 208));
        dmin = 0f;
        sbyte* sc = (sbyte*)(block + 192);
        for (int j = 0; j < 16; j++)
        {
            scales[j] = sc[j];
            mins[j] = 0;
        }
    }

    public static void UnpackLevels(byte* block, byte* levels)
    {
        for (int n = 0; n < 2; n++)
        {
            byte* ql = block + 64 * n;
            byte* qh = block + 128 + 32 * n;
            byte* o = levels + 128 * n;
            for (int l = 0; l < 32; l++)
            {
                o[l] = (byte)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4));
                o[l + 32] = (byte)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4));
                o[l + 64] = (byte)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
                o[l + 96] = (byte)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void UnpackLevels512(byte* block, byte* levels)
    {
        Vector512<byte> mask = Vector512.Create((byte)0x0F);
        Vector512<byte> bits45 = Vector512.Create((byte)0x30);
        // qh bits (0-1 | 2-3) moved to bits 4-5 for the low nibbles, (4-5 | 6-7) for the high: word shifts
        // whose spill across the byte boundary the 0x30 mask removes.
        Vector512<ushort> lowShift = Vector512.Create(Vector256.Create((ushort)4), Vector256.Create((ushort)2));
        Vector512<ushort> highShift = Vector512.Create(Vector256.Create((ushort)0), Vector256.Create((ushort)2));
        for (int n = 0; n < 2; n++)
        {
            Vector512<byte> ql = InterleaveBytes.Halves(Vector512.Load(block + 64 * n));
            Vector512<ushort> qh = InterleaveBytes.Twice(Vector256.Load(block + 128 + 32 * n)).AsUInt16();
            Vector512<byte> low = (ql & mask) | (Avx512BW.ShiftLeftLogicalVariable(qh, lowShift).AsByte() & bits45);
            Vector512<byte> high = (Vector512.ShiftRightLogical(ql.AsUInt16(), 4).AsByte() & mask) | (Avx512BW.ShiftRightLogicalVariable(qh, highShift).AsByte() & bits45);
            low.Store(levels + 128 * n);
            high.Store(levels + 128 * n + 64);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void UnpackLevels256(byte* block, byte* levels)
    {
        Vector256<byte> mask = Vector256.Create((byte)0x0F);
        Vector256<byte> bits45 = Vector256.Create((byte)0x30);
        for (int n = 0; n < 2; n++)
        {
            Vector256<byte> a = InterleaveBytes.One(Vector256.Load(block + 64 * n));
            Vector256<byte> b = InterleaveBytes.One(Vector256.Load(block + 64 * n + 32));
            Vector256<ushort> qh = InterleaveBytes.One(Vector256.Load(block + 128 + 32 * n)).AsUInt16();
            byte* o = levels + 128 * n;
            ((a & mask) | ((qh << 4).AsByte() & bits45)).Store(o);
            ((b & mask) | ((qh << 2).AsByte() & bits45)).Store(o + 32);
            ((Vector256.ShiftRightLogical(a.AsUInt16(), 4).AsByte() & mask) | (qh.AsByte() & bits45)).Store(o + 64);
            ((Vector256.ShiftRightLogical(b.AsUInt16(), 4).AsByte() & mask) | ((qh >> 2).AsByte() & bits45)).Store(o + 96);
        }
    }
}
