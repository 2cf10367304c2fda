using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ModelSmith.Quantization;

/// <summary>
/// The scale searches of <see cref="QuantMath"/> (make_qkx2_quants for Q4_K/Q5_K, make_qx_quants for Q6_K)
/// run on 8 groups at once, one group per lane of a <see cref="Vector256{T}"/>.
///
/// Why this is exact: every lane performs the scalar reference's operations on its own group, in the same
/// order: the running sums Σwl, Σwl², Σwxl and the errors are still accumulated element 0, 1, 2, ... of the
/// group, each a single-precision add; products, quotients and square roots are IEEE operations that give
/// the same bits in a vector lane as in a scalar register (no FMA is formed); nearest_int is the same
/// add-1.5·2^23-and-mask trick; comparisons are ordered, so a NaN fails them as it fails the scalar
/// <c>if</c>; and a branch of the scalar code becomes a per-lane select. The groups are laid out transposed
/// (element i of all 8 groups in one vector) so that a group's sums run down one lane.
/// Why it is faster: the reference is bound by the latency of its dependent float adds; here 8 of those
/// chains advance with each vector add.
/// </summary>
internal static class QuantLanes
{
    /// <summary>True where 256-bit vectors are hardware accelerated; elsewhere callers use the scalar reference.</summary>
    public static bool IsSupported => Vector256.IsHardwareAccelerated;

    /// <summary>
    /// <see cref="Q4_K.SubBlockScalesReference"/> for the 8 sub-blocks of 32 of one super-block, lane j =
    /// sub-block j: w = sqrt(Σx²/32) + |x| and make_qkx2_quants with squared error. Writes the first-pass
    /// levels, scales and mins (mins as −min ≥ 0) and returns the largest scale and min.
    /// </summary>
    [SkipLocalsInit]
    public static void Qkx2SubBlocks(int nmax, float rmin, float rdelta, int nstep, ReadOnlySpan<float> xb /* (256) */,
        Span<byte> levels /* (256) */, Span<float> scales /* (8) */, Span<float> mins /* (8) */, out float maxScale, out float maxMin)
    {
        const int n = 32;
        Span<Vector256<float>> x = stackalloc Vector256<float>[n]; // (n) element i of every sub-block
        Span<Vector256<float>> w = stackalloc Vector256<float>[n];
        Span<Vector256<float>> best = stackalloc Vector256<float>[n]; // levels of the best fit so far, as floats
        Span<Vector256<float>> candidate = stackalloc Vector256<float>[n];
        Transpose8(xb, n, x);

        Vector256<float> sumX2 = Vector256<float>.Zero;
        for (int i = 0; i < n; i++)
        {
            sumX2 += x[i] * x[i];
        }
        Vector256<float> avX = Vector256.Sqrt(sumX2 / Vector256.Create((float)n));
        for (int i = 0; i < n; i++)
        {
            w[i] = avX + Vector256.Abs(x[i]);
        }

        // make_qkx2_quants, lane by lane.
        Vector256<float> min = x[0];
        Vector256<float> max = x[0];
        Vector256<float> sumW = w[0];
        Vector256<float> sumX = sumW * x[0];
        for (int i = 1; i < n; i++)
        {
            min = Vector256.ConditionalSelect(Vector256.LessThan(x[i], min), x[i], min);
            max = Vector256.ConditionalSelect(Vector256.GreaterThan(x[i], max), x[i], max);
            sumW += w[i];
            sumX += w[i] * x[i];
        }
        min = Vector256.ConditionalSelect(Vector256.GreaterThan(min, Vector256<float>.Zero), Vector256<float>.Zero, min);
        Vector256<float> flat = Vector256.Equals(max, min);
        Vector256<int> top = Vector256.Create(nmax);

        Vector256<float> iscale = Vector256.Create((float)nmax) / (max - min);
        Vector256<float> scale = Vector256<float>.One / iscale;
        Vector256<float> bestError = Vector256<float>.Zero;
        for (int i = 0; i < n; i++)
        {
            Vector256<float> l = Level(iscale * (x[i] - min), top);
            best[i] = l;
            Vector256<float> diff = scale * l + min - x[i];
            bestError += w[i] * (diff * diff);
        }
        // nstep < 1: the first guess only, as make_qkx2_quants returns before its search.
        for (int step = 0; nstep >= 1 && step <= nstep; step++)
        {
            // As in ggml, (max − min) and the rounding use the best min found so far.
            iscale = Vector256.Create(rmin + rdelta * step + nmax) / (max - min);
            Vector256<float> sumL = Vector256<float>.Zero;
            Vector256<float> sumL2 = Vector256<float>.Zero;
            Vector256<float> sumXL = Vector256<float>.Zero;
            for (int i = 0; i < n; i++)
            {
                Vector256<float> l = Level(iscale * (x[i] - min), top);
                candidate[i] = l;
                Vector256<float> wl = w[i] * l;
                sumL += wl;
                sumL2 += wl * l;
                sumXL += wl * x[i];
            }
            Vector256<float> d = sumW * sumL2 - sumL * sumL;
            Vector256<float> valid = Vector256.GreaterThan(d, Vector256<float>.Zero) & ~flat;
            if (Vector256.ExtractMostSignificantBits(valid) == 0)
            {
                continue;
            }
            Vector256<float> thisScale = (sumW * sumXL - sumX * sumL) / d;
            Vector256<float> thisMin = (sumL2 * sumX - sumL * sumXL) / d;
            Vector256<float> positive = Vector256.GreaterThan(thisMin, Vector256<float>.Zero);
            thisMin = Vector256.ConditionalSelect(positive, Vector256<float>.Zero, thisMin);
            thisScale = Vector256.ConditionalSelect(positive, sumXL / sumL2, thisScale);
            Vector256<float> error = Vector256<float>.Zero;
            for (int i = 0; i < n; i++)
            {
                Vector256<float> diff = thisScale * candidate[i] + thisMin - x[i];
                error += w[i] * (diff * diff);
            }
            Vector256<float> better = valid & Vector256.LessThan(error, bestError);
            if (Vector256.ExtractMostSignificantBits(better) == 0)
            {
                continue;
            }
            for (int i = 0; i < n; i++)
            {
                best[i] = Vector256.ConditionalSelect(better, candidate[i], best[i]);
            }
            bestError = Vector256.ConditionalSelect(better, error, bestError);
            scale = Vector256.ConditionalSelect(better, thisScale, scale);
            min = Vector256.ConditionalSelect(better, thisMin, min);
        }
        // A flat group (max == min) returns scale 0 with all levels 0 before any search.
        scale = Vector256.ConditionalSelect(flat, Vector256<float>.Zero, scale);
        Vector256<float> theMin = -min;
        for (int i = 0; i < n; i++)
        {
            best[i] = Vector256.AndNot(best[i], flat);
        }
        UntransposeLevels8(best, n, 0, levels);
        scale.CopyTo(scales);
        theMin.CopyTo(mins);

        maxScale = 0;
        maxMin = 0;
        for (int j = 0; j < 8; j++)
        {
            if (scales[j] > maxScale)
            {
                maxScale = scales[j];
            }
            if (mins[j] > maxMin)
            {
                maxMin = mins[j];
            }
        }
    }

