namespace ModelSmith.Quantization;

/// <summary>
/// The scale searches llama.cpp's quantizers use when they are given importance weights (ggml-quants.c:
/// make_qx_quants with explicit weights, make_qkx3_quants, make_qp_quants). Same bit-exactness rules as
/// <see cref="QuantMath"/>: single precision, C's evaluation order, C's integer conversions and stores.
/// </summary>
internal static class WeightedQuantMath
{
    /// <summary>
    /// make_qx_quants with rmse_type = 1 and weights <paramref name="weights"/>: symmetric levels
    /// l ∈ [−nmax, nmax−1] stored as l + nmax, and the scale s minimising Σ w·(x − s·l)².
    /// Starts at iscale = −nmax/max (max = the signed value of largest magnitude), takes s = Σwxl/Σwl²,
    /// then tries iscale = −(nmax + 0.1·is)/max for is = ±1..±9 and keeps a candidate when it raises
    /// (Σwxl)²/Σwl². An all-zero group (|x| &lt; 1e-15) returns 0 with all levels 0.
    /// </summary>
    public static float MakeQxQuants(int nmax, ReadOnlySpan<float> x /* (n) */, ReadOnlySpan<float> weights /* (n) */, Span<sbyte> levels /* (n) */)
    {
        int n = x.Length;
        float max = QuantMath.MaxMagnitude(x, out float amax);
        if (amax < QuantMath.GroupMaxEps)
        {
            levels[..n].Clear();
            return 0f;
        }

        float iscale = -nmax / max;
        float sumlx = 0;
        float suml2 = 0;
        for (int i = 0; i < n; i++)
        {
            int l = Math.Max(-nmax, Math.Min(nmax - 1, QuantMath.NearestInt(iscale * x[i])));
            levels[i] = (sbyte)(l + nmax);
            float w = weights[i];
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
                int l = Math.Max(-nmax, Math.Min(nmax - 1, QuantMath.NearestInt(iscale * x[i])));
                float w = weights[i];
                sumlx += w * x[i] * l;
                suml2 += w * l * l;
            }
            if (suml2 > 0 && sumlx * sumlx > best * suml2)
            {
                for (int i = 0; i < n; i++)
                {
                    levels[i] = (sbyte)(nmax + Math.Max(-nmax, Math.Min(nmax - 1, QuantMath.NearestInt(iscale * x[i]))));
                }
                scale = sumlx / suml2;
                best = scale * sumlx;
            }
        }
        return scale;
    }

    /// <summary>
    /// make_qkx3_quants: asymmetric levels l ∈ [0, nmax] with x ≈ scale·l − theMin, fitted under
    /// <paramref name="weights"/>. Like make_qkx2_quants but with a finer, wider search
    /// (the callers use rmin = −0.9, rdelta = 0.05, nstep = 36) and a guard for the case where the best
    /// min so far sits at or above max: levels are computed as v &gt; 0 ? round(min(v, nmax)) : 0 with
    /// v = iscale·(x − min), so an infinite or NaN v cannot wrap nearest_int.
    /// Returns the scale and sets <paramref name="theMin"/> = −min (≥ 0).
    /// </summary>
    public static float MakeQkx3Quants(int nmax, ReadOnlySpan<float> x /* (n) */, ReadOnlySpan<float> weights /* (n) */,
        Span<byte> levels /* (n) */, out float theMin, Span<byte> scratch /* (n) */, float rmin, float rdelta, int nstep, bool useMad)
    {
        int n = x.Length;
        float min = QuantMath.RangeAndSums(x, weights, out float max, out float sumW, out float sumX);
        if (max <= min)
        {
            levels[..n].Clear();
            theMin = -min;
            return 0f;
        }

        float iscale = nmax / (max - min);
        float scale = 1 / iscale;
        float bestMad = QuantMath.FirstLevels(nmax, x, weights, n, iscale, scale, min, useMad, levels);
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
                float v = iscale * (x[i] - min);
                int l = v > 0 ? QuantMath.NearestInt(v < nmax ? v : nmax) : 0;
                scratch[i] = (byte)l;
                float w = weights[i];
                sumL += w * l;
                sumL2 += w * l * l;
                sumXL += w * l * x[i];
            }
            QuantMath.KeepBetterFit(x, weights, scratch, n, sumW, sumX, sumL, sumL2, sumXL, useMad, levels, ref bestMad, ref scale, ref min);
        }
        theMin = -min;
        return scale;
    }

    /// <summary>
    /// make_qp_quants: non-negative levels l ∈ [0, nmax] for non-negative values (the sub-block scales and
    /// mins of the K-quants), x ≈ s·l under <paramref name="weights"/>. Picks the iscale among
    /// nmax/max and (nmax + 0.1·is)/max, is = ±1..±4, with the lowest weighted squared error, then runs up to
    /// 5 sweeps of coordinate descent (as make_q3_quants) and returns the least-squares scale Σwxl/Σwl².
    /// Levels are stored as C's uint8_t stores them (a negative level wraps), and the sums read them back
    /// from there, as ggml does.
    /// </summary>
    public static float MakeQpQuants(int nmax, ReadOnlySpan<float> x /* (n) */, Span<byte> levels /* (n) */, ReadOnlySpan<float> weights /* (n) */)
    {
        int n = x.Length;
        float max = 0;
        for (int i = 0; i < n; i++)
        {
            max = max > x[i] ? max : x[i];
        }
        if (max < QuantMath.GroupMaxEps)
        {
            levels[..n].Clear();
            return 0f;
        }
        float iscale = nmax / max;
        for (int i = 0; i < n; i++)
        {
            levels[i] = (byte)QuantMath.NearestInt(iscale * x[i]);
        }
        float scale = 1 / iscale;
        float bestMse = 0;
        for (int i = 0; i < n; i++)
        {
            float diff = x[i] - scale * levels[i];
            bestMse += weights[i] * diff * diff;
        }
        for (int step = -4; step <= 4; step++)
        {
            if (step == 0)
            {
                continue;
            }
            float iscaleStep = (0.1f * step + nmax) / max;
            float scaleStep = 1 / iscaleStep;
            float mse = 0;
            for (int i = 0; i < n; i++)
            {
                int l = Math.Min(nmax, QuantMath.NearestInt(iscaleStep * x[i]));
                float diff = x[i] - scaleStep * l;
                mse += weights[i] * diff * diff;
            }
            if (mse < bestMse)
            {
                bestMse = mse;
                iscale = iscaleStep;
            }
        }
        float sumlx = 0;
        float suml2 = 0;
        for (int i = 0; i < n; i++)
        {
            int l = Math.Min(nmax, QuantMath.NearestInt(iscale * x[i]));
            levels[i] = (byte)l;
            float w = weights[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        for (int sweep = 0; sweep < 5; sweep++)
        {
            int changed = 0;
            for (int i = 0; i < n; i++)
            {
                float w = weights[i];
                float slx = sumlx - w * x[i] * levels[i];
                float sl2 = suml2 - w * levels[i] * levels[i];
                if (slx > 0 && sl2 > 0)
                {
                    int newL = Math.Min(nmax, QuantMath.NearestInt(x[i] * sl2 / slx));
                    if (newL != levels[i])
                    {
                        slx += w * x[i] * newL;
                        sl2 += w * newL * newL;
                        if (slx * slx * suml2 > sumlx * sumlx * sl2)
                        {
                            levels[i] = (byte)newL;
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
        return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
    }
}
