using System.Numerics.Tensors;
using ModelSmith.Tensors;

namespace ModelSmith.Training;

/// <summary>
/// Softmax cross-entropy over the vocabulary with an optional per-token mask, fused with its backward pass:
/// loss_t = log Σ_j exp(z_tj) − z_t,target; d loss_t / dz_tj = softmax(z_t)_j − [j = target].
/// </summary>
/// <remarks>
/// The log-sum-exp is kept per row so the backward pass rebuilds the probabilities from the logits in place
/// (no (N, V) probability buffer): dz = (exp(z − lse) − onehot)·scale for counted rows, 0 for the others.
/// </remarks>
internal static unsafe class CrossEntropy
{
    /// <summary>
    /// logits: (N, V), targets: (N), mask: (N) or null (every row counts), lse: (N) and losses: (N) written
    /// (losses are 0 for rows that do not count). Returns Σ losses over counted rows, summed in row order in
    /// double, and the number of counted rows.
    /// </summary>
    public static (double Sum, int Count) Forward(ComputePool pool, float* logits, int* targets, bool* mask, int n, int v, float* lse, float* losses)
    {
        var k = new ForwardRows { Logits = logits, Targets = targets, Mask = mask, V = v, Lse = lse, Losses = losses, Pool = pool };
        RowParallel.For(pool, n, RowParallel.Chunk(pool, n, 1), in k);
        double sum = 0;
        int count = 0;
        for (int t = 0; t < n; t++)
        {
            if (mask != null && !mask[t]) continue;
            sum += losses[t];
            count++;
        }
        return (sum, count);
    }

    /// <summary>
    /// Overwrites logits (N, V) with d(scale · Σ_counted loss_t)/dlogits. targets, mask, lse as in <see cref="Forward"/>.
    /// </summary>
    public static void Backward(ComputePool pool, float* logits, int* targets, bool* mask, float* lse, int n, int v, float scale)
    {
        var k = new BackwardRows { Logits = logits, Targets = targets, Mask = mask, V = v, Lse = lse, Scale = scale };
        RowParallel.For(pool, n, RowParallel.Chunk(pool, n, 1), in k);
    }

    private struct ForwardRows : IRowsKernel
    {
        public float* Logits, Lse, Losses;
        public int* Targets;
        public bool* Mask;
        public int V;
        public ComputePool Pool;

        public readonly void Run(int start, int end, int worker)
        {
            Span<float> e = Pool.GetScratch(worker, V);
            for (int t = start; t < end; t++)
            {
                var z = new ReadOnlySpan<float>(Logits + (long)t * V, V);
                float max = TensorPrimitives.Max(z);
                TensorPrimitives.Subtract(z, max, e);
                TensorPrimitives.Exp(e, e);
                float l = max + (float)Math.Log(VectorOps.SumDouble(e));
                Lse[t] = l;
                Losses[t] = Mask != null && !Mask[t] ? 0f : l - z[Targets[t]];
            }
        }
    }

    private struct BackwardRows : IRowsKernel
    {
        public float* Logits, Lse;
        public int* Targets;
        public bool* Mask;
        public int V;
        public float Scale;

        public readonly void Run(int start, int end, int worker)
        {
            for (int t = start; t < end; t++)
            {
                var z = new Span<float>(Logits + (long)t * V, V);
                if (Mask != null && !Mask[t])
                {
                    z.Clear();
                    continue;
                }
                TensorPrimitives.Subtract(z, Lse[t], z);
                TensorPrimitives.Exp(z, z);
                z[Targets[t]] -= 1f;
                TensorPrimitives.Multiply(z, Scale, z);
            }
        }
    }
}
