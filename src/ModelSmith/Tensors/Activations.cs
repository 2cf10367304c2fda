using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ModelSmith.Tensors;

/// <summary>
/// Activation functions over float rows: SiLU, SwiGLU (Llama), GELU in three flavours (GPT-2).
/// All allow in-place use (output span = input span).
/// </summary>
/// <remarks>
/// <para><b>GELU and llama.cpp.</b> ggml's CPU <c>gelu</c> (vec.h defines <c>GGML_GELU_FP16</c>) does not
/// evaluate the tanh formula per element: for −10 &lt; x &lt; 10 it rounds x to binary16, looks the result
/// up in a 65,536-entry table of binary16 values <c>fp16(gelu_tanh(f))</c>, and widens it; x ≤ −10 gives
/// 0 and x ≥ 10 gives x. So llama.cpp's GELU outputs carry binary16 precision (relative error up to
/// ~2^-11 ≈ 5e-4, and the input is quantized too). <see cref="GeluGgml"/> reproduces that table
/// bit for bit (to the last ulp of tanhf before the binary16 rounding) for oracle comparisons;
/// <see cref="GeluTanh"/> is the same formula in full float precision, which is what GPT-2 was trained
/// with. Expect logits of a GELU model to differ from llama.cpp's at the 1e-3 level because of this,
/// not because of a bug.</para>
/// <para>Vector paths use <see cref="Vector512.Exp(Vector512{float})"/>, which agrees with
/// <see cref="MathF.Exp"/> to about an ulp; tanh is written through exp as
/// 0.5·(1 + tanh u) = σ(2u), which has no cancellation.</para>
/// </remarks>
internal static class Activations
{
    private const float GeluCoefA = 0.044715f;
    private const float SqrtTwoOverPi = 0.79788456080286535587989211986876f;
    private const float SqrtHalf = 0.70710678118654752440084436210484f;

    /// <summary>y = x·σ(x) = x / (1 + e^−x). x: (N), y: (N).</summary>
    public static void Silu(ReadOnlySpan<float> x, Span<float> y) => Elementwise.Map(x, y, default(SiluOperator));

    /// <summary>y = silu(gate) ⊙ up (Llama's feed-forward gate). gate, up, y: (N); y may be gate or up.</summary>
    public static void SwiGlu(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> y) => Elementwise.Map(gate, up, y, default(SwiGluOperator));

    /// <summary>
    /// GELU, tanh approximation, in float: 0.5·x·(1 + tanh(√(2/π)·x·(1 + 0.044715·x²))). x: (N), y: (N).
    /// </summary>
    public static void GeluTanh(ReadOnlySpan<float> x, Span<float> y) => Elementwise.Map(x, y, default(GeluTanhOperator));

    /// <summary>
    /// GELU exactly as llama.cpp's CPU backend computes it: through the binary16 lookup table (see remarks).
    /// x: (N), y: (N).
    /// </summary>
    public static void GeluGgml(ReadOnlySpan<float> x, Span<float> y)
    {
        Elementwise.CheckOutput(x.Length, y, x, nameof(y));
        float[] table = GgmlGeluTable.Values;
        Span<ushort> halves = stackalloc ushort[256];
        for (int start = 0; start < x.Length; start += halves.Length)
        {
            int n = Math.Min(halves.Length, x.Length - start);
            ReadOnlySpan<float> xs = x.Slice(start, n);
            Span<float> ys = y.Slice(start, n);
            // The table index: x rounded to binary16 (nearest even), as ggml's GGML_CPU_FP32_TO_FP16.
            RowConvert.SingleToHalf(xs, halves);
            GeluLookup(xs, halves[..n], table, ys);
        }
    }

    // y[i] = 0 if x ≤ −10, x if x ≥ 10, else table[h[i]]. Scalar on purpose: AVX2 gathers measured 3x
    // slower than plain loads on Zen 5, and .NET exposes no AVX-512 gather.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void GeluLookup(ReadOnlySpan<float> x, ReadOnlySpan<ushort> h, float[] table, Span<float> y)
    {
        for (int i = 0; i < x.Length; i++)
        {
            float v = x[i];
            y[i] = v <= -10f ? 0f : v >= 10f ? v : table[h[i]];
        }
    }

    /// <summary>
    /// GELU with the error function: 0.5·x·(1 + erf(x/√2)) (PyTorch's default GELU, ggml's <c>gelu_erf</c>),
    /// with erf from a Chebyshev fit whose relative error is below 1.2e-7. x: (N), y: (N).
    /// </summary>
    public static void GeluErf(ReadOnlySpan<float> x, Span<float> y) => Elementwise.Map(x, y, default(GeluErfOperator));