    /// <summary>
    /// <see cref="QuantMath.MakeQxQuants"/> (weights x²) for 8 consecutive groups of 16 in
    /// <paramref name="x"/>, lane j = group j: writes each group's levels (l + nmax) and returns its scale
    /// in <paramref name="scales"/>[j].
    /// </summary>
    [SkipLocalsInit]
    public static void MakeQxQuants16(int nmax, ReadOnlySpan<float> x /* (128) */, Span<sbyte> levels /* (128) */, Span<float> scales /* (8) */)
    {
        const int n = 16;
        Span<Vector256<float>> xt = stackalloc Vector256<float>[n];
        Span<Vector256<float>> w = stackalloc Vector256<float>[n]; // x²
        Span<Vector256<float>> wx = stackalloc Vector256<float>[n]; // x²·x
        Span<Vector256<float>> best = stackalloc Vector256<float>[n]; // levels l (not yet offset by nmax)
        Span<Vector256<float>> candidate = stackalloc Vector256<float>[n];
        Transpose8(x, n, xt);

        Vector256<float> max = Vector256<float>.Zero;
        Vector256<float> amax = Vector256<float>.Zero;
        for (int i = 0; i < n; i++)
        {
            Vector256<float> ax = Vector256.Abs(xt[i]);
            Vector256<float> larger = Vector256.GreaterThan(ax, amax);
            amax = Vector256.ConditionalSelect(larger, ax, amax);
            max = Vector256.ConditionalSelect(larger, xt[i], max);
            w[i] = xt[i] * xt[i];
            wx[i] = w[i] * xt[i];
        }
        Vector256<float> zero = Vector256.LessThan(amax, Vector256.Create(QuantMath.GroupMaxEps));
        Vector256<int> lo = Vector256.Create(-nmax);
        Vector256<int> hi = Vector256.Create(nmax - 1);

        Vector256<float> iscale = Vector256.Create((float)-nmax) / max;
        Vector256<float> sumlx = Vector256<float>.Zero;
        Vector256<float> suml2 = Vector256<float>.Zero;
        for (int i = 0; i < n; i++)
        {
            Vector256<float> l = SignedLevel(iscale * xt[i], lo, hi);
            best[i] = l;
            sumlx += wx[i] * l;
            suml2 += w[i] * l * l;
        }
        Vector256<float> scale = Vector256.ConditionalSelect(Vector256.Equals(suml2, Vector256<float>.Zero), Vector256<float>.Zero, sumlx / suml2);
        Vector256<float> bestScore = scale * sumlx;
        for (int step = -9; step <= 9; step++)
        {
            if (step == 0)
            {
                continue;
            }
            iscale = Vector256.Create(-(nmax + 0.1f * step)) / max;
            sumlx = Vector256<float>.Zero;
            suml2 = Vector256<float>.Zero;
            for (int i = 0; i < n; i++)
            {
                Vector256<float> l = SignedLevel(iscale * xt[i], lo, hi);
                candidate[i] = l;
                sumlx += wx[i] * l;
                suml2 += w[i] * l * l;
            }
            Vector256<float> better = Vector256.GreaterThan(suml2, Vector256<float>.Zero)
                & Vector256.GreaterThan(sumlx * sumlx, bestScore * suml2);
            if (Vector256.ExtractMostSignificantBits(better) == 0)
            {
                continue;
            }
            for (int i = 0; i < n; i++)
            {
                best[i] = Vector256.ConditionalSelect(better, candidate[i], best[i]);
            }
            scale = Vector256.ConditionalSelect(better, sumlx / suml2, scale);
            bestScore = Vector256.ConditionalSelect(better, scale * sumlx, bestScore);
        }
        // An all-zero group returns scale 0 with every stored level 0 (not nmax).
        scale = Vector256.ConditionalSelect(zero, Vector256<float>.Zero, scale);
        Vector256<float> offset = Vector256.Create((float)nmax);
        for (int i = 0; i < n; i++)
        {
            best[i] = Vector256.AndNot(best[i] + offset, zero);
        }
        UntransposeLevels8(best, n, 0, MemoryMarshal.AsBytes(levels));
        scale.CopyTo(scales);
    }

