using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ModelSmith.Tensors;

/// <summary>
/// Basic row kernels over float spans: dot product, axpy, scale, add, multiply, max, sum. Each has a
/// vector path (Vector512 → Vector256 → Vector128 → scalar, see <see cref="Elementwise"/>) and a plain
/// definition in <see cref="Reference"/> that the tests hold it to.
/// </summary>
internal static class VectorOps
{
    /// <summary>
    /// Σ a[i]·b[i] in float, with several vector accumulators (fused multiply-add where available).
    /// a: (N), b: (N). Differs from the exact sum by at most ~N/lanes · 2^-24 · Σ|a·b|.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (a.Length != b.Length)
            throw new ArgumentException($"Dot of spans of {a.Length} and {b.Length} elements; they must be the same length.", nameof(b));
        ref float As = ref MemoryMarshal.GetReference(a);
        ref float Bs = ref MemoryMarshal.GetReference(b);
        nint n = a.Length, i = 0;
        float sum = 0;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            Vector512<float> c0 = Vector512<float>.Zero, c1 = c0, c2 = c0, c3 = c0;
            for (; i <= n - 64; i += 64)
            {
                c0 = Vector512.MultiplyAddEstimate(Vector512.LoadUnsafe(ref As, (nuint)i), Vector512.LoadUnsafe(ref Bs, (nuint)i), c0);
                c1 = Vector512.MultiplyAddEstimate(Vector512.LoadUnsafe(ref As, (nuint)(i + 16)), Vector512.LoadUnsafe(ref Bs, (nuint)(i + 16)), c1);
                c2 = Vector512.MultiplyAddEstimate(Vector512.LoadUnsafe(ref As, (nuint)(i + 32)), Vector512.LoadUnsafe(ref Bs, (nuint)(i + 32)), c2);
                c3 = Vector512.MultiplyAddEstimate(Vector512.LoadUnsafe(ref As, (nuint)(i + 48)), Vector512.LoadUnsafe(ref Bs, (nuint)(i + 48)), c3);
            }
            for (; i <= n - 16; i += 16)
                c0 = Vector512.MultiplyAddEstimate(Vector512.LoadUnsafe(ref As, (nuint)i), Vector512.LoadUnsafe(ref Bs, (nuint)i), c0);
            sum = Vector512.Sum((c0 + c1) + (c2 + c3));
        }
        if (Vector256.IsHardwareAccelerated && n - i >= 8)
        {
            Vector256<float> c0 = Vector256<float>.Zero, c1 = c0, c2 = c0, c3 = c0;
            for (; i <= n - 32; i += 32)
            {
                c0 = Vector256.MultiplyAddEstimate(Vector256.LoadUnsafe(ref As, (nuint)i), Vector256.LoadUnsafe(ref Bs, (nuint)i), c0);
                c1 = Vector256.MultiplyAddEstimate(Vector256.LoadUnsafe(ref As, (nuint)(i + 8)), Vector256.LoadUnsafe(ref Bs, (nuint)(i + 8)), c1);
                c2 = Vector256.MultiplyAddEstimate(Vector256.LoadUnsafe(ref As, (nuint)(i + 16)), Vector256.LoadUnsafe(ref Bs, (nuint)(i + 16)), c2);
                c3 = Vector256.MultiplyAddEstimate(Vector256.LoadUnsafe(ref As, (nuint)(i + 24)), Vector256.LoadUnsafe(ref Bs, (nuint)(i + 24)), c3);
            }
            for (; i <= n - 8; i += 8)
                c0 = Vector256.MultiplyAddEstimate(Vector256.LoadUnsafe(ref As, (nuint)i), Vector256.LoadUnsafe(ref Bs, (nuint)i), c0);
            sum += Vector256.Sum((c0 + c1) + (c2 + c3));
        }
        if (Vector128.IsHardwareAccelerated && n - i >= 4)
        {
            Vector128<float> c0 = Vector128<float>.Zero, c1 = c0;
            for (; i <= n - 8; i += 8)
            {
                c0 = Vector128.MultiplyAddEstimate(Vector128.LoadUnsafe(ref As, (nuint)i), Vector128.LoadUnsafe(ref Bs, (nuint)i), c0);
                c1 = Vector128.MultiplyAddEstimate(Vector128.LoadUnsafe(ref As, (nuint)(i + 4)), Vector128.LoadUnsafe(ref Bs, (nuint)(i + 4)), c1);
            }
            for (; i <= n - 4; i += 4)
                c0 = Vector128.MultiplyAddEstimate(Vector128.LoadUnsafe(ref As, (nuint)i), Vector128.LoadUnsafe(ref Bs, (nuint)i), c0);
            sum += Vector128.Sum(c0 + c1);
        }
        for (; i < n; i++) sum += Unsafe.Add(ref As, i) * Unsafe.Add(ref Bs, i);
        return sum;
    }

    /// <summary>y[i] += alpha·x[i]. x: (N), y: (N), not overlapping x.</summary>
    public static void Axpy(float alpha, ReadOnlySpan<float> x, Span<float> y)
    {
        if (y.Length != x.Length)
            throw new ArgumentException($"Axpy of x with {x.Length} and y with {y.Length} elements; they must be the same length.", nameof(y));
        Elementwise.Map(x, y, y, new AxpyOperator(alpha));
    }

    /// <summary>y[i] = alpha·x[i]. x: (N), y: (N), may be x (in place).</summary>
    public static void Scale(ReadOnlySpan<float> x, float alpha, Span<float> y) => Elementwise.Map(x, y, new ScaleOperator(alpha));

    /// <summary>dst[i] = a[i] + b[i]. a, b, dst: (N); dst may be a or b.</summary>
    public static void Add(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> dst) => Elementwise.Map(a, b, dst, default(AddOperator));

    /// <summary>dst[i] = a[i]·b[i]. a, b, dst: (N); dst may be a or b.</summary>
    public static void Multiply(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> dst) => Elementwise.Map(a, b, dst, default(MultiplyOperator));

    /// <summary>The largest element of x: (N), N ≥ 1. NaN if any element is NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Max(ReadOnlySpan<float> x)
    {
        if (x.IsEmpty) throw new ArgumentException("Max of an empty span is undefined; pass at least one element.", nameof(x));
        ref float xs = ref MemoryMarshal.GetReference(x);
        nint n = x.Length, i = 0;
        float max = float.NegativeInfinity;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            Vector512<float> m = Vector512.Create(float.NegativeInfinity);
            for (; i <= n - 16; i += 16) m = Vector512.Max(m, Vector512.LoadUnsafe(ref xs, (nuint)i));
            max = MaxAcross(m);
        }
        if (Vector256.IsHardwareAccelerated && n - i >= 8)
        {
            Vector256<float> m = Vector256.Create(max);
            for (; i <= n - 8; i += 8) m = Vector256.Max(m, Vector256.LoadUnsafe(ref xs, (nuint)i));
            max = MaxAcross(m);
        }
        if (Vector128.IsHardwareAccelerated && n - i >= 4)
        {
            Vector128<float> m = Vector128.Create(max);
            for (; i <= n - 4; i += 4) m = Vector128.Max(m, Vector128.LoadUnsafe(ref xs, (nuint)i));
            max = MaxAcross(m);
        }
        for (; i < n; i++) max = MathF.Max(max, Unsafe.Add(ref xs, i));
        return max;
    }

    /// <summary>
    /// Σ x[i], accumulated in double (as ggml's <c>ggml_vec_sum_f32</c> does) and rounded once to float.
    /// x: (N).
    /// </summary>
    public static float Sum(ReadOnlySpan<float> x) => (float)SumDouble(x);

    /// <summary>Σ x[i] in double. x: (N).</summary>
    public static double SumDouble(ReadOnlySpan<float> x) => SumOf<IdentityOperator>(x, default);

    /// <summary>Σ x[i]² in double, each square rounded to float first (ggml's rms_norm sum). x: (N).</summary>
    public static double SumOfSquaresDouble(ReadOnlySpan<float> x) => SumOf<SquareOperator>(x, default);

    // Σ op(x[i]) with op evaluated in float and the sum kept in double vectors.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static double SumOf<TOp>(ReadOnlySpan<float> x, TOp op) where TOp : struct, IUnaryOperator
    {
        ref float xs = ref MemoryMarshal.GetReference(x);
        nint n = x.Length, i = 0;
        double sum = 0;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            Vector512<double> c0 = Vector512<double>.Zero, c1 = c0;
            for (; i <= n - 16; i += 16)
            {
                Vector512<float> v = op.Invoke(Vector512.LoadUnsafe(ref xs, (nuint)i));
                c0 += Vector512.WidenLower(v);
                c1 += Vector512.WidenUpper(v);
            }
            sum = Vector512.Sum(c0 + c1);
        }
        if (Vector256.IsHardwareAccelerated && n - i >= 8)
        {
            Vector256<double> c0 = Vector256<double>.Zero, c1 = c0;
            for (; i <= n - 8; i += 8)
            {
                Vector256<float> v = op.Invoke(Vector256.LoadUnsafe(ref xs, (nuint)i));
                c0 += Vector256.WidenLower(v);
                c1 += Vector256.WidenUpper(v);
            }
            sum += Vector256.Sum(c0 + c1);
        }
        if (Vector128.IsHardwareAccelerated && n - i >= 4)
        {
            Vector128<double> c0 = Vector128<double>.Zero, c1 = c0;
            for (; i <= n - 4; i += 4)
            {
                Vector128<float> v = op.Invoke(Vector128.LoadUnsafe(ref xs, (nuint)i));
                c0 += Vector128.WidenLower(v);
                c1 += Vector128.WidenUpper(v);
            }
            sum += Vector128.Sum(c0 + c1);
        }
        for (; i < n; i++) sum += op.Invoke(Unsafe.Add(ref xs, i));
        return sum;
    }

    private static float MaxAcross(Vector512<float> v) => MaxAcross(Vector256.Max(v.GetLower(), v.GetUpper()));

    private static float MaxAcross(Vector256<float> v) => MaxAcross(Vector128.Max(v.GetLower(), v.GetUpper()));

    private static float MaxAcross(Vector128<float> v) => MathF.Max(MathF.Max(v[0], v[1]), MathF.Max(v[2], v[3]));

    private readonly struct AxpyOperator(float alpha) : IBinaryOperator
    {
        private readonly float _alpha = alpha;

        // a = x, b = y: y + alpha·x.
        public float Invoke(float a, float b) => float.MultiplyAddEstimate(_alpha, a, b);
        public Vector128<float> Invoke(Vector128<float> a, Vector128<float> b) => Vector128.MultiplyAddEstimate(Vector128.Create(_alpha), a, b);
        public Vector256<float> Invoke(Vector256<float> a, Vector256<float> b) => Vector256.MultiplyAddEstimate(Vector256.Create(_alpha), a, b);
        public Vector512<float> Invoke(Vector512<float> a, Vector512<float> b) => Vector512.MultiplyAddEstimate(Vector512.Create(_alpha), a, b);
    }

    private readonly struct ScaleOperator(float alpha) : IUnaryOperator
    {
        private readonly float _alpha = alpha;

        public float Invoke(float x) => _alpha * x;
        public Vector128<float> Invoke(Vector128<float> x) => x * _alpha;
        public Vector256<float> Invoke(Vector256<float> x) => x * _alpha;
        public Vector512<float> Invoke(Vector512<float> x) => x * _alpha;
    }

    private readonly struct AddOperator : IBinaryOperator
    {
        public float Invoke(float a, float b) => a + b;
        public Vector128<float> Invoke(Vector128<float> a, Vector128<float> b) => a + b;
        public Vector256<float> Invoke(Vector256<float> a, Vector256<float> b) => a + b;
        public Vector512<float> Invoke(Vector512<float> a, Vector512<float> b) => a + b;
    }

    private readonly struct MultiplyOperator : IBinaryOperator
    {
        public float Invoke(float a, float b) => a * b;
        public Vector128<float> Invoke(Vector128<float> a, Vector128<float> b) => a * b;
        public Vector256<float> Invoke(Vector256<float> a, Vector256<float> b) => a * b;
        public Vector512<float> Invoke(Vector512<float> a, Vector512<float> b) => a * b;
    }

    private readonly struct IdentityOperator : IUnaryOperator
    {
        public float Invoke(float x) => x;
        public Vector128<float> Invoke(Vector128<float> x) => x;
        public Vector256<float> Invoke(Vector256<float> x) => x;
        public Vector512<float> Invoke(Vector512<float> x) => x;
    }

    private readonly struct SquareOperator : IUnaryOperator
    {
        public float Invoke(float x) => x * x;
        public Vector128<float> Invoke(Vector128<float> x) => x * x;
        public Vector256<float> Invoke(Vector256<float> x) => x * x;
        public Vector512<float> Invoke(Vector512<float> x) => x * x;
    }

    /// <summary>The definitions, one element at a time.</summary>
    internal static class Reference
    {
        /// <summary>Σ a[i]·b[i], accumulated in double.</summary>
        public static float Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
        {
            double s = 0;
            for (int i = 0; i < a.Length; i++) s += (double)a[i] * b[i];
            return (float)s;
        }

        public static void Axpy(float alpha, ReadOnlySpan<float> x, Span<float> y)
        {
            for (int i = 0; i < x.Length; i++) y[i] += alpha * x[i];
        }

        public static void Scale(ReadOnlySpan<float> x, float alpha, Span<float> y)
        {
            for (int i = 0; i < x.Length; i++) y[i] = alpha * x[i];
        }

        public static void Add(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> dst)
        {
            for (int i = 0; i < a.Length; i++) dst[i] = a[i] + b[i];
        }

        public static void Multiply(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> dst)
        {
            for (int i = 0; i < a.Length; i++) dst[i] = a[i] * b[i];
        }

        public static float Max(ReadOnlySpan<float> x)
        {
            float m = x[0];
            for (int i = 1; i < x.Length; i++) m = MathF.Max(m, x[i]);
            return m;
        }

        /// <summary>Σ x[i] in double, in order (ggml_vec_sum_f32).</summary>
        public static float Sum(ReadOnlySpan<float> x)
        {
            double s = 0;
            for (int i = 0; i < x.Length; i++) s += x[i];
            return (float)s;
        }
    }
}
