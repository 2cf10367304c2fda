using System.Runtime.CompilerServices;
using ModelSmith.Tensors;

namespace ModelSmith.Training;

/// <summary>
/// Layer normalisation of each row, with its backward pass: y = (x − μ)·r ⊙ w + b, r = 1/√(var + eps).
/// The forward rounds as the inference kernel (<see cref="LayerNorm"/>) does: μ from a double sum rounded
/// to float, the variance of the float-centred row in double, then ((x − μ)·r)·w + b.
/// </summary>
internal static unsafe class LayerNormLayer
{
    /// <summary>x: (N, C), weight: (C), bias: (C), y: (N, C), mean: (N), rstd: (N).</summary>
    public static void Forward(ComputePool pool, float* x, float* weight, float* bias, float eps, int n, int c, float* y, float* mean, float* rstd)
    {
        var k = new ForwardRows { X = x, Weight = weight, Bias = bias, Eps = eps, C = c, Y = y, Mean = mean, Rstd = rstd };
        RowParallel.For(pool, n, RowParallel.Chunk(pool, n), in k);
    }

    /// <summary>
    /// With x̂ = (x − μ)·r and g = w ⊙ dy: dx += r·(g − mean(g) − x̂·mean(g ⊙ x̂)), dw += Σ_t dy ⊙ x̂, db += Σ_t dy.
    /// dy: (N, C), x: (N, C), weight: (C), mean, rstd: (N), dx: (N, C) accumulated, dweight, dbias: (C) accumulated, or both null for frozen parameters.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Backward(ComputePool pool, float* dy, float* x, float* weight, float* mean, float* rstd, int n, int c, float* dx, float* dweight, float* dbias)
    {
        var k = new BackwardRows { Dy = dy, X = x, Weight = weight, Mean = mean, Rstd = rstd, C = c, Dx = dx };
        RowParallel.For(pool, n, RowParallel.Chunk(pool, n), in k);
        if (dweight == null) return;
        ColumnSums.SumNormalized(pool, dy, x, mean, rstd, n, c, dweight);
        ColumnSums.Sum(pool, dy, n, c, dbias);
    }

    private struct ForwardRows : IRowsKernel
    {
        public float* X, Weight, Bias, Y, Mean, Rstd;
        public float Eps;
        public int C;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Run(int start, int end, int worker)
        {
            for (int t = start; t < end; t++)
            {
                var x = new ReadOnlySpan<float>(X + (long)t * C, C);
                var y = new Span<float>(Y + (long)t * C, C);
                float mu = (float)VectorOps.SumDouble(x) / C;
                for (int i = 0; i < C; i++) y[i] = x[i] - mu;
                float variance = (float)(VectorOps.SumOfSquaresDouble(y) / C);
                float r = 1.0f / MathF.Sqrt(variance + Eps);
                Mean[t] = mu;
                Rstd[t] = r;
                RowMath.Normalize(X + (long)t * C, mu, r, Weight, Bias, Y + (long)t * C, C);
            }
        }
    }

    private struct BackwardRows : IRowsKernel
    {
        public float* Dy, X, Weight, Mean, Rstd, Dx;
        public int C;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Run(int start, int end, int worker)
        {
            var w = new ReadOnlySpan<float>(Weight, C);
            for (int t = start; t < end; t++)
            {
                var x = new ReadOnlySpan<float>(X + (long)t * C, C);
                var dy = new ReadOnlySpan<float>(Dy + (long)t * C, C);
                var dx = new Span<float>(Dx + (long)t * C, C);
                float mu = Mean[t], r = Rstd[t];
                double sumG = 0, sumGx = 0;
                for (int i = 0; i < C; i++)
                {
                    float g = w[i] * dy[i];
                    sumG += g;
                    sumGx += g * ((x[i] - mu) * r);
                }
                float meanG = (float)(sumG / C), meanGx = (float)(sumGx / C);
                for (int i = 0; i < C; i++)
                {
                    float xhat = (x[i] - mu) * r;
                    dx[i] += r * (w[i] * dy[i] - meanG - xhat * meanGx);
                }
            }
        }
    }
}
