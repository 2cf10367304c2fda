using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using ModelSmith.Formats;

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
        d = HalfScale.ToSingle(*(ushort*)(block + 208));
        dmin = 0f;
        sbyte* sc = (sbyte*)(block + 192);
        for (int j = 0; j < 16; j++)
        {
            scales[j] = sc[j];
            mins[j] = 0;
        }
    }

    public static bool NibblePairs => false;

    public static int DOffset => 208;

    public static int DMinOffset => -1;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ScaleWords(byte* block, out Vector256<short> scales, out Vector256<short> mins)
    {
        scales = Avx2.ConvertToVector256Int16((sbyte*)(block + 192));
        mins = Vector256<short>.Zero;
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
    public static void Levels512(byte* block, out Vector512<byte> l01, out Vector512<byte> l23, out Vector512<byte> l45, out Vector512<byte> l67)
    {
        Half(block, block + 128, out l01, out l23);
        Half(block + 64, block + 160, out l45, out l67);
    }

    // One half of 128: ql (64 bytes) gives chunks (0, 1) in its low nibbles and (2, 3) in its high ones;
    // the qh bits (0-1 | 2-3) and (4-5 | 6-7) move to bits 4-5 with word shifts whose spill across the
    // byte boundary the 0x30 mask removes.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Half(byte* ql, byte* qh, out Vector512<byte> low, out Vector512<byte> high)
    {
        Vector512<byte> mask = Vector512.Create((byte)0x0F);
        Vector512<byte> bits45 = Vector512.Create((byte)0x30);
        Vector512<byte> v = InterleaveBytes.Halves(Vector512.Load(ql));
        Vector512<ushort> h = InterleaveBytes.Twice(Vector256.Load(qh)).AsUInt16();
        Vector512<ushort> lowShift = Vector512.Create((ushort)4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2);
        Vector512<ushort> highShift = Vector512.Create((ushort)0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2);
        low = (v & mask) | (Avx512BW.ShiftLeftLogicalVariable(h, lowShift).AsByte() & bits45);
        high = (Vector512.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & mask) | (Avx512BW.ShiftRightLogicalVariable(h, highShift).AsByte() & bits45);
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
