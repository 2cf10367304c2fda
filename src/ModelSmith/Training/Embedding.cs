using System.Runtime.CompilerServices;
using ModelSmith.Tensors;

namespace ModelSmith.Training;

/// <summary>
/// Token embedding lookup (plus GPT-2's learned position embedding) and its backward pass, a scatter-add
/// of the output gradient into the rows that were read.
/// </summary>
internal static unsafe class Embedding
{
    /// <summary>
    /// x[t] = wte[tokens[t]] (+ wpe[t mod T]). tokens: (N) ids already checked against the vocabulary,
    /// wte: (V, C), wpe: (context, C) or null, x: (N, C).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Forward(ReadOnlySpan<int> tokens, int seqLen, float* wte, float* wpe, int c, float* x)
    {
        for (int t = 0; t < tokens.Length; t++)
        {
            var row = new Span<float>(x + (long)t * c, c);
            new ReadOnlySpan<float>(wte + (long)tokens[t] * c, c).CopyTo(row);
            if (wpe != null)
            {
                float* p = wpe + (long)(t % seqLen) * c;
                for (int i = 0; i < c; i++) row[i] += p[i];
            }
        }
    }

    /// <summary>
    /// dwte[tokens[t]] += dx[t] (and dwpe[t mod T] += dx[t]), tokens in order, so repeated tokens add up the
    /// same way every time; split over column chunks. tokens: (N) pinned, dx: (N, C), dwte: (V, C), dwpe: (context, C) or null.
    /// </summary>
    public static void Backward(ComputePool pool, int* tokens, int n, int seqLen, float* dx, int c, float* dwte, float* dwpe)
    {
        var job = new BackwardJob { Tokens = tokens, N = n, SeqLen = seqLen, Dx = dx, C = c, Dwte = dwte, Dwpe = dwpe };
        pool.Run(in job, (c + ChunkColumns - 1) / ChunkColumns);
    }

    private const int ChunkColumns = 64;

    private struct BackwardJob : IParallelJob
    {
        public int* Tokens;
        public int N, SeqLen, C;
        public float* Dx, Dwte, Dwpe;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int item, int worker)
        {
            int j0 = item * ChunkColumns, w = Math.Min(C, j0 + ChunkColumns) - j0;
            for (int t = 0; t < N; t++)
            {
                float* d = Dx + (long)t * C + j0;
                float* row = Dwte + (long)Tokens[t] * C + j0;
                VectorOps.Add(new ReadOnlySpan<float>(row, w), new ReadOnlySpan<float>(d, w), new Span<float>(row, w));
                if (Dwpe != null)
                {
                    float* p = Dwpe + (long)(t % SeqLen) * C + j0;
                    VectorOps.Add(new ReadOnlySpan<float>(p, w), new ReadOnlySpan<float>(d, w), new Span<float>(p, w));
                }
            }
        }
    }
}
