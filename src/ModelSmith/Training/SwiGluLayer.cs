using ModelSmith.Tensors;

namespace ModelSmith.Training;

/// <summary>
/// Llama's gated feed-forward activation over a fused [gate | up] row, and its backward pass:
/// a = silu(g) ⊙ u with silu(g) = g·σ(g).
/// </summary>
internal static unsafe class SwiGluLayer
{
    /// <summary>gateUp: (N, 2F) rows [gate | up]; act: (N, F). Computed as the inference kernel computes it.</summary>
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

        public readonly void Run(int start, int end, int worker)
        {
            for (int t = start; t < end; t++)
            {
                float* row = GateUp + (long)t * 2 * F;
                Activations.SwiGlu(new ReadOnlySpan<float>(row, F), new ReadOnlySpan<float>(row + F, F), new Span<float>(Act + (long)t * F, F));
            }
        }
    }

    private struct BackwardRows : IRowsKernel
    {
        public float* DAct, GateUp, DGateUp;
        public int F;

        public readonly void Run(int start, int end, int worker)
        {
            for (int t = start; t < end; t++)
            {
                float* row = GateUp + (long)t * 2 * F;
                float* drow = DGateUp + (long)t * 2 * F;
                float* da = DAct + (long)t * F;
                for (int i = 0; i < F; i++)
                {
                    float g = row[i], u = row[F + i];
                    float s = 1f / (1f + MathF.Exp(-g));
                    float silu = g * s;
                    drow[i] = da[i] * u * s * (1f + g * (1f - s));
                    drow[F + i] = da[i] * silu;
                }
            }
        }
    }
}
