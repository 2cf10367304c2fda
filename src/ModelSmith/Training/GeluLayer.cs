using ModelSmith.Tensors;

namespace ModelSmith.Training;

/// <summary>
/// GPT-2's GELU, tanh approximation in float (<see cref="Activations.GeluTanh"/>), and its backward pass:
/// y = ½x(1 + tanh u), u = √(2/π)(x + 0.044715x³);
/// dy/dx = ½(1 + tanh u) + ½x(1 − tanh²u)·√(2/π)(1 + 3·0.044715x²).
/// </summary>
/// <remarks>
/// The inference engine evaluates GELU through ggml's binary16 table to match llama.cpp (relative error up to
/// ~5e-4); training uses the smooth formula GPT-2 was trained with, since the table has no useful gradient.
/// </remarks>
internal static unsafe class GeluLayer
{
    private const float SqrtTwoOverPi = 0.79788456080286535587989211986876f;
    private const float Coef = 0.044715f;

    /// <summary>
    /// x: (N), y: (N); N is any element count. <paramref name="ggmlTable"/> evaluates GELU through ggml's binary16
    /// table instead (<see cref="Activations.GeluGgml"/>), to reproduce llama.cpp's logits exactly; the backward
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

    /// <summary>The derivative of the tanh approximation at <paramref name="x"/>.</summary>
    public static float Derivative(float x)
    {
        float u = SqrtTwoOverPi * (x + Coef * x * x * x);
        float th = MathF.Tanh(u);
        return 0.5f * (1f + th) + 0.5f * x * (1f - th * th) * SqrtTwoOverPi * (1f + 3f * Coef * x * x);
    }

    private const int ChunkElements = 1 << 14;

    private static int Chunks(long n) => (int)((n + ChunkElements - 1) / ChunkElements);

    private struct ForwardRows : IRowsKernel
    {
        public float* X, Y;
        public long N;
        public bool Table;

        public readonly void Run(int start, int end, int worker)
        {
            long i0 = (long)start * ChunkElements, i1 = Math.Min(N, (long)end * ChunkElements);
            var x = new ReadOnlySpan<float>(X + i0, (int)(i1 - i0));
            var y = new Span<float>(Y + i0, (int)(i1 - i0));
            if (Table) Activations.GeluGgml(x, y);
            else Activations.GeluTanh(x, y);
        }
    }

    private struct BackwardRows : IRowsKernel
    {
        public float* Dy, X, Dx;
        public long N;

        public readonly void Run(int start, int end, int worker)
        {
            long i0 = (long)start * ChunkElements, i1 = Math.Min(N, (long)end * ChunkElements);
            for (long i = i0; i < i1; i++) Dx[i] = Dy[i] * Derivative(X[i]);
        }
    }
}
