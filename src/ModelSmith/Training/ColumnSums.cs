using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using ModelSmith.Tensors;

namespace ModelSmith.Training;

/// <summary>
/// Parameter gradients that sum over tokens: sum[j] += Σ_t term(t, j), for bias gradients (term = a), RMSNorm
/// scales (a·b·r) and LayerNorm scales (a·(b − μ)·r). Work is split over column chunks; within a column the
/// tokens are added in order, one lane per column, so the result is the same for every thread count and width.
/// </summary>
internal static unsafe class ColumnSums
{
    private const int ChunkColumns = 64;

    /// <summary>sum[j] += Σ_t a[t, j]. a: (N, C), sum: (C).</summary>
    public static void Sum(ComputePool pool, float* a, int n, int c, float* sum) => Run(pool, a, null, null, null, n, c, sum);

    /// <summary>sum[j] += Σ_t a[t, j]·(b[t, j]·r[t]). a, b: (N, C), r: (N), sum: (C).</summary>
    public static void SumScaled(ComputePool pool, float* a, float* b, float* r, int n, int c, float* sum) => Run(pool, a, b, null, r, n, c, sum);

    /// <summary>sum[j] += Σ_t a[t, j]·((b[t, j] − mean[t])·r[t]). a, b: (N, C), mean, r: (N), sum: (C).</summary>
    public static void SumNormalized(ComputePool pool, float* a, float* b, float* mean, float* r, int n, int c, float* sum) => Run(pool, a, b, mean, r, n, c, sum);

    private static void Run(ComputePool pool, float* a, float* b, float* mean, float* r, int n, int c, float* sum)
    {
        var job = new Job { A = a, B = b, Mean = mean, R = r, N = n, C = c, Sum = sum };
        pool.Run(in job, (c + ChunkColumns - 1) / ChunkColumns);
    }

    private struct Job : IParallelJob
    {
        public float* A, B, Mean, R, Sum;
        public int N, C;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int item, int worker)
        {
            int j0 = item * ChunkColumns, j1 = Math.Min(C, j0 + ChunkColumns);
            int j = j0;
            if (Vector512.IsHardwareAccelerated) j = Columns<Vector512<float>, F512>(j, j1);
            else if (Vector256.IsHardwareAccelerated) j = Columns<Vector256<float>, F256>(j, j1);
            else if (Vector128.IsHardwareAccelerated) j = Columns<Vector128<float>, F128>(j, j1);
            Columns<float, F1>(j, j1);
        }

        // One register of columns at a time, walking down the rows.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private readonly int Columns<TV, TS>(int j, int end) where TV : unmanaged where TS : IFloatVector<TV>
        {
            int l = TS.Lanes;
            for (; j <= end - l; j += l)
            {
                TV acc = TS.Load(Sum + j);
                float* a = A + j, b = B + j;
                for (int t = 0; t < N; t++, a += C, b += C)
                {
                    TV term = TS.Load(a);
                    if (B != null)
                    {
                        TV x = TS.Load(b);
                        if (Mean != null) x = TS.Subtract(x, TS.Create(Mean[t]));
                        term = TS.Multiply(term, TS.Multiply(x, TS.Create(R[t])));
                    }
                    acc = TS.Add(acc, term);
                }
                TS.Store(acc, Sum + j);
            }
            return j;
        }
    }
}
