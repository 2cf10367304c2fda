using System.Runtime.CompilerServices;
using ModelSmith.Tensors;

namespace ModelSmith.Training;

/// <summary>
/// The LoRA branch of an adapted linear layer and its backward pass: y += s·(d(x)·Aᵀ)·Bᵀ with A (r, in),
/// B (out, r), d the adapter-input dropout (each element kept with probability 1 − p and scaled by 1/(1 − p)).
/// The base product x·Wᵀ is <see cref="Linear"/>'s; with the base frozen its weight gradient is never formed.
/// </summary>
/// <remarks>
/// Dropout masks come from a counter-based hash of (key, element index), so the forward and backward passes
/// rebuild the same mask without storing it, every thread count draws the same mask, and a checkpoint only
/// needs the key counter.
/// </remarks>
internal static unsafe class LoraLinear
{
    /// <summary>
    /// y[:, column..column+out) += hsᵀ·Bᵀ with hsᵀ = s·A·d(x)ᵀ kept for the backward pass. The small rank is
    /// the products' row count, never their column count, so the GEMM's wide tiles stay full.
    /// x: (N, In); a: (r, In); b: (Out, r); xd: (N, In) receives d(x) when p &gt; 0 (else unused, may be null);
    /// hsT: (r, N); y: (N, ldy).
    /// </summary>
    public static void Forward(ComputePool pool, GemmBuffer buffer, float* x, int n, int inDim, int outDim, int rank, float* a, float* b, float scale,
        float dropout, ulong key, float* xd, float* hsT, float* y, int ldy)
    {
        float* input = x;
        if (dropout > 0)
        {
            var k = new DropoutRows { X = x, Y = xd, In = inDim, P = dropout, Key = key };
            RowParallel.For(pool, n, RowParallel.Chunk(pool, n), in k);
            input = xd;
        }
        Gemm.Multiply(pool, buffer, Strided.Rows(a, inDim), Strided.Columns(input, inDim), rank, n, inDim, hsT, n, accumulate: false);
        VectorOps.Scale(new Span<float>(hsT, n * rank), scale, new Span<float>(hsT, n * rank));
        Gemm.Multiply(pool, buffer, Strided.Columns(hsT, n), Strided.Columns(b, rank), n, outDim, rank, y, ldy, accumulate: true);
    }

    /// <summary>
    /// dB += (hsᵀ·dy)ᵀ, dhᵀ = s·Bᵀ·dyᵀ, dA += dhᵀ·d(x), dx += d'(dh·A).
    /// dy: (N, ldy) with this layer's columns first; x, xd, hsT as kept by <see cref="Forward"/>; dx: (N, In)
    /// accumulated; scratch: dbT (r, Out), dhT (r, N), and dxd (N, In) when p &gt; 0.
    /// </summary>
    public static void Backward(ComputePool pool, GemmBuffer buffer, float* dy, int ldy, float* x, float* xd, float* hsT, int n, int inDim, int outDim, int rank,
        float* a, float* b, float scale, float dropout, ulong key, float* dx, float* da, float* db, float* dbT, float* dhT, float* dxd)
    {
        Gemm.Multiply(pool, buffer, Strided.Rows(hsT, n), new Strided(dy, ldy, 1), rank, outDim, n, dbT, outDim, accumulate: false);
        for (int o = 0; o < outDim; o++)
            for (int k = 0; k < rank; k++) db[o * rank + k] += dbT[k * outDim + o];
        Gemm.Multiply(pool, buffer, Strided.Columns(b, rank), new Strided(dy, 1, ldy), rank, n, outDim, dhT, n, accumulate: false);
        VectorOps.Scale(new Span<float>(dhT, n * rank), scale, new Span<float>(dhT, n * rank));
        float* input = dropout > 0 ? xd : x;
        Gemm.Multiply(pool, buffer, Strided.Rows(dhT, n), Strided.Rows(input, inDim), rank, inDim, n, da, inDim, accumulate: true);
        if (dropout > 0)
        {
            Gemm.Multiply(pool, buffer, Strided.Columns(dhT, n), Strided.Rows(a, inDim), n, inDim, rank, dxd, inDim, accumulate: false);
            var k = new DropoutBackwardRows { Dxd = dxd, Dx = dx, In = inDim, P = dropout, Key = key };
            RowParallel.For(pool, n, RowParallel.Chunk(pool, n), in k);
        }
        else
        {
            Gemm.Multiply(pool, buffer, Strided.Columns(dhT, n), Strided.Rows(a, inDim), n, inDim, rank, dx, inDim, accumulate: true);
        }
    }

    /// <summary>Whether element <paramref name="index"/> survives dropout p under <paramref name="key"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Keep(ulong key, long index, float p)
    {
        ulong z = key + (ulong)index * 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return (z >> 40) * (1f / (1 << 24)) >= p;
    }

    private struct DropoutRows : IRowsKernel
    {
        public float* X, Y;
        public int In;
        public float P;
        public ulong Key;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Run(int start, int end, int worker)
        {
            float keep = 1f / (1f - P);
            for (long i = (long)start * In; i < (long)end * In; i++) Y[i] = Keep(Key, i, P) ? X[i] * keep : 0f;
        }
    }

    private struct DropoutBackwardRows : IRowsKernel
    {
        public float* Dxd, Dx;
        public int In;
        public float P;
        public ulong Key;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Run(int start, int end, int worker)
        {
            float keep = 1f / (1f - P);
            for (long i = (long)start * In; i < (long)end * In; i++)
                if (Keep(Key, i, P)) Dx[i] += Dxd[i] * keep;
        }
    }
}
