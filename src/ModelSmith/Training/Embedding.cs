using System.Runtime.CompilerServices;

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
    /// same way every time. dx: (N, C), dwte: (V, C), dwpe: (context, C) or null.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Backward(ReadOnlySpan<int> tokens, int seqLen, float* dx, int c, float* dwte, float* dwpe)
    {
        for (int t = 0; t < tokens.Length; t++)
        {
            float* d = dx + (long)t * c;
            float* w = dwte + (long)tokens[t] * c;
            for (int i = 0; i < c; i++) w[i] += d[i];
            if (dwpe != null)
            {
                float* p = dwpe + (long)(t % seqLen) * c;
                for (int i = 0; i < c; i++) p[i] += d[i];
            }
        }
    }
}
