using System.Runtime.Intrinsics;

namespace ModelSmith.Tensors;

/// <summary>
/// Layer normalization (GPT-2): y = (x − mean) / sqrt(var + eps) ⊙ w + b, computed as ggml computes
/// <c>norm</c> followed by <c>mul</c> and <c>add</c>.
/// </summary>
/// <remarks>
/// ggml's <c>ggml_compute_forward_norm_f32</c>: the sum of x in double rounded to float
/// (<c>ggml_vec_sum_f32</c>), mean = sum / C in float; y = x − mean in float; the variance is the
/// double sum of the float squares of y divided by C (<c>ggml_vec_cvar_f32</c>), rounded to float;
/// y ·= 1.0f/sqrtf(var + eps). The weight and bias are separate ops, so y = (y·w) + b, each rounded.
/// </remarks>
internal static class LayerNorm
{
    /// <summary>
    /// y = (x − mean)/sqrt(var + eps) ⊙ weight + bias. x: (C), weight: (C) or empty, bias: (C) or empty,
    /// y: (C), may be x.
    /// </summary>
    public static void Forward(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, float eps, Span<float> y)
    {
        if (!weight.IsEmpty && weight.Length != x.Length)
            throw new ArgumentException($"Layer norm weight has {weight.Length} values but the row has {x.Length}.", nameof(weight));
        if (!bias.IsEmpty && bias.Length != x.Length)
            throw new ArgumentException($"Layer norm bias has {bias.Length} values but the row has {x.Length}.", nameof(bias));
        Elementwise.CheckOutput(x.Length, y, x, nameof(y));
        if (x.IsEmpty) return;
        int c = x.Length;
        float mean = (float)VectorOps.SumDouble(x) / c;
        y = y[..c];
        Elementwise.Map(x, y, new Subtract(mean));
        float variance = (float)(VectorOps.SumOfSquaresDouble(y) / c);
        float scale = 1.0f / MathF.Sqrt(variance + eps);
        VectorOps.Scale(y, scale, y);
        if (!weight.IsEmpty) VectorOps.Multiply(y, weight, y);
        if (!bias.IsEmpty) VectorOps.Add(y, bias, y);
    }

    private readonly struct Subtract(float value) : IUnaryOperator
    {
        private readonly float _value = value;

        public float Invoke(float x) => x - _value;
        public Vector128<float> Invoke(Vector128<float> x) => x - Vector128.Create(_value);
        public Vector256<float> Invoke(Vector256<float> x) => x - Vector256.Create(_value);
        public Vector512<float> Invoke(Vector512<float> x) => x - Vector512.Create(_value);
    }

    /// <summary>The definition, one element at a time, sums in double in order.</summary>
    internal static class Reference
    {
        public static void Forward(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, float eps, Span<float> y)
        {
            int c = x.Length;
            if (c == 0) return;
            double sum = 0;
            for (int i = 0; i < c; i++) sum += x[i];
            float mean = (float)sum / c;
            var centered = new float[c];
            double sq = 0;
            for (int i = 0; i < c; i++)
            {
                centered[i] = x[i] - mean;
                sq += centered[i] * centered[i];
            }
            float scale = 1.0f / MathF.Sqrt((float)(sq / c) + eps);
            for (int i = 0; i < c; i++)
            {
                float v = centered[i] * scale;
                if (!weight.IsEmpty) v *= weight[i];
                if (!bias.IsEmpty) v += bias[i];
                y[i] = v;
            }
        }
    }
}
