using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using ModelSmith.Tensors;

namespace ModelSmith.Training;

/// <summary>
/// Row kernels of the training step that need an exponential (softmax, cross-entropy, SwiGLU, GELU), written
/// once over <see cref="IFloatVector{TV}"/> and run at the widest accelerated width, the tail with the
/// same math in scalars. All inputs are raw rows of n floats.
/// </summary>
internal static unsafe class RowMath
{
    private const float GeluC1 = -2f * 0.79788456080286535587989211986876f; // −2√(2/π)
    private const float GeluC3 = GeluC1 * 0.044715f;

    /// <summary>
    /// Σ exp((x − shift)·scale) over x: (n), writing each exponential to y: (n) when y is not null (y may be x).
    /// Lanes sum in float within blocks of 1024 elements, blocks in double.
    /// </summary>
    public static double SumExp(float* x, int n, float shift, float scale, float* y)
    {
        double total = 0;
        for (int i0 = 0; i0 < n; i0 += 1024)
        {
            int m = Math.Min(1024, n - i0);
            float* yb = y == null ? null : y + i0;
            if (Vector512.IsHardwareAccelerated) total += SumExp<Vector512<float>, F512>(x + i0, m, shift, scale, yb);
            else if (Vector256.IsHardwareAccelerated) total += SumExp<Vector256<float>, F256>(x + i0, m, shift, scale, yb);
            else if (Vector128.IsHardwareAccelerated) total += SumExp<Vector128<float>, F128>(x + i0, m, shift, scale, yb);
            else total += SumExp<float, F1>(x + i0, m, shift, scale, yb);
        }
        return total;
    }

    /// <summary>
    /// Softmax of the first <paramref name="length"/> elements of a row of <paramref name="n"/> scores, each
    /// score multiplied by <paramref name="scale"/> first; the rest of the row is set to 0. In place.
    /// </summary>
    public static void SoftmaxPrefix(float* row, int length, int n, float scale)
    {
        float max = VectorOps.Max(new ReadOnlySpan<float>(row, length));
        float inv = (float)(1.0 / SumExp(row, length, max, scale, row));
        Map(row, length, new Scale(inv));
        new Span<float>(row + length, n - length).Clear();
    }

    /// <summary>
    /// The softmax backward of one row in place: dp[j] = p[j]·(dp[j] − Σ_k p[k]·dp[k])·scale for j &lt; length,
    /// 0 for length ≤ j &lt; n. p, dp: (n).
    /// </summary>
    public static void SoftmaxBackward(float* p, float* dp, int length, int n, float scale)
    {
        int i = 0;
        float dot;
        if (Vector512.IsHardwareAccelerated) (i, dot) = Dot<Vector512<float>, F512>(p, dp, length);
        else if (Vector256.IsHardwareAccelerated) (i, dot) = Dot<Vector256<float>, F256>(p, dp, length);
        else if (Vector128.IsHardwareAccelerated) (i, dot) = Dot<Vector128<float>, F128>(p, dp, length);
        else dot = 0;
        for (; i < length; i++) dot += p[i] * dp[i];
        i = 0;
        if (Vector512.IsHardwareAccelerated) i = SoftmaxBackward<Vector512<float>, F512>(p, dp, 0, length, dot, scale);
        else if (Vector256.IsHardwareAccelerated) i = SoftmaxBackward<Vector256<float>, F256>(p, dp, 0, length, dot, scale);
        else if (Vector128.IsHardwareAccelerated) i = SoftmaxBackward<Vector128<float>, F128>(p, dp, 0, length, dot, scale);
        SoftmaxBackward<float, F1>(p, dp, i, length, dot, scale);
        new Span<float>(dp + length, n - length).Clear();
    }

    /// <summary>Σ a[i]·b[i]·c[i] in float (several lanes, then the tail). a, b, c: (n).</summary>
    public static float Dot3(float* a, float* b, float* c, int n)
    {
        int i = 0;
        float dot = 0;
        if (Vector512.IsHardwareAccelerated) (i, dot) = Dot3<Vector512<float>, F512>(a, b, c, n);
        else if (Vector256.IsHardwareAccelerated) (i, dot) = Dot3<Vector256<float>, F256>(a, b, c, n);
        else if (Vector128.IsHardwareAccelerated) (i, dot) = Dot3<Vector128<float>, F128>(a, b, c, n);
        for (; i < n; i++) dot += a[i] * b[i] * c[i];
        return dot;
    }

