using System.Runtime.Intrinsics;

namespace ModelSmith.Tensors;

/// <summary>
/// RMS normalization (Llama): y = x / sqrt(mean(x²) + eps) ⊙ w, computed as ggml computes
/// <c>rms_norm</c> followed by <c>mul</c>.
/// </summary>
/// <remarks>
/// ggml's <c>ggml_compute_forward_rms_norm_f32</c> rounds each square to float, sums the squares in double
/// (<c>ggml_float</c>), rounds the mean to float, takes <c>scale = 1.0f/sqrtf(mean + eps)</c> in float and
/// writes <c>x·scale</c>; the weight is a separate <c>ggml_mul</c>, so y = (x·scale)·w with two float
/// roundings. This kernel does the same steps; only the order of the double additions differs (vector
/// partial sums), which changes the float mean in rare last-bit cases.
/// </remarks>
internal static class RmsNorm
{
    /// <summary>
    /// y = x · (1/sqrt(mean(x²) + eps)) ⊙ weight. x: (C), weight: (C) or empty for no weight, y: (C), may be x.
    /// </summary>
    public static void Forward(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> y)
    {
        if (!weight.IsEmpty && weight.Length != x.Length)
            throw new ArgumentException($"RMS norm weight has {weight.Length} values but the row has {x.Length}.", nameof(weight));
        Elementwise.CheckOutput(x.Length, y, x, nameof(y));
        if (x.IsEmpty) return;
        float scale = Scale(VectorOps.SumOfSquaresDouble(x), x.Length, eps);
        if (weight.IsEmpty) VectorOps.Scale(x, scale, y);
        else Elementwise.Map(x, weight, y, new ScaleThenMultiply(scale));
    }

    /// <summary>1/sqrt(mean + eps) with the mean of <paramref name="count"/> squares rounded to float, as ggml does.</summary>
    public static float Scale(double sumOfSquares, int count, float eps)
    {
        float mean = (float)(sumOfSquares / count);
        return 1.0f / MathF.Sqrt(mean + eps);
    }

    // (x·scale)·w: the rms_norm output rounded to float, then the weight multiply.
    private readonly struct ScaleThenMultiply(float scale) : IBinaryOperator
    {
        private readonly float _scale = scale;

        public float Invoke(float a, float b) => a * _scale * b;
        public Vector128<float> Invoke(Vector128<float> a, Vector128<float> b) => a * _scale * b;
        public Vector256<float> Invoke(Vector256<float> a, Vector256<float> b) => a * _scale * b;
        public Vector512<float> Invoke(Vector512<float> a, Vector512<float> b) => a * _scale * b;
    }

    /// <summary>The definition, one element at a time, sums in double in order.</summary>
    internal static class Reference
    {
        public static void Forward(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> y)
        {
            if (x.IsEmpty) return;
            double sum = 0;
            for (int i = 0; i < x.Length; i++) sum += x[i] * x[i];
            float scale = Scale(sum, x.Length, eps);
            for (int i = 0; i < x.Length; i++)
            {
                float v = x[i] * scale;
                y[i] = weight.IsEmpty ? v : v * weight[i];
            }
        }
    }
}
