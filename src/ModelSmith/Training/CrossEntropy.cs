using System.Runtime.CompilerServices;
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
        var k = new ForwardRows { Logits = logits, Targets = targets, Mask = mask, V = v, Lse = lse, Losses = losses };
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

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Run(int start, int end, int worker)
        {
            for (int t = start; t < end; t++)
            {
                float* z = Logits + (long)t * V;
                float max = VectorOps.Max(new ReadOnlySpan<float>(z, V));
                float l = max + (float)Math.Log(RowMath.SumExp(z, V, max, 1f, null));
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

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Run(int start, int end, int worker)
        {
            for (int t = start; t < end; t++)
            {
                float* z = Logits + (long)t * V;
                if (Mask != null && !Mask[t])
                {
                    new Span<float>(z, V).Clear();
                    continue;
                }
                RowMath.ExpShiftScale(z, V, Lse[t], Scale);
                z[Targets[t]] -= Scale;
            }
        }
    }
}