    /// <summary>dx += r·(w ⊙ dy − x·(r·m)): RMSNorm's input gradient given m = mean(g ⊙ x̂). w, dy, x, dx: (n).</summary>
    public static void RmsNormBackward(float* w, float* dy, float* x, float r, float m, int n, float* dx)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated) i = RmsNormBackward<Vector512<float>, F512>(w, dy, x, r, m, 0, n, dx);
        else if (Vector256.IsHardwareAccelerated) i = RmsNormBackward<Vector256<float>, F256>(w, dy, x, r, m, 0, n, dx);
        else if (Vector128.IsHardwareAccelerated) i = RmsNormBackward<Vector128<float>, F128>(w, dy, x, r, m, 0, n, dx);
        RmsNormBackward<float, F1>(w, dy, x, r, m, i, n, dx);
    }

    /// <summary>y = ((x − shift)·scale) ⊙ w (+ b): the normalisation step of RMSNorm (shift 0, no b) and LayerNorm. x, w, b, y: (n); b may be null; y may be x.</summary>
    public static void Normalize(float* x, float shift, float scale, float* w, float* b, float* y, int n)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated) i = Normalize<Vector512<float>, F512>(x, shift, scale, w, b, y, 0, n);
        else if (Vector256.IsHardwareAccelerated) i = Normalize<Vector256<float>, F256>(x, shift, scale, w, b, y, 0, n);
        else if (Vector128.IsHardwareAccelerated) i = Normalize<Vector128<float>, F128>(x, shift, scale, w, b, y, 0, n);
        Normalize<float, F1>(x, shift, scale, w, b, y, i, n);
    }

    /// <summary>x[i] = exp(x[i] − shift)·scale, in place. x: (n).</summary>
    public static void ExpShiftScale(float* x, int n, float shift, float scale) => Map(x, n, new ExpShift(shift, scale));

    /// <summary>y = silu(g) ⊙ u = g / (1 + e^−g) · u. g, u, y: (n).</summary>
    public static void SwiGlu(float* g, float* u, float* y, int n)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated) i = SwiGlu<Vector512<float>, F512>(g, u, y, 0, n);
        else if (Vector256.IsHardwareAccelerated) i = SwiGlu<Vector256<float>, F256>(g, u, y, 0, n);
        else if (Vector128.IsHardwareAccelerated) i = SwiGlu<Vector128<float>, F128>(g, u, y, 0, n);
        SwiGlu<float, F1>(g, u, y, i, n);
    }

    /// <summary>With s = σ(g): dg = da·u·s·(1 + g(1 − s)), du = da·g·s. da, g, u, dg, du: (n).</summary>
    public static void SwiGluBackward(float* da, float* g, float* u, float* dg, float* du, int n)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated) i = SwiGluBackward<Vector512<float>, F512>(da, g, u, dg, du, 0, n);
        else if (Vector256.IsHardwareAccelerated) i = SwiGluBackward<Vector256<float>, F256>(da, g, u, dg, du, 0, n);
        else if (Vector128.IsHardwareAccelerated) i = SwiGluBackward<Vector128<float>, F128>(da, g, u, dg, du, 0, n);
        SwiGluBackward<float, F1>(da, g, u, dg, du, i, n);
    }

    /// <summary>GELU (tanh approximation) as x·σ(2u) = x / (1 + e^(x(C₁ + C₃x²))). x, y: (n), y may be x.</summary>
    public static void Gelu(float* x, float* y, int n)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated) i = Gelu<Vector512<float>, F512>(x, y, 0, n);
        else if (Vector256.IsHardwareAccelerated) i = Gelu<Vector256<float>, F256>(x, y, 0, n);
        else if (Vector128.IsHardwareAccelerated) i = Gelu<Vector128<float>, F128>(x, y, 0, n);
        Gelu<float, F1>(x, y, i, n);
    }

    /// <summary>dx = dy · gelu'(x), gelu'(x) = σ + x·σ(1 − σ)·2u′, σ = σ(2u). dy, x, dx: (n), dx may be dy.</summary>
    public static void GeluBackward(float* dy, float* x, float* dx, int n)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated) i = GeluBackward<Vector512<float>, F512>(dy, x, dx, 0, n);
        else if (Vector256.IsHardwareAccelerated) i = GeluBackward<Vector256<float>, F256>(dy, x, dx, 0, n);
        else if (Vector128.IsHardwareAccelerated) i = GeluBackward<Vector128<float>, F128>(dy, x, dx, 0, n);
        GeluBackward<float, F1>(dy, x, dx, i, n);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static (int End, float Dot) Dot<TV, TS>(float* a, float* b, int n) where TV : unmanaged where TS : IFloatVector<TV>
    {
        int l = TS.Lanes, i = 0;
        TV acc = TS.Create(0f);
        for (; i <= n - l; i += l) acc = TS.FusedMultiplyAdd(TS.Load(a + i), TS.Load(b + i), acc);
        return (i, TS.Sum(acc));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int Normalize<TV, TS>(float* x, float shift, float scale, float* w, float* b, float* y, int i, int n) where TV : unmanaged where TS : IFloatVector<TV>
    {
        int l = TS.Lanes;
        TV sh = TS.Create(shift), sc = TS.Create(scale);
        for (; i <= n - l; i += l)
        {
            TV v = TS.Multiply(TS.Multiply(TS.Subtract(TS.Load(x + i), sh), sc), TS.Load(w + i));
            if (b != null) v = TS.Add(v, TS.Load(b + i));
            TS.Store(v, y + i);
        }
        return i;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static (int End, float Dot) Dot3<TV, TS>(float* a, float* b, float* c, int n) where TV : unmanaged where TS : IFloatVector<TV>
    {
        int l = TS.Lanes, i = 0;
        TV acc = TS.Create(0f);
        for (; i <= n - l; i += l) acc = TS.FusedMultiplyAdd(TS.Multiply(TS.Load(a + i), TS.Load(b + i)), TS.Load(c + i), acc);
        return (i, TS.Sum(acc));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int RmsNormBackward<TV, TS>(float* w, float* dy, float* x, float r, float m, int i, int n, float* dx) where TV : unmanaged where TS : IFloatVector<TV>
    {
        int l = TS.Lanes;
        TV rv = TS.Create(r), rm = TS.Create(r * m);
        for (; i <= n - l; i += l)
        {
            TV g = TS.Subtract(TS.Multiply(TS.Load(w + i), TS.Load(dy + i)), TS.Multiply(TS.Load(x + i), rm));
            TS.Store(TS.Add(TS.Load(dx + i), TS.Multiply(rv, g)), dx + i);
        }
        return i;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int SoftmaxBackward<TV, TS>(float* p, float* dp, int i, int n, float dot, float scale) where TV : unmanaged where TS : IFloatVector<TV>
    {
        int l = TS.Lanes;
        TV d = TS.Create(dot), s = TS.Create(scale);
        for (; i <= n - l; i += l) TS.Store(TS.Multiply(TS.Multiply(TS.Load(p + i), TS.Subtract(TS.Load(dp + i), d)), s), dp + i);
        return i;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float SumExp<TV, TS>(float* x, int n, float shift, float scale, float* y) where TV : unmanaged where TS : IFloatVector<TV>
    {
        int l = TS.Lanes, i = 0;
        TV acc = TS.Create(0f), sh = TS.Create(shift), sc = TS.Create(scale);
        for (; i <= n - l; i += l)
        {
            TV e = TS.Exp(TS.Multiply(TS.Subtract(TS.Load(x + i), sh), sc));
            if (y != null) TS.Store(e, y + i);
            acc = TS.Add(acc, e);
        }
        float sum = TS.Sum(acc);
        for (; i < n; i++)
        {
            float e = F1.Exp((x[i] - shift) * scale);
            if (y != null) y[i] = e;
            sum += e;
        }
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int SwiGlu<TV, TS>(float* g, float* u, float* y, int i, int n) where TV : unmanaged where TS : IFloatVector<TV>
    {
        int l = TS.Lanes;
        TV one = TS.Create(1f), zero = TS.Create(0f);
        for (; i <= n - l; i += l)
        {
            TV gv = TS.Load(g + i);
            TS.Store(TS.Multiply(TS.Divide(gv, TS.Add(one, TS.Exp(TS.Subtract(zero, gv)))), TS.Load(u + i)), y + i);
        }
        return i;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int SwiGluBackward<TV, TS>(float* da, float* g, float* u, float* dg, float* du, int i, int n) where TV : unmanaged where TS : IFloatVector<TV>
    {
        int l = TS.Lanes;
        TV one = TS.Create(1f), zero = TS.Create(0f);
        for (; i <= n - l; i += l)
        {
            TV gv = TS.Load(g + i), uv = TS.Load(u + i), d = TS.Load(da + i);
            TV s = TS.Divide(one, TS.Add(one, TS.Exp(TS.Subtract(zero, gv))));
            TV ds = TS.Multiply(TS.Multiply(d, uv), s);
            TS.Store(TS.Multiply(ds, TS.Add(one, TS.Multiply(gv, TS.Subtract(one, s)))), dg + i);
            TS.Store(TS.Multiply(d, TS.Multiply(gv, s)), du + i);
        }
        return i;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int Gelu<TV, TS>(float* x, float* y, int i, int n) where TV : unmanaged where TS : IFloatVector<TV>
    {
        int l = TS.Lanes;
        TV one = TS.Create(1f), c1 = TS.Create(GeluC1), c3 = TS.Create(GeluC3);
        for (; i <= n - l; i += l)
        {
            TV xv = TS.Load(x + i);
            TV a = TS.Multiply(xv, TS.Add(c1, TS.Multiply(c3, TS.Multiply(xv, xv))));
            TS.Store(TS.Divide(xv, TS.Add(one, TS.Exp(a))), y + i);
        }
        return i;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int GeluBackward<TV, TS>(float* dy, float* x, float* dx, int i, int n) where TV : unmanaged where TS : IFloatVector<TV>
    {
        int l = TS.Lanes;
        TV one = TS.Create(1f), c1 = TS.Create(GeluC1), c3 = TS.Create(GeluC3), three = TS.Create(3f), zero = TS.Create(0f);
        for (; i <= n - l; i += l)
        {
            TV xv = TS.Load(x + i);
            TV x2 = TS.Multiply(xv, xv);
            TV s = TS.Divide(one, TS.Add(one, TS.Exp(TS.Multiply(xv, TS.Add(c1, TS.Multiply(c3, x2))))));
            // 2u' = −(C₁ + 3C₃x²)
            TV du2 = TS.Subtract(zero, TS.Add(c1, TS.Multiply(three, TS.Multiply(c3, x2))));
            TV grad = TS.Add(s, TS.Multiply(TS.Multiply(xv, TS.Multiply(s, TS.Subtract(one, s))), du2));
            TS.Store(TS.Multiply(TS.Load(dy + i), grad), dx + i);
        }
        return i;
    }

    /// <summary>An in-place element-wise map at every width.</summary>
    private interface IMap
    {
        TV Apply<TV, TS>(TV x) where TV : unmanaged where TS : IFloatVector<TV>;
    }

    private static void Map<TOp>(float* x, int n, TOp op) where TOp : struct, IMap
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated) i = Map<Vector512<float>, F512, TOp>(x, 0, n, op);
        else if (Vector256.IsHardwareAccelerated) i = Map<Vector256<float>, F256, TOp>(x, 0, n, op);
        else if (Vector128.IsHardwareAccelerated) i = Map<Vector128<float>, F128, TOp>(x, 0, n, op);
        Map<float, F1, TOp>(x, i, n, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int Map<TV, TS, TOp>(float* x, int i, int n, TOp op) where TV : unmanaged where TS : IFloatVector<TV> where TOp : struct, IMap
    {
        int l = TS.Lanes;
        for (; i <= n - l; i += l) TS.Store(op.Apply<TV, TS>(TS.Load(x + i)), x + i);
        return i;
    }

    private readonly struct Scale(float factor) : IMap
    {
        private readonly float _factor = factor;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public TV Apply<TV, TS>(TV x) where TV : unmanaged where TS : IFloatVector<TV> => TS.Multiply(x, TS.Create(_factor));
    }

    private readonly struct ExpShift(float shift, float scale) : IMap
    {
        private readonly float _shift = shift, _scale = scale;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public TV Apply<TV, TS>(TV x) where TV : unmanaged where TS : IFloatVector<TV> => TS.Multiply(TS.Exp(TS.Subtract(x, TS.Create(_shift))), TS.Create(_scale));
    }
}
