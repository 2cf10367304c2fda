using System.Runtime.CompilerServices;
using ModelSmith.Tensors;

namespace ModelSmith.Training;

/// <summary>
/// A linear layer y = x·Wᵀ + b with W stored (out, in) as GGUF stores it, and its backward pass; all three
/// products go through <see cref="Gemm"/> (transposes are strided packs, never copies).
/// </summary>
internal static unsafe class Linear
{
    /// <summary>
    /// y = residual + x·Wᵀ + b. x: (N, In), w: (Out, In), bias: (Out) or null, residual: (N, Out) or null,
    /// y: (N, Out), may be residual. Each output's multiply-add chain starts from residual + bias, which fuses
    /// the residual connection into the product.
    /// </summary>
    public static void Forward(ComputePool pool, GemmBuffer buffer, float* x, float* w, float* bias, int n, int inDim, int outDim, float* y, float* residual = null)
    {
        bool initialised = bias != null || residual != null;
        if (initialised)
        {
            var k = new StartRows { Bias = bias, Residual = residual, Y = y, Out = outDim };
            RowParallel.For(pool, n, RowParallel.Chunk(pool, n), in k);
        }
        Gemm.Multiply(pool, buffer, Strided.Rows(x, inDim), Strided.Columns(w, inDim), n, outDim, inDim, y, outDim, accumulate: initialised);
    }

    /// <summary>
    /// dx = dy·W (or dx += dy·W when <paramref name="accumulateDx"/>), dW += dyᵀ·x, db += Σ_t dy.
    /// dy: (N, Out), x: (N, In), w: (Out, In), dx: (N, In), dw: (Out, In) or null (frozen weight), dbias: (Out) or null.
    /// </summary>
    public static void Backward(ComputePool pool, GemmBuffer buffer, float* dy, float* x, float* w, int n, int inDim, int outDim, float* dx, bool accumulateDx, float* dw, float* dbias)
    {
        Gemm.Multiply(pool, buffer, Strided.Rows(dy, outDim), Strided.Rows(w, inDim), n, inDim, outDim, dx, inDim, accumulateDx);
        if (dw != null) Gemm.Multiply(pool, buffer, Strided.Columns(dy, outDim), Strided.Rows(x, inDim), outDim, inDim, n, dw, inDim, accumulate: true);
        if (dbias != null) ColumnSums.Sum(pool, dy, n, outDim, dbias);
    }

    // y[t] = residual[t] + bias, the starting value of row t's multiply-add chains.
    private struct StartRows : IRowsKernel
    {
        public float* Bias, Residual, Y;
        public int Out;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Run(int start, int end, int worker)
        {
            for (int t = start; t < end; t++)
            {
                float* row = Y + (long)t * Out;
                if (Residual == null) new ReadOnlySpan<float>(Bias, Out).CopyTo(new Span<float>(row, Out));
                else
                {
                    if (Residual != Y) new ReadOnlySpan<float>(Residual + (long)t * Out, Out).CopyTo(new Span<float>(row, Out));
                    if (Bias != null) VectorOps.Add(new ReadOnlySpan<float>(row, Out), new ReadOnlySpan<float>(Bias, Out), new Span<float>(row, Out));
                }
            }
        }
    }
}
