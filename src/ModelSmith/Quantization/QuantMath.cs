using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace ModelSmith.Quantization;

/// <summary>
/// The scalar building blocks shared by llama.cpp's reference quantizers (ggml-quants.c): its rounding
/// trick, F16 scale storage, and the scale searches make_qx_quants, make_q3_quants and make_qkx2_quants.
///
/// Bit-exactness rules followed everywhere in this folder:
/// - every expression is evaluated in single precision in the same order as the C source (C promotes
///   int operands to float exactly as C# does; the .NET JIT never contracts a*b+c into an FMA, and the
///   libggml-base that LLamaSharp ships is built for plain SSE2, so neither side fuses);
/// - integers are converted to float where the C code converts them, e.g. <c>w*l*l</c> is <c>(w*l)*l</c>;
/// - stores into 8-bit fields truncate like C's implicit conversions (<c>(byte)</c>, <c>(sbyte)</c> casts).
/// </summary>
internal static class QuantMath
{
    /// <summary>Elements of a K-quant super-block (ggml's QK_K).</summary>
    public const int QK_K = 256;

    /// <summary>A group whose largest magnitude is below this is treated as all zero (GROUP_MAX_EPS).</summary>
    public const float GroupMaxEps = 1e-15f;

    /// <summary>
    /// ggml's nearest_int: adding 1.5·2^23 pushes the value into the binade where the float spacing is
    /// exactly 1, so the FPU's round-to-nearest-even does the rounding and the integer sits in the low
    /// mantissa bits (offset by 2^22). Exact for |x| ≤ 4194303; beyond that it returns the same wrapped
    /// value as ggml does (which then gets clamped by the callers).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int NearestInt(float x)
    {
        float biased = x + 12582912f;
        return (BitConverter.SingleToInt32Bits(biased) & 0x007FFFFF) - 0x00400000;
    }

    /// <summary>
    /// C's conversion of a float to an integer type as x86-64 compilers emit it (cvttss2si, then the low
    /// bits for 8-bit targets): truncation toward zero, and the "integer indefinite" 0x80000000 for NaN and
    /// out-of-range values, which C leaves undefined and .NET would saturate instead. The legacy quantizers
    /// only reach that case when a block's scale is so small (all |x| below ~1e-36) that 1/d is infinite.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int TruncateLikeX86(float x) => x >= -2147483648f && x < 2147483648f ? (int)x : int.MinValue;

    /// <summary>C's roundf: round half away from zero (used by Q8_0). Computed from the truncation so
    /// that 0.49999997 does not become 1 as x + 0.5 would.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float RoundHalfAwayFromZero(float x)
    {
        float t = MathF.Truncate(x);
        return MathF.Abs(x - t) >= 0.5f ? t + MathF.CopySign(1f, x) : t;
    }

    /// <summary>
    /// GGML_FP32_TO_FP16: IEEE binary16 with round-to-nearest-even (ggml's software conversion and the F16C
    /// <c>_cvtss_sh(x, 0)</c> agree, and so does System.Half), overflow to infinity, and every NaN mapped to
    /// the quiet NaN 0x7E00 with the input's sign as ggml does.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort FloatToHalfBits(float value)
    {
        if (float.IsNaN(value))
        {
            return (ushort)(0x7E00 | ((BitConverter.SingleToUInt32Bits(value) >> 16) & 0x8000));
        }
        return BitConverter.HalfToUInt16Bits((Half)value);
    }

    /// <summary>GGML_FP16_TO_FP32 (exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HalfBitsToFloat(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

    /// <summary>Stores <paramref name="value"/> as F16 at <paramref name="offset"/> and returns the value the
    /// field now holds (what the dequantizer will see).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float WriteHalf(Span<byte> block, int offset, float value)
    {
        ushort bits = FloatToHalfBits(value);
        BinaryPrimitives.WriteUInt16LittleEndian(block.Slice(offset, 2), bits);
        return HalfBitsToFloat(bits);
    }

    /// <summary>The F16 field at <paramref name="offset"/> as a float.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ReadHalf(ReadOnlySpan<byte> block, int offset) =>
        HalfBitsToFloat(BinaryPrimitives.ReadUInt16LittleEndian(block.Slice(offset, 2)));

    /// <summary>
    /// The signed value of largest magnitude in <paramref name="x"/> (the first one where several share that
    /// magnitude; 0 for an all-zero span), with the magnitude itself in <paramref name="amax"/>. This is the
    /// max ggml's symmetric quantizers divide by, so that it maps exactly onto the end level −nmax.
    /// NaN never replaces the running maximum (|NaN| &gt; amax is false), as in C.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxMagnitude(ReadOnlySpan<float> x /* (n) */, out float amax)
    {
        float max = 0f;
        amax = 0f;
        for (int i = 0; i < x.Length; i++)
        {
            float ax = MathF.Abs(x[i]);
            if (ax > amax)
            {
                amax = ax;
                max = x[i];
            }
        }
        return max;
    }

