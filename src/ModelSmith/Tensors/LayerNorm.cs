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
        y = y[..c];
        float mean = (float)VectorOps.SumDouble(x) / c;
        Elementwise.Map(x, y, new Subtract(mean));
        float variance = (float)(VectorOps.SumOfSquaresDouble(y) / c); // ggml_vec_cvar_f32: Σ (float)(y²) in double
        float scale = 1.0f / MathF.Sqrt(variance + eps);
        if (weight.IsEmpty && bias.IsEmpty) VectorOps.Scale(y, scale, y);
        else if (bias.IsEmpty) Elementwise.Map(y, weight, y, new ScaleMultiply(scale));
        else if (weight.IsEmpty) Elementwise.Map(y, bias, y, new ScaleAdd(scale));
        else Elementwise.Map(y, weight, bias, y, new ScaleMultiplyAdd(scale));
    }

    // y = x − shift, the row centred before the variance sum.
    private readonly struct Subtract(float shift) : IUnaryOperator
    {
        private readonly float _shift = shift;

        public float Invoke(float x) => x - _shift;
        public Vector128<float> Invoke(Vector128<float> x) => x - Vector128.Create(_shift);
        public Vector256<float> Invoke(Vector256<float> x) => x - Vector256.Create(_shift);
        public Vector512<float> Invoke(Vector512<float> x) => x - Vector512.Create(_shift);
    }

    // The norm output rounded to float, then the weight multiply, then the bias add (three ggml ops).
    private readonly struct ScaleMultiplyAdd(float scale) : ITernaryOperator
    {
        private readonly float _scale = scale;

        public float Invoke(float a, float w, float b) => a * _scale * w + b;
        public Vector128<float> Invoke(Vector128<float> a, Vector128<float> w, Vector128<float> b) => a * _scale * w + b;
        public Vector256<float> Invoke(Vector256<float> a, Vector256<float> w, Vector256<float> b) => a * _scale * w + b;
        public Vector512<float> Invoke(Vector512<float> a, Vector512<float> w, Vector512<float> b) => a * _scale * w + b;
    }

    private readonly struct ScaleMultiply(float scale) : IBinaryOperator
    {
        private readonly float _scale = scale;

        public float Invoke(float a, float w) => a * _scale * w;
        public Vector128<float> Invoke(Vector128<float> a, Vector128<float> w) => a * _scale * w;
        public Vector256<float> Invoke(Vector256<float> a, Vector256<float> w) => a * _scale * w;
        public Vector512<float> Invoke(Vector512<float> a, Vector512<float> w) => a * _scale * w;
    }

    private readonly struct ScaleAdd(float scale) : IBinaryOperator
    {
        private readonly float _scale = scale;

        public float Invoke(float a, float b) => a * _scale + b;
        public Vector128<float> Invoke(Vector128<float> a, Vector128<float> b) => a * _scale + b;
        public Vector256<float> Invoke(Vector256<float> a, Vector256<float> b) => a * _scale + b;
        public Vector512<float> Invoke(Vector512<float> a, Vector512<float> b) => a * _scale + b;
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
