using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ModelSmith.Quantization.Kernels;

/// <summary>
/// What the four-row decode kernels share: turning four rows' vectors of eight float terms into the columns
/// that their running sums (one row per lane) add in turn, and fetching the rows ahead of them.
/// </summary>
internal static unsafe class FourRows
{
    /// <summary>
    /// 4 × 8 → 8 × 4: element i of t0..t3 (one per lane, rows in order) lands in the low half of c_{i % 4}
    /// for i &lt; 4 and in its high half for i ≥ 4. Two of these and a swap of 128-bit halves make an 8 × 8
    /// transpose.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Columns(Vector256<float> t0, Vector256<float> t1, Vector256<float> t2, Vector256<float> t3,
        out Vector256<float> c0, out Vector256<float> c1, out Vector256<float> c2, out Vector256<float> c3)
    {
        Vector256<float> a01 = Avx.UnpackLow(t0, t1), b01 = Avx.UnpackHigh(t0, t1);
        Vector256<float> a23 = Avx.UnpackLow(t2, t3), b23 = Avx.UnpackHigh(t2, t3);
        c0 = Avx.Shuffle(a01, a23, 0x44);
        c1 = Avx.Shuffle(a01, a23, 0xEE);
        c2 = Avx.Shuffle(b01, b23, 0x44);
        c3 = Avx.Shuffle(b01, b23, 0xEE);
    }

    /// <summary>
    /// sums + t[0] + t[1] + ... + t[7], lane by lane and in that order (lane j: row j's running sum, tj its
    /// eight terms): the scalar order of four separate sums, with the rows side by side.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> AddInOrder(Vector128<float> sums, Vector256<float> t0, Vector256<float> t1, Vector256<float> t2, Vector256<float> t3)
    {
        Columns(t0, t1, t2, t3, out Vector256<float> c0, out Vector256<float> c1, out Vector256<float> c2, out Vector256<float> c3);
        sums += c0.GetLower();
        sums += c1.GetLower();
        sums += c2.GetLower();
        sums += c3.GetLower();
        sums += c0.GetUpper();
        sums += c1.GetUpper();
        sums += c2.GetUpper();
        sums += c3.GetUpper();
        return sums;
    }

    /// <summary>
    /// <see cref="AddInOrder"/> for terms stored in the order 0, 2, 4, 6, 1, 3, 5, 7 (element 2i + 1 of the
    /// eight is in lane i + 4): still added as t[0], t[1], ..., t[7].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> AddInOrderFromEvenOdd(Vector128<float> sums, Vector256<float> t0, Vector256<float> t1, Vector256<float> t2, Vector256<float> t3)
    {
        Columns(t0, t1, t2, t3, out Vector256<float> c0, out Vector256<float> c1, out Vector256<float> c2, out Vector256<float> c3);
        sums += c0.GetLower();
        sums += c0.GetUpper();
        sums += c1.GetLower();
        sums += c1.GetUpper();
        sums += c2.GetLower();
        sums += c2.GetUpper();
        sums += c3.GetLower();
        sums += c3.GetUpper();
        return sums;
    }

    /// <summary>Prefetches bytes [0, length) of the four rows at <paramref name="ahead"/>, rowBytes apart, into L1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Prefetch(byte* ahead, long rowBytes, int length)
    {
        for (int i = 0; i < length; i += 64)
        {
            Sse.Prefetch0(ahead + i);
            Sse.Prefetch0(ahead + rowBytes + i);
            Sse.Prefetch0(ahead + 2 * rowBytes + i);
            Sse.Prefetch0(ahead + 3 * rowBytes + i);
        }
    }
}
