using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ModelSmith.Tensors;

/// <summary>
/// Softmax over a row: y = exp(x − max x) / Σ exp(x − max x), as ggml's <c>soft_max</c> computes it.
/// </summary>
/// <remarks>
/// ggml (<c>ggml_vec_soft_max_f32</c>): exponentials in float, their sum in double, then every element
/// multiplied by the float <c>(float)(1.0/sum)</c>. Masked positions (−inf) come out as exactly 0. The
/// vector exponential (<see cref="Vector512.Exp(Vector512{float})"/>) and <see cref="MathF.Exp"/> agree
/// to about an ulp.
/// </remarks>
internal static class Softmax
{
    /// <summary>Softmax of the whole row. x: (N), y: (N), may be x (in place).</summary>
    public static void Forward(ReadOnlySpan<float> x, Span<float> y) => Forward(x, y, x.Length);

    /// <summary>
    /// Softmax of the first <paramref name="length"/> elements (a causal mask's visible prefix); the rest
    /// of y (up to x.Length) is set to 0. x: (N), y: (N), may be x; 0 ≤ length ≤ N.
    /// </summary>
    public static void Forward(ReadOnlySpan<float> x, Span<float> y, int length)
    {
        Elementwise.CheckOutput(x.Length, y, x, nameof(y));
        if ((uint)length > (uint)x.Length)
            throw new ArgumentOutOfRangeException(nameof(length), length, $"The softmax prefix must be within the row of {x.Length}.");
        y[length..x.Length].Clear();
        if (length == 0) return;
        ReadOnlySpan<float> xs = x[..length];
        Span<float> ys = y[..length];
        float max = VectorOps.Max(xs);
        double sum = ExpAndSum(xs, max, ys);
        VectorOps.Scale(ys, (float)(1.0 / sum), ys);
    }

    // y = exp(x − max); returns Σ y in double.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static double ExpAndSum(ReadOnlySpan<float> x, float max, Span<float> y)
    {
        ref float xs = ref MemoryMarshal.GetReference(x);
        ref float ys = ref MemoryMarshal.GetReference(y);
        nint n = x.Length, i = 0;
        double sum = 0;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            Vector512<double> s = Vector512<double>.Zero;
            Vector512<float> m = Vector512.Create(max);
            for (; i <= n - 16; i += 16)
            {
                Vector512<float> e = Vector512.Exp(Vector512.LoadUnsafe(ref xs, (nuint)i) - m);
                e.StoreUnsafe(ref ys, (nuint)i);
                s += Vector512.WidenLower(e) + Vector512.WidenUpper(e);
            }
            sum = Vector512.Sum(s);
        }
        if (Vector256.IsHardwareAccelerated && n - i >= 8)
        {
            Vector256<double> s = Vector256<double>.Zero;
            Vector256<float> m = Vector256.Create(max);
            for (; i <= n - 8; i += 8)
            {
                Vector256<float> e = Vector256.Exp(Vector256.LoadUnsafe(ref xs, (nuint)i) - m);
                e.StoreUnsafe(ref ys, (nuint)i);
                s += Vector256.WidenLower(e) + Vector256.WidenUpper(e);
            }
            sum += Vector256.Sum(s);
        }
        if (Vector128.IsHardwareAccelerated && n - i >= 4)
        {
            Vector128<double> s = Vector128<double>.Zero;
            Vector128<float> m = Vector128.Create(max);
            for (; i <= n - 4; i += 4)
            {
                Vector128<float> e = Vector128.Exp(Vector128.LoadUnsafe(ref xs, (nuint)i) - m);
                e.StoreUnsafe(ref ys, (nuint)i);
                s += Vector128.WidenLower(e) + Vector128.WidenUpper(e);
            }
            sum += Vector128.Sum(s);
        }
        for (; i < n; i++)
        {
            float e = MathF.Exp(Unsafe.Add(ref xs, i) - max);
            Unsafe.Add(ref ys, i) = e;
            sum += e;
        }
        return sum;
    }

    /// <summary>The definition, one element at a time.</summary>
    internal static class Reference
    {
        public static void Forward(ReadOnlySpan<float> x, Span<float> y, int length)
        {
            for (int i = length; i < x.Length; i++) y[i] = 0;
            if (length == 0) return;
            float max = x[0];
            for (int i = 1; i < length; i++) max = MathF.Max(max, x[i]);
            double sum = 0;
            for (int i = 0; i < length; i++)
            {
                y[i] = MathF.Exp(x[i] - max);
                sum += y[i];
            }
            float inv = (float)(1.0 / sum);
            for (int i = 0; i < length; i++) y[i] *= inv;
        }
    }
}
