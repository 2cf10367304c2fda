using System.Runtime.CompilerServices;
using ModelSmith.Tensors;

namespace ModelSmith.Training;

/// <summary>Work on a range of independent rows [start, end).</summary>
internal interface IRowsKernel
{
    void Run(int start, int end, int worker);
}

/// <summary>
/// Runs a row-wise kernel over [0, rows) on a pool in fixed chunks. Rows are independent and each is done
/// the same way whatever chunk or thread it lands in, so results do not depend on the thread count.
/// </summary>
internal static class RowParallel
{
    /// <summary>Calls kernel.Run on chunks of about <paramref name="chunk"/> rows across the pool.</summary>
    public static void For<TK>(ComputePool pool, int rows, int chunk, in TK kernel) where TK : struct, IRowsKernel
    {
        if (rows <= 0) return;
        chunk = Math.Max(1, chunk);
        var job = new Job<TK> { Kernel = kernel, Rows = rows, Chunk = chunk };
        pool.Run(in job, (rows + chunk - 1) / chunk);
    }

    /// <summary>A chunk size giving each thread several chunks of at least <paramref name="minimum"/> rows.</summary>
    public static int Chunk(ComputePool pool, int rows, int minimum = 8) => Math.Max(minimum, rows / (4 * pool.ThreadCount));

    private struct Job<TK> : IParallelJob where TK : struct, IRowsKernel
    {
        public TK Kernel;
        public int Rows, Chunk;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int item, int worker)
        {
            int start = item * Chunk;
            TK k = Kernel;
            k.Run(start, Math.Min(Rows, start + Chunk), worker);
        }
    }
}
