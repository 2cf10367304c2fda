using System.Runtime.CompilerServices;
using ModelSmith.Tensors;

namespace ModelSmith.Training;

/// <summary>
/// RMS normalisation of each row, with its backward pass: y = x · r ⊙ w, r = 1/√(mean(x²) + eps).
/// The forward rounds exactly as the inference kernel (<see cref="RmsNorm"/>) does: the sum of squares in
/// double, r in float, then (x·r)·w.
/// </summary>
internal static unsafe class RmsNormLayer
{
    /// <summary>
    /// y[t] = x[t]·r[t] ⊙ w and rstd[t] = r[t] for every row.
    /// x: (N, C), weight: (C), y: (N, C), rstd: (N).
    /// </summary>
    public static void Forward(ComputePool pool, float* x, float* weight, float eps, int n, int c, float* y, float* rstd)
    {
        var k = new ForwardRows { X = x, Weight = weight, Eps = eps, C = c, Y = y, Rstd = rstd };
        RowParallel.For(pool, n, RowParallel.Chunk(pool, n), in k);
    }

    /// <summary>
    /// With g = w ⊙ dy and x̂ = x·r: dx += r·(g − x̂·mean(g ⊙ x̂)) and dw += Σ_t dy ⊙ x̂.
    /// dy: (N, C), x: (N, C), weight: (C), rstd: (N), dx: (N, C) accumulated (may not alias dy), dweight: (C) accumulated, or null for a frozen weight.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Backward(ComputePool pool, float* dy, float* x, float* weight, float* rstd, int n, int c, float* dx, float* dweight)
    {
        var k = new BackwardRows { Dy = dy, X = x, Weight = weight, Rstd = rstd, C = c, Dx = dx };
        RowParallel.For(pool, n, RowParallel.Chunk(pool, n), in k);
        if (dweight != null) ColumnSums.SumScaled(pool, dy, x, rstd, n, c, dweight);
    }

    private struct ForwardRows : IRowsKernel
    {
        public float* X, Weight, Y, Rstd;
        public float Eps;
        public int C;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Run(int start, int end, int worker)
        {
            for (int t = start; t < end; t++)
            {
                float* x = X + (long)t * C;
                float r = RmsNorm.Scale(VectorOps.SumOfSquaresDouble(new ReadOnlySpan<float>(x, C)), C, Eps);
                Rstd[t] = r;
                RowMath.Normalize(x, 0f, r, Weight, null, Y + (long)t * C, C);
            }
        }
    }

    private struct BackwardRows : IRowsKernel
    {
        public float* Dy, X, Weight, Rstd, Dx;
        public int C;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Run(int start, int end, int worker)
        {
            for (int t = start; t < end; t++)
            {
                float* x = X + (long)t * C, dy = Dy + (long)t * C, dx = Dx + (long)t * C;
                float r = Rstd[t];
                // mean(g ⊙ x̂) = r · mean(w ⊙ dy ⊙ x)
                float m = RowMath.Dot3(Weight, dy, x, C) / C * r;
                RowMath.RmsNormBackward(Weight, dy, x, r, m, C, dx);
            }
        }
    }
}