    /// <summary>
    /// erfc(|z|) in float, relative error below 1.2e-7 (Numerical Recipes' <c>erfcc</c> Chebyshev fit):
    /// t = 1/(1 + |z|/2), erfc = t·exp(−z² + P(t)).
    /// </summary>
    public static float ErfcAbs(float z)
    {
        float a = MathF.Abs(z);
        float t = 1f / (1f + 0.5f * a);
        return t * MathF.Exp(-a * a + ErfcPolynomial(t));
    }

    private static float ErfcPolynomial(float t) =>
        -1.26551223f + t * (1.00002368f + t * (0.37409196f + t * (0.09678418f + t * (-0.18628806f
        + t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f + t * (-0.82215223f + t * 0.17087277f))))))));

    private readonly struct SiluOperator : IUnaryOperator
    {
        public float Invoke(float x) => x / (1f + MathF.Exp(-x));
        public Vector128<float> Invoke(Vector128<float> x) => x / (Vector128<float>.One + Vector128.Exp(-x));
        public Vector256<float> Invoke(Vector256<float> x) => x / (Vector256<float>.One + Vector256.Exp(-x));
        public Vector512<float> Invoke(Vector512<float> x) => x / (Vector512<float>.One + Vector512.Exp(-x));
    }

    private readonly struct SwiGluOperator : IBinaryOperator
    {
        public float Invoke(float g, float u) => g / (1f + MathF.Exp(-g)) * u;
        public Vector128<float> Invoke(Vector128<float> g, Vector128<float> u) => g / (Vector128<float>.One + Vector128.Exp(-g)) * u;
        public Vector256<float> Invoke(Vector256<float> g, Vector256<float> u) => g / (Vector256<float>.One + Vector256.Exp(-g)) * u;
        public Vector512<float> Invoke(Vector512<float> g, Vector512<float> u) => g / (Vector512<float>.One + Vector512.Exp(-g)) * u;
    }

    // 0.5·x·(1 + tanh u) = x·σ(2u) = x / (1 + e^(−2u)), 2u = x·(2√(2/π) + 2√(2/π)·0.044715·x²).
    private readonly struct GeluTanhOperator : IUnaryOperator
    {
        private const float C1 = -2f * SqrtTwoOverPi;
        private const float C3 = -2f * SqrtTwoOverPi * GeluCoefA;

        public float Invoke(float x) => x / (1f + MathF.Exp(x * (C1 + C3 * (x * x))));
        public Vector128<float> Invoke(Vector128<float> x) => x / (Vector128<float>.One + Vector128.Exp(x * (Vector128.Create(C1) + Vector128.Create(C3) * (x * x))));
        public Vector256<float> Invoke(Vector256<float> x) => x / (Vector256<float>.One + Vector256.Exp(x * (Vector256.Create(C1) + Vector256.Create(C3) * (x * x))));
        public Vector512<float> Invoke(Vector512<float> x) => x / (Vector512<float>.One + Vector512.Exp(x * (Vector512.Create(C1) + Vector512.Create(C3) * (x * x))));
    }

    // 0.5·x·(1 + erf(z)), z = x/√2: 1 + erf(z) = 2 − erfc(|z|) for z ≥ 0 and erfc(|z|) for z < 0.
    private readonly struct GeluErfOperator : IUnaryOperator
    {
        public float Invoke(float x)
        {
            float e = ErfcAbs(x * SqrtHalf);
            return 0.5f * x * (x >= 0 ? 2f - e : e);
        }

        public Vector128<float> Invoke(Vector128<float> x)
        {
            Vector128<float> a = Vector128.Abs(x * SqrtHalf);
            Vector128<float> t = Vector128<float>.One / (Vector128<float>.One + a * 0.5f);
            Vector128<float> p = Vector128.Create(0.17087277f);
            p = p * t + Vector128.Create(-0.82215223f);
            p = p * t + Vector128.Create(1.48851587f);
            p = p * t + Vector128.Create(-1.13520398f);
            p = p * t + Vector128.Create(0.27886807f);
            p = p * t + Vector128.Create(-0.18628806f);
            p = p * t + Vector128.Create(0.09678418f);
            p = p * t + Vector128.Create(0.37409196f);
            p = p * t + Vector128.Create(1.00002368f);
            p = p * t + Vector128.Create(-1.26551223f);
            Vector128<float> e = t * Vector128.Exp(p - a * a);
            Vector128<float> onePlusErf = Vector128.ConditionalSelect(Vector128.GreaterThanOrEqual(x, Vector128<float>.Zero), Vector128.Create(2f) - e, e);
            return x * 0.5f * onePlusErf;
        }

        public Vector256<float> Invoke(Vector256<float> x)
        {
            Vector256<float> a = Vector256.Abs(x * SqrtHalf);
            Vector256<float> t = Vector256<float>.One / (Vector256<float>.One + a * 0.5f);
            Vector256<float> p = Vector256.Create(0.17087277f);
            p = p * t + Vector256.Create(-0.82215223f);
            p = p * t + Vector256.Create(1.48851587f);
            p = p * t + Vector256.Create(-1.13520398f);
            p = p * t + Vector256.Create(0.27886807f);
            p = p * t + Vector256.Create(-0.18628806f);
            p = p * t + Vector256.Create(0.09678418f);
            p = p * t + Vector256.Create(0.37409196f);
            p = p * t + Vector256.Create(1.00002368f);
            p = p * t + Vector256.Create(-1.26551223f);
            Vector256<float> e = t * Vector256.Exp(p - a * a);
            Vector256<float> onePlusErf = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(x, Vector256<float>.Zero), Vector256.Create(2f) - e, e);
            return x * 0.5f * onePlusErf;
        }

        public Vector512<float> Invoke(Vector512<float> x)
        {
            Vector512<float> a = Vector512.Abs(x * SqrtHalf);
            Vector512<float> t = Vector512<float>.One / (Vector512<float>.One + a * 0.5f);
            Vector512<float> p = Vector512.Create(0.17087277f);
            p = p * t + Vector512.Create(-0.82215223f);
            p = p * t + Vector512.Create(1.48851587f);
            p = p * t + Vector512.Create(-1.13520398f);
            p = p * t + Vector512.Create(0.27886807f);
            p = p * t + Vector512.Create(-0.18628806f);
            p = p * t + Vector512.Create(0.09678418f);
            p = p * t + Vector512.Create(0.37409196f);
            p = p * t + Vector512.Create(1.00002368f);
            p = p * t + Vector512.Create(-1.26551223f);
            Vector512<float> e = t * Vector512.Exp(p - a * a);
            Vector512<float> onePlusErf = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(x, Vector512<float>.Zero), Vector512.Create(2f) - e, e);
            return x * 0.5f * onePlusErf;
        }
    }

    // ggml's table: entry h = fp16(gelu_tanh(float(h))) for every binary16 bit pattern h, built on first
    // use and stored already widened to float (256 KiB, L2-resident) so vector gathers return outputs.
    private static class GgmlGeluTable
    {
        public static readonly float[] Values = Build();

        private static float[] Build()
        {
            var table = new float[1 << 16];
            for (int i = 0; i < table.Length; i++)
                table[i] = (float)(Half)Reference.GeluTanh((float)BitConverter.UInt16BitsToHalf((ushort)i));
            return table;
        }
    }

    /// <summary>The definitions, one element at a time, written as ggml writes them.</summary>
    internal static class Reference
    {
        public static float Silu(float x) => x / (1f + MathF.Exp(-x));

        public static float GeluTanh(float x) => 0.5f * x * (1f + MathF.Tanh(SqrtTwoOverPi * x * (1f + GeluCoefA * x * x)));

        public static float GeluErf(float x)
        {
            float e = ErfcAbs(x * SqrtHalf);
            return 0.5f * x * (x >= 0 ? 2f - e : e);
        }

        public static void Silu(ReadOnlySpan<float> x, Span<float> y)
        {
            for (int i = 0; i < x.Length; i++) y[i] = Silu(x[i]);
        }

        public static void SwiGlu(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> y)
        {
            for (int i = 0; i < gate.Length; i++) y[i] = Silu(gate[i]) * up[i];
        }

        public static void GeluTanh(ReadOnlySpan<float> x, Span<float> y)
        {
            for (int i = 0; i < x.Length; i++) y[i] = GeluTanh(x[i]);
        }

        public static void GeluErf(ReadOnlySpan<float> x, Span<float> y)
        {
            for (int i = 0; i < x.Length; i++) y[i] = GeluErf(x[i]);
        }

        /// <summary>llama.cpp's CPU GELU for one value: clamps, else the binary16 gelu of the binary16 input.</summary>
        public static float GeluGgml(float x) =>
            x <= -10f ? 0f : x >= 10f ? x : (float)(Half)GeluTanh((float)(Half)x);

        public static void GeluGgml(ReadOnlySpan<float> x, Span<float> y)
        {
            for (int i = 0; i < x.Length; i++) y[i] = GeluGgml(x[i]);
        }
    }
}