    /// <summary>
    /// The smallest and largest value of <paramref name="x"/> as quantize_row_q4_1_ref / q5_1_ref find them:
    /// starting from min = FLT_MAX, max = −FLT_MAX with strict comparisons, so NaN is never taken.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void MinMax(ReadOnlySpan<float> x /* (n) */, out float min, out float max)
    {
        min = float.MaxValue;
        max = -float.MaxValue;
        for (int i = 0; i < x.Length; i++)
        {
            float v = x[i];
            if (v < min)
            {
                min = v;
            }
            if (v > max)
            {
                max = v;
            }
        }
    }

    /// <summary>
    /// make_qx_quants with rmse_type = 1 and no importance weights (the form Q6_K's reference quantizer
    /// uses): symmetric quants l ∈ [-nmax, nmax-1] of <paramref name="x"/>, stored as l + nmax in
    /// <paramref name="levels"/>, and the scale s minimising Σ w·(x − s·l)² with w = x².
    ///
    /// Start from iscale = −nmax/max (max = the signed value of largest magnitude, so it maps to −nmax
    /// exactly), take the least-squares scale for those levels, s = Σwxl / Σwl², then try the 18 nearby
    /// iscales −(nmax + 0.1·is)/max, is = ±1..±9, keeping a candidate when it raises (Σwxl)²/Σwl²
    /// (equivalent to lowering the weighted error). Returns 0 with all levels 0 for an all-zero group.
    /// </summary>
    public static float MakeQxQuants(int nmax, ReadOnlySpan<float> x /* (n) */, Span<sbyte> levels /* (n) */)
    {
        int n = x.Length;
        float max = MaxMagnitude(x, out float amax);
        if (amax < GroupMaxEps)
        {
            levels[..n].Clear();
            return 0f;
        }

        float iscale = -nmax / max;
        float sumlx = 0;
        float suml2 = 0;
        for (int i = 0; i < n; i++)
        {
            int l = Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1);
            levels[i] = (sbyte)(l + nmax);
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        float scale = suml2 != 0 ? sumlx / suml2 : 0f;
        float best = scale * sumlx;
        for (int step = -9; step <= 9; step++)
        {
            if (step == 0)
            {
                continue;
            }
            iscale = -(nmax + 0.1f * step) / max;
            sumlx = 0;
            suml2 = 0;
            for (int i = 0; i < n; i++)
            {
                int l = Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1);
                float w = x[i] * x[i];
                sumlx += w * x[i] * l;
                suml2 += w * l * l;
            }
            if (suml2 > 0 && sumlx * sumlx > best * suml2)
            {
                for (int i = 0; i < n; i++)
                {
                    levels[i] = (sbyte)(nmax + Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1));
                }
                scale = sumlx / suml2;
                best = scale * sumlx;
            }
        }
        return scale;
    }

    /// <summary>
    /// make_q3_quants with do_rmse = true (Q3_K's reference): symmetric levels l ∈ [-nmax, nmax-1] stored as
    /// l + nmax, weights w = x². After the initial rounding at iscale = −nmax/max, up to 5 sweeps of
    /// coordinate descent move one level at a time to round(x·Σwl²'/Σwxl') (the sums without that element)
    /// when that raises (Σwxl)²/Σwl². Returns the least-squares scale Σwxl/Σwl².
    /// An all-zero group returns 0 with all levels 0 (not nmax: the caller's "scale is zero" path keeps them).
    /// </summary>
    public static float MakeQ3Quants(int nmax, ReadOnlySpan<float> x /* (n) */, Span<sbyte> levels /* (n) */)
    {
        int n = x.Length;
        float max = MaxMagnitude(x, out float amax);
        if (amax < GroupMaxEps)
        {
            levels[..n].Clear();
            return 0f;
        }

        float iscale = -nmax / max;
        float sumlx = 0;
        float suml2 = 0;
        for (int i = 0; i < n; i++)
        {
            int l = Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1);
            levels[i] = (sbyte)l;
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        for (int sweep = 0; sweep < 5; sweep++)
        {
            int changed = 0;
            for (int i = 0; i < n; i++)
            {
                float w = x[i] * x[i];
                float slx = sumlx - w * x[i] * levels[i];
                if (slx > 0)
                {
                    float sl2 = suml2 - w * levels[i] * levels[i];
                    int newL = Math.Clamp(NearestInt(x[i] * sl2 / slx), -nmax, nmax - 1);
                    if (newL != levels[i])
                    {
                        slx += w * x[i] * newL;
                        sl2 += w * newL * newL;
                        if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2)
                        {
                            levels[i] = (sbyte)newL;
                            sumlx = slx;
                            suml2 = sl2;
                            changed++;
                        }
                    }
                }
            }
            if (changed == 0)
            {
                break;
            }
        }
        for (int i = 0; i < n; i++)
        {
            levels[i] = (sbyte)(levels[i] + nmax);
        }
        return suml2 > 0f ? sumlx / suml2 : 0f;
    }

    /// <summary>
    /// make_qkx2_quants: asymmetric levels l ∈ [0, nmax] with x ≈ scale·l − theMin, fitted under
    /// <paramref name="weights"/> (Q2_K, Q4_K, Q5_K references).
    ///
    /// min = min(x, 0) and max = max(x). The first guess is iscale = nmax/(max − min) with its error
    /// Σ w·|err| (<paramref name="useMad"/>) or Σ w·err². Then for is = 0..nstep the levels at
    /// iscale = (rmin + rdelta·is + nmax)/(max − min) get the weighted least-squares (scale, min):
    /// D = Σw·Σwl² − (Σwl)², scale = (Σw·Σwxl − Σwx·Σwl)/D, min = (Σwl²·Σwx − Σwl·Σwxl)/D, with min forced
    /// to ≤ 0 (then scale = Σwxl/Σwl²); the candidate is kept when its error is lower. As in ggml, later
    /// candidates are rounded against the best min found so far, not the initial one.
    /// Returns the scale and sets <paramref name="theMin"/> = −min (≥ 0).
    /// </summary>
    public static float MakeQkx2Quants(int nmax, ReadOnlySpan<float> x /* (n) */, ReadOnlySpan<float> weights /* (n) */,
        Span<byte> levels /* (n) */, out float theMin, Span<byte> scratch /* (n) */, float rmin, float rdelta, int nstep, bool useMad)
    {
        int n = x.Length;
        float min = RangeAndSums(x, weights, out float max, out float sumW, out float sumX);
        if (max == min)
        {
            levels[..n].Clear();
            theMin = -min;
            return 0f;
        }

        float iscale = nmax / (max - min);
        float scale = 1 / iscale;
        float bestError = FirstLevels(nmax, x, weights, n, iscale, scale, min, useMad, levels);
        if (nstep < 1)
        {
            theMin = -min;
            return scale;
        }
        for (int step = 0; step <= nstep; step++)
        {
            iscale = (rmin + rdelta * step + nmax) / (max - min);
            float sumL = 0;
            float sumL2 = 0;
            float sumXL = 0;
            for (int i = 0; i < n; i++)
            {
                int l = Math.Max(0, Math.Min(nmax, NearestInt(iscale * (x[i] - min))));
                scratch[i] = (byte)l;
                float w = weights[i];
                sumL += w * l;
                sumL2 += w * l * l;
                sumXL += w * l * x[i];
            }
            KeepBetterFit(x, weights, scratch, n, sumW, sumX, sumL, sumL2, sumXL, useMad, levels, ref bestError, ref scale, ref min);
        }
        theMin = -min;
        return scale;
    }

    /// <summary>
    /// The first pass of make_qkx2_quants and make_qkx3_quants: max = max(x), Σw and Σwx (summed in order
    /// from element 0), and the returned min = min(min(x), 0), since those fits allow only a non-positive
    /// offset. Strict comparisons from x[0], so a NaN at x[0] stays and a later one is never taken, as in C.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float RangeAndSums(ReadOnlySpan<float> x /* (n) */, ReadOnlySpan<float> weights /* (n) */,
        out float max, out float sumW, out float sumX)
    {
        float min = x[0];
        max = x[0];
        sumW = weights[0];
        sumX = sumW * x[0];
        for (int i = 1; i < x.Length; i++)
        {
            if (x[i] < min)
            {
                min = x[i];
            }
            if (x[i] > max)
            {
                max = x[i];
            }
            float w = weights[i];
            sumW += w;
            sumX += w * x[i];
        }
        if (min > 0)
        {
            min = 0;
        }
        return min;
    }

    /// <summary>
    /// The starting point of make_qkx2_quants and make_qkx3_quants: levels from the plain min..max scale, and
    /// their weighted error (absolute when <paramref name="useMad"/>, else squared). Writes levels[0..n).
    /// </summary>
    internal static float FirstLevels(int nmax, ReadOnlySpan<float> x, ReadOnlySpan<float> weights, int n,
        float iscale, float scale, float min, bool useMad, Span<byte> levels)
    {
        float error = 0;
        for (int i = 0; i < n; i++)
        {
            int l = NearestInt(iscale * (x[i] - min));
            levels[i] = (byte)Math.Max(0, Math.Min(nmax, l));
            float diff = scale * levels[i] + min - x[i];
            diff = useMad ? MathF.Abs(diff) : diff * diff;
            error += weights[i] * diff;
        }
        return error;
    }

    /// <summary>
    /// One candidate of the scale/min search shared by make_qkx2_quants and make_qkx3_quants: the weighted
    /// least-squares scale and min for the levels in <paramref name="scratch"/> (given their sums), kept, with
    /// the levels copied into <paramref name="levels"/>, when its weighted error beats <paramref name="bestError"/>.
    /// Same arithmetic, in the same order, as llama.cpp's loop body.
    /// </summary>
    internal static void KeepBetterFit(ReadOnlySpan<float> x, ReadOnlySpan<float> weights, ReadOnlySpan<byte> scratch, int n,
        float sumW, float sumX, float sumL, float sumL2, float sumXL, bool useMad,
        Span<byte> levels, ref float bestError, ref float scale, ref float min)
    {
        float d = sumW * sumL2 - sumL * sumL;
        if (!(d > 0)) return;
        float thisScale = (sumW * sumXL - sumX * sumL) / d;
        float thisMin = (sumL2 * sumX - sumL * sumXL) / d;
        if (thisMin > 0)
        {
            thisMin = 0;
            thisScale = sumXL / sumL2;
        }
        float error = 0;
        for (int i = 0; i < n; i++)
        {
            float diff = thisScale * scratch[i] + thisMin - x[i];
            diff = useMad ? MathF.Abs(diff) : diff * diff;
            error += weights[i] * diff;
        }
        if (error < bestError)
        {
            scratch[..n].CopyTo(levels);
            bestError = error;
            scale = thisScale;
            min = thisMin;
        }
    }

    /// <summary>
    /// get_scale_min_k4: the 6-bit scale and min of sub-block <paramref name="j"/> (0..7) from the 12 packed
    /// bytes of Q4_K/Q5_K. Bytes 0..3 hold scales 0..3 in their low 6 bits, bytes 4..7 mins 0..3; for
    /// j = 4..7 the low 4 bits come from byte 8+j−4 (scale low nibble, min high nibble) and the top 2 bits
    /// from the spare high bits of bytes j−4 (scale) and j (min).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void GetScaleMinK4(int j, ReadOnlySpan<byte> q /* (12) */, out int scale, out int min)
    {
        if (j < 4)
        {
            scale = q[j] & 63;
            min = q[j + 4] & 63;
        }
        else
        {
            scale = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
            min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        }
    }

    /// <summary>The inverse of <see cref="GetScaleMinK4"/> for all 8 sub-blocks, as the Q4_K/Q5_K
    /// reference quantizers pack them (j = 0..3 first, so the high-bit ORs of j = 4..7 land on set bytes).</summary>
    public static void PackScaleMinK4(ReadOnlySpan<byte> scales /* (8) 0..63 */, ReadOnlySpan<byte> mins /* (8) 0..63 */, Span<byte> q /* (12) */)
    {
        for (int j = 0; j < 8; j++)
        {
            byte ls = scales[j];
            byte lm = mins[j];
            if (j < 4)
            {
                q[j] = ls;
                q[j + 4] = lm;
            }
            else
            {
                q[j + 4] = (byte)((ls & 0xF) | ((lm & 0xF) << 4));
                q[j - 4] |= (byte)((ls >> 4) << 6);
                q[j] |= (byte)((lm >> 4) << 6);
            }
        }
    }

    /// <summary>
    /// Packs 256 two-bit levels (Q2_K, and the low bits of Q3_K) into 64 bytes: in each half of 128
    /// elements, byte l holds elements l, l+32, l+64, l+96 in bits 0-1, 2-3, 4-5, 6-7.
    /// </summary>
    public static void Pack2Bit(ReadOnlySpan<byte> levels /* (256) 0..3 */, Span<byte> qs /* (64) */)
    {
        for (int j = 0; j < QK_K; j += 128)
        {
            for (int l = 0; l < 32; l++)
            {
                qs[j / 4 + l] = (byte)(levels[j + l] | (levels[j + l + 32] << 2) | (levels[j + l + 64] << 4) | (levels[j + l + 96] << 6));
            }
        }
    }
}
