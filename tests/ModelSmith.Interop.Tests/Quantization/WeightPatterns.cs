namespace ModelSmith.Interop.Tests.Quantization;

/// <summary>Kinds of weight matrices the quantizers are compared on.</summary>
internal enum WeightPattern
{
    /// <summary>N(0, 1).</summary>
    Normal,
    /// <summary>N(0, 0.02²), the scale of trained transformer weights.</summary>
    SmallNormal,
    /// <summary>U(−1, 1).</summary>
    Uniform,
    /// <summary>N(0, 0.02²) with 1% of the values multiplied by ±50..500.</summary>
    Outliers,
    /// <summary>N(0, 1) with every third row all zero.</summary>
    ZeroRows,
    /// <summary>N(0, 1) with a third of the aligned 16-value groups zeroed (whole sub-blocks and blocks too).</summary>
    ZeroGroups,
    /// <summary>N(0, 1) scaled per 32-value block by 10^U(−24, −3): blocks on both sides of ggml's 1e-15 "all zero" threshold.</summary>
    Tiny,
    /// <summary>N(0, 1) scaled by 10^U(1, 3.5): large, yet every F16 scale and Q4_1/Q5_1 minimum stays finite
    /// (llama.cpp refuses a file whose F16 fields overflow).</summary>
    Large,
    /// <summary>Each 64-value run a single constant (positive, negative or zero).</summary>
    Constant,
    /// <summary>|N(0, 1)| + 0.25: no negative values, so the K-quant mins are clamped at zero.</summary>
    PositiveOnly,
    /// <summary>−|N(0, 1)| − 0.25.</summary>
    NegativeOnly,
    /// <summary>95% zeros, the rest N(0, 1).</summary>
    Sparse,
    /// <summary>round(N(0, 3)): small integers, where rounding ties are frequent.</summary>
    Integers,
    /// <summary>Zero except one ±U(0.5, 2) value per 16 values.</summary>
    Spikes,
    /// <summary>A linear ramp over each row from −1 to 1.</summary>
    Ramp,
}

/// <summary>Seeded weight matrices of each <see cref="WeightPattern"/>, identical on every run.</summary>
internal static class WeightPatterns
{
    public static readonly WeightPattern[] All = Enum.GetValues<WeightPattern>();

    /// <summary>A (rows, cols) row-major matrix of <paramref name="pattern"/>.</summary>
    public static float[] Make(WeightPattern pattern, int rows, int cols, int seed)
    {
        var rng = new Random(seed * 977 + (int)pattern);
        var x = new float[rows * cols];
        switch (pattern)
        {
            case WeightPattern.Normal:
                Fill(x, () => Normal(rng));
                break;
            case WeightPattern.SmallNormal:
                Fill(x, () => 0.02f * Normal(rng));
                break;
            case WeightPattern.Uniform:
                Fill(x, () => (float)(2 * rng.NextDouble() - 1));
                break;
            case WeightPattern.Outliers:
                Fill(x, () => 0.02f * Normal(rng) * (rng.NextDouble() < 0.01 ? (rng.Next(2) * 2 - 1) * (float)(50 + 450 * rng.NextDouble()) : 1f));
                break;
            case WeightPattern.ZeroRows:
                Fill(x, () => Normal(rng));
                for (int r = 0; r < rows; r += 3)
                {
                    Array.Clear(x, r * cols, cols);
                }
                break;
            case WeightPattern.ZeroGroups:
                Fill(x, () => Normal(rng));
                for (int g = 0; g < x.Length; g += 16)
                {
                    if (rng.NextDouble() < 1.0 / 3)
                    {
                        int len = rng.Next(4) switch { 0 => 16, 1 => 32, 2 => 64, _ => 256 };
                        Array.Clear(x, g, Math.Min(len, x.Length - g));
                    }
                }
                break;
            case WeightPattern.Tiny:
                for (int b = 0; b < x.Length; b += 32)
                {
                    float scale = MathF.Pow(10f, (float)(-24 + 21 * rng.NextDouble()));
                    for (int j = b; j < b + 32 && j < x.Length; j++)
                    {
                        x[j] = scale * Normal(rng);
                    }
                }
                break;
            case WeightPattern.Large:
                Fill(x, () => MathF.Pow(10f, (float)(1 + 2.5 * rng.NextDouble())) * Normal(rng));
                break;
            case WeightPattern.Constant:
                for (int b = 0; b < x.Length; b += 64)
                {
                    float c = rng.Next(3) switch { 0 => 0f, 1 => (float)rng.NextDouble() + 0.1f, _ => -(float)rng.NextDouble() - 0.1f };
                    Array.Fill(x, c, b, Math.Min(64, x.Length - b));
                }
                break;
            case WeightPattern.PositiveOnly:
                Fill(x, () => MathF.Abs(Normal(rng)) + 0.25f);
                break;
            case WeightPattern.NegativeOnly:
                Fill(x, () => -MathF.Abs(Normal(rng)) - 0.25f);
                break;
            case WeightPattern.Sparse:
                Fill(x, () => rng.NextDouble() < 0.05 ? Normal(rng) : 0f);
                break;
            case WeightPattern.Integers:
                Fill(x, () => MathF.Round(3 * Normal(rng)));
                break;
            case WeightPattern.Spikes:
                for (int g = 0; g < x.Length; g += 16)
                {
                    x[g + rng.Next(16)] = (rng.Next(2) * 2 - 1) * (float)(0.5 + 1.5 * rng.NextDouble());
                }
                break;
            case WeightPattern.Ramp:
                for (int r = 0; r < rows; r++)
                {
                    for (int c = 0; c < cols; c++)
                    {
                        x[r * cols + c] = -1f + 2f * c / (cols - 1);
                    }
                }
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(pattern), pattern, null);
        }
        return x;
    }

    private static void Fill(float[] x, Func<float> next)
    {
        for (int i = 0; i < x.Length; i++)
        {
            x[i] = next();
        }
    }

    private static float Normal(Random rng)
    {
        double u1 = 1.0 - rng.NextDouble();
        double u2 = rng.NextDouble();
        return (float)(Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2));
    }
}
