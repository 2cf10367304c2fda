using ModelSmith.Tensors;

namespace ModelSmith.Evaluation;

/// <summary>
/// What one scored position says about the model (and, when there is one, its parent): the negative
/// log-likelihood of the actual next token, the KL divergence of the two next-token distributions, the
/// difference of the probabilities they give the actual token, and whether their most likely tokens agree.
/// </summary>
internal static unsafe class TokenScores
{
    /// <summary>
    /// log softmax(<paramref name="logits"/>)[<paramref name="token"/>] exactly as llama.cpp's perplexity tool
    /// computes it (log_softmax in tools/perplexity): the maximum in float, Σ expf(l − max) accumulated in
    /// double, then (l[token] − max) − log Σ. Vocabulary order, so the result is the same on every machine.
    /// </summary>
    public static double LogSoftmax(ReadOnlySpan<float> logits /* (V) */, int token)
    {
        float max = logits[0];
        for (int i = 1; i < logits.Length; i++)
        {
            max = Math.Max(max, logits[i]);
        }
        double sum = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            sum += MathF.Exp(logits[i] - max);
        }
        return (logits[token] - max) - Math.Log(sum);
    }

    /// <summary>Index of the largest logit; the first one on ties (as llama.cpp's kl-divergence loop).</summary>
    public static int ArgMax(ReadOnlySpan<float> logits /* (V) */)
    {
        int best = 0;
        float max = logits[0];
        for (int i = 1; i < logits.Length; i++)
        {
            if (logits[i] > max)
            {
                max = logits[i];
                best = i;
            }
        }
        return best;
    }

    /// <summary>
    /// max + log Σ exp(l − max) of a row in double: the normalizer that turns logits into log-probabilities,
    /// log p_i = l_i − <c>LogNormalizer</c>.
    /// </summary>
    public static double LogNormalizer(ReadOnlySpan<float> logits /* (V) */, out float max)
    {
        max = logits[0];
        for (int i = 1; i < logits.Length; i++)
        {
            max = Math.Max(max, logits[i]);
        }
        double sum = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            sum += Math.Exp((double)logits[i] - max);
        }
        return max + Math.Log(sum);
    }

    /// <summary>
    /// KL(P ‖ Q) = Σ_i p_i (log p_i − log q_i) over the whole vocabulary in double, where P = softmax of
    /// <paramref name="parent"/> and Q = softmax of <paramref name="model"/>. Every term is kept (llama.cpp
    /// drops parent log-probabilities under −16 because it stores them in 16 bits; those terms weigh less
    /// than e^−16 each). Zero exactly when the two rows are equal.
    /// </summary>
    public static double KlDivergence(ReadOnlySpan<float> parent /* (V) */, double parentNormalizer, ReadOnlySpan<float> model /* (V) */, double modelNormalizer)
    {
        double shift = modelNormalizer - parentNormalizer;
        double sum = 0;
        for (int i = 0; i < parent.Length; i++)
        {
            double logP = parent[i] - parentNormalizer;
            sum += Math.Exp(logP) * ((double)parent[i] - model[i] + shift);
        }
        return sum;
    }

    /// <summary>
    /// Scores <see cref="Count"/> consecutive positions in parallel: position i reads logit rows i of
    /// <see cref="Logits"/> (and <see cref="ParentLogits"/>) and target token <see cref="Targets"/>[i], and
    /// writes its own slots of the output arrays, so results do not depend on the thread count.
    /// </summary>
    public struct Job : IParallelJob
    {
        public float* Logits;        // (Count, Vocab)
        public float* ParentLogits;  // (Count, Vocab), or null without a parent
        public int* Targets;         // (Count) the token that follows each position
        public int Vocab;
        public int Count;
        public double* Nll;          // (Count) −log q(target), llama.cpp's perplexity arithmetic
        public double* ModelNll;     // (Count) −log q(target) in the same arithmetic as ParentNll, parent only
        public double* ParentNll;    // (Count) −log p(target), parent only
        public double* Kld;          // (Count) KL(P ‖ Q), parent only
        public double* DeltaP;       // (Count) q(target) − p(target), parent only
        public bool* SameTop;        // (Count) argmax q = argmax p, parent only

        public readonly void Execute(int item, int worker)
        {
            var logits = new ReadOnlySpan<float>(Logits + (long)item * Vocab, Vocab);
            int target = Targets[item];
            double nll = -LogSoftmax(logits, target);
            Nll[item] = nll;
            if (ParentLogits == null)
            {
                return;
            }
            var parent = new ReadOnlySpan<float>(ParentLogits + (long)item * Vocab, Vocab);
            double modelNorm = LogNormalizer(logits, out _);
            double parentNorm = LogNormalizer(parent, out _);
            double modelNll = modelNorm - logits[target];
            double parentNll = parentNorm - parent[target];
            ModelNll[item] = modelNll;
            ParentNll[item] = parentNll;
            Kld[item] = KlDivergence(parent, parentNorm, logits, modelNorm);
            DeltaP[item] = Math.Exp(-modelNll) - Math.Exp(-parentNll);
            SameTop[item] = ArgMax(logits) == ArgMax(parent);
        }
    }
}