    /// <summary>clamp(nearest_int(v), 0, nmax) as a float.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Level(Vector256<float> v, Vector256<int> nmax) =>
        Vector256.ConvertToSingle(Vector256.Max(Vector256<int>.Zero, Vector256.Min(nmax, NearestInt(v))));

    /// <summary>clamp(nearest_int(v), lo, hi) as a float.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> SignedLevel(Vector256<float> v, Vector256<int> lo, Vector256<int> hi) =>
        Vector256.ConvertToSingle(Vector256.Min(Vector256.Max(NearestInt(v), lo), hi));

    /// <summary><see cref="QuantMath.NearestInt"/> lane by lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> NearestInt(Vector256<float> v)
    {
        Vector256<float> biased = v + Vector256.Create(12582912f);
        return (biased.AsInt32() & Vector256.Create(0x007FFFFF)) - Vector256.Create(0x00400000);
    }

    /// <summary>8 groups of <paramref name="n"/> consecutive values into n vectors: t[i] lane j = src[n·j + i].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8(ReadOnlySpan<float> src /* (8·n) */, int n, Span<Vector256<float>> t /* (n) */)
    {
        ReadOnlySpan<float> s = src[..(8 * n)];
        for (int i = 0; i < n; i++)
        {
            t[i] = Vector256.Create(s[i], s[n + i], s[2 * n + i], s[3 * n + i], s[4 * n + i], s[5 * n + i], s[6 * n + i], s[7 * n + i]);
        }
    }

    /// <summary>The inverse of <see cref="Transpose8"/> for levels (small non-negative integers held as floats), as bytes.</summary>
    private static void UntransposeLevels8(ReadOnlySpan<Vector256<float>> t /* (n) */, int n, int start, Span<byte> levels /* (8·n) */)
    {
        Span<byte> dst = levels.Slice(start, 8 * n);
        Span<int> lane = stackalloc int[8];
        for (int i = 0; i < n; i++)
        {
            Vector256.ConvertToInt32(t[i]).CopyTo(lane);
            for (int j = 0; j < 8; j++)
            {
                dst[n * j + i] = (byte)lane[j];
            }
        }
    }
}
