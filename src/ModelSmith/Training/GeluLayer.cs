using System.Runtime.CompilerServices;
using ModelSmith.Tensors;

namespace ModelSmith.Training;

/// <summary>
/// GPT-2's GELU, tanh approximation in float (the formula of <see cref="Activations.GeluTanh"/>, through
/// <see cref="RowMath"/>'s exp), and its backward pass:
/// y = ½x(1 + tanh u), u = √(2/π)(x + 0.044715x³);
/// dy/dx = ½(1 + tanh u) + ½x(1 − tanh²u)·√(2/π)(1 + 3·0.044715x²).
/// </summary>
/// <remarks>
/// The inference engine evaluates GELU through ggml's binary16 table to match llama.cpp (relative error up to
/// ~5e-4); training uses the smooth formula GPT-2 was trained with, since the table has no useful gradient.
/// </remarks>
internal static unsafe class GeluLayer
{
    /// <summary>
    /// x: (N), y: (N); N is any element count. <paramref name="ggmlTable"/> evaluates GELU through ggml's binary16
    /// table instead (<see cref="Activations.GeluGgml"/>), as llama.cpp and the inference engine do, to compare logits; the backward
    /// pass is the smooth formula's either way.
    /// </summary>
    public static void Forward(ComputePool pool, float* x, long n, float* y, bool ggmlTable = false)
    {
        var k = new ForwardRows { X = x, Y = y, N = n, Table = ggmlTable };
        RowParallel.For(pool, Chunks(n), 1, in k);
    }

    /// <summary>dx = dy ⊙ gelu'(x). dy, x, dx: (N); dx may be dy.</summary>
    public static void Backward(ComputePool pool, float* dy, float* x, long n, float* dx)
    {
        var k = new BackwardRows { Dy = dy, X = x, Dx = dx, N = n };
        RowParallel.For(pool, Chunks(n), 1, in k);
    }

    private const int ChunkElements = 1 << 14;

    private static int Chunks(long n) => (int)((n + ChunkElements - 1) / ChunkElements);

    private struct ForwardRows : IRowsKernel
    {
        public float* X, Y;
        public long N;
        public bool Table;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Run(int start, int end, int worker)
        {
            long i0 = (long)start * ChunkElements, i1 = Math.Min(N, (long)end * ChunkElements);
            var x = new ReadOnlySpan<float>(X + i0, (int)(i1 - i0));
            var y = new Span<float>(Y + i0, (int)(i1 - i0));
            if (Table) Activations.GeluGgml(x, y);
            else RowMath.Gelu(X + i0, Y + i0, (int)(i1 - i0));
        }
    }

    private struct BackwardRows : IRowsKernel
    {
        public float* Dy, X, Dx;
        public long N;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Run(int start, int end, int worker)
        {
            long i0 = (long)start * ChunkElements, i1 = Math.Min(N, (long)end * ChunkElements);
            RowMath.GeluBackward(Dy + i0, X + i0, Dx + i0, (int)(i1 - i0));
        }
    }
}
