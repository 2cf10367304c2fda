using System.Runtime.CompilerServices;
using ModelSmith.Tensors;

namespace ModelSmith.Training;

/// <summary>
/// Llama's gated feed-forward activation over a fused [gate | up] row, and its backward pass:
/// a = silu(g) ⊙ u with silu(g) = g·σ(g).
/// </summary>
internal static unsafe class SwiGluLayer
{
    /// <summary>gateUp: (N, 2F) rows [gate | up]; act: (N, F), as g / (1 + e^−g) · u like the inference kernel (with <see cref="RowMath"/>'s exp).</summary>
    public static void Forward(ComputePool pool, float* gateUp, int n, int f, float* act)
    {
        var k = new ForwardRows { GateUp = gateUp, F = f, Act = act };
        RowParallel.For(pool, n, RowParallel.Chunk(pool, n), in k);
    }

    /// <summary>
    /// dg = da ⊙ u ⊙ σ(g)·(1 + g·(1 − σ(g))), du = da ⊙ silu(g).
    /// dact: (N, F), gateUp: (N, 2F), dGateUp: (N, 2F) overwritten.
    /// </summary>
    public static void Backward(ComputePool pool, float* dact, float* gateUp, int n, int f, float* dGateUp)
    {
        var k = new BackwardRows { DAct = dact, GateUp = gateUp, F = f, DGateUp = dGateUp };
        RowParallel.For(pool, n, RowParallel.Chunk(pool, n), in k);
    }

    private struct ForwardRows : IRowsKernel
    {
        public float* GateUp, Act;
        public int F;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Run(int start, int end, int worker)
        {
            for (int t = start; t < end; t++)
            {
                float* row = GateUp + (long)t * 2 * F;
                RowMath.SwiGlu(row, row + F, Act + (long)t * F, F);
            }
        }
    }

    private struct BackwardRows : IRowsKernel
    {
        public float* DAct, GateUp, DGateUp;
        public int F;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Run(int start, int end, int worker)
        {
            for (int t = start; t < end; t++)
            {
                float* row = GateUp + (long)t * 2 * F;
                float* drow = DGateUp + (long)t * 2 * F;
                RowMath.SwiGluBackward(DAct + (long)t * F, row, row + F, drow, drow + F, F);
            }
        }
    }
}
