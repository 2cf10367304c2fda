using System.Diagnostics;
using ModelSmith.Inference;
using ModelSmith.Models;
using ModelSmith.Quantization;
using ModelSmith.Tokenization;

namespace ModelSmith.Evaluation;

/// <summary>How <see cref="Perplexity.Evaluate"/> chunks and scores the tokens.</summary>
public sealed class PerplexityOptions
{
    /// <summary>Tokens per chunk (llama-perplexity -c, 512 by default); each chunk starts from an empty cache.</summary>
    public int ContextSize { get; init; } = 512;

    /// <summary>Chunks to evaluate at most (llama-perplexity --chunks); null evaluates all the text gives.</summary>
    public int? MaxChunks { get; init; }

    /// <summary>
    /// The token put in the first position of every chunk, replacing the text's token there (llama.cpp does
    /// this when the vocabulary adds BOS: <see cref="Tokenizer.AddBos"/> ? <see cref="Tokenizer.Bos"/> : −1),
    /// or −1 to evaluate the chunks as they are.
    /// </summary>
    public int FirstToken { get; init; } = -1;
}

/// <summary>Progress of <see cref="Perplexity.Evaluate"/>: <see cref="Chunk"/> of <see cref="Chunks"/> done.</summary>
/// <param name="Perplexity">Perplexity over the chunks done so far.</param>
public sealed record PerplexityProgress(int Chunk, int Chunks, double Perplexity);

/// <summary>The outcome of <see cref="Perplexity.Evaluate"/>.</summary>
/// <param name="Tokens">Tokens of the whole text (including the BOS the tokenizer added).</param>
/// <param name="Chunks">Chunks evaluated.</param>
/// <param name="ContextSize">Tokens per chunk.</param>
/// <param name="ScoredTokens">Positions scored: Chunks × (ContextSize − ContextSize/2 − 1).</param>
/// <param name="MeanNll">Mean negative log-likelihood of the scored tokens, in nats.</param>
/// <param name="Perplexity">exp(MeanNll).</param>
/// <param name="PerplexityError">llama.cpp's standard error of the perplexity: PPL·√(var(nll)/(n − 1)).</param>
/// <param name="KlDivergence">Statistics against the parent, when one was given.</param>
/// <param name="Elapsed">Wall time of the evaluation.</param>
public sealed record PerplexityResult(
    int Tokens, int Chunks, int ContextSize, long ScoredTokens, double MeanNll, double Perplexity, double PerplexityError,
    KlDivergenceResult? KlDivergence, TimeSpan Elapsed);

/// <summary>
/// Perplexity exactly as llama.cpp's perplexity tool computes it (tools/perplexity, <c>perplexity()</c>):
/// the whole text is tokenized once with the vocabulary's special tokens (BOS first when it adds one), cut
/// into ⌊n / n_ctx⌋ chunks of n_ctx tokens (the remainder is dropped), and each chunk is run from an empty
/// cache with its first token replaced by BOS when the vocabulary adds one. Only the second half of each
/// chunk is scored, so every scored token has at least n_ctx/2 tokens of context: the logits at positions
/// first = n_ctx/2 … n_ctx − 2 predict the text's tokens first + 1 … n_ctx − 1. With NLL_i = −log softmax(l_i)[t_i+1],
/// accumulated in double, PPL = exp(mean NLL) and its standard error is PPL·√((mean NLL² − mean NLL²)/(n − 1)).
/// With a parent model, the parent runs the same chunks and every scored position also gets
/// KL(parent ‖ model) and the other <see cref="KlDivergenceResult"/> statistics.
/// </summary>
public static class Perplexity
{
    /// <summary>
    /// The tokens llama.cpp's perplexity tool evaluates for <paramref name="text"/>: common_tokenize(text,
    /// add_special = true), special-token text not parsed. llama.cpp refuses vocabularies that add EOS, and
    /// so does this.
    /// </summary>
    public static int[] Tokenize(Tokenizer tokenizer, string text)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(text);
        if (tokenizer.AddEos)
        {
            throw new NotSupportedException("The vocabulary adds EOS after every text (tokenizer.ggml.add_eos_token = true); perplexity is defined, as in llama.cpp, only for vocabularies that do not.");
        }
        return tokenizer.Encode(text, addSpecial: true, parseSpecial: false);
    }

    /// <summary>
    /// The text of one evaluation file (.txt or .jsonl with a "text" field, optionally .gz; JSON records joined
    /// by a blank line), with one trailing newline removed as llama.cpp does for <c>-f FILE</c>.
    /// </summary>
    public static string ReadText(string path)
    {
        string text = CalibrationText.Read([path]);
        return text.EndsWith('\n') ? text[..^1] : text;
    }

    /// <summary>Chunks that <paramref name="tokenCount"/> tokens give at <paramref name="options"/>.</summary>
    public static int ChunkCount(int tokenCount, PerplexityOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        int chunks = tokenCount / options.ContextSize;
        return options.MaxChunks is int max ? Math.Min(chunks, max) : chunks;
    }

    /// <summary>
    /// Evaluates <paramref name="tokens"/> (the whole text, from <see cref="Tokenize"/>) on
    /// <paramref name="model"/>, and on <paramref name="parent"/> too when given (it must share the vocabulary,
    /// see <see cref="VocabularyMismatch"/>). Needs at least two chunks of tokens, as llama.cpp does.
    /// </summary>
    public static unsafe PerplexityResult Evaluate(LanguageModel model, IReadOnlyList<int> tokens, PerplexityOptions options,
        LanguageModel? parent = null, IProgress<PerplexityProgress>? progress = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentNullException.ThrowIfNull(options);
        int nCtx = options.ContextSize;
        if (nCtx < 4)
        {
            throw new ArgumentOutOfRangeException(nameof(options), nCtx, "The context size must be at least 4 tokens (the second half of each chunk is scored).");
        }
        if (options.MaxChunks is < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxChunks, "The chunk limit must be at least 1.");
        }
        if (tokens.Count < 2 * nCtx)
        {
            throw new ArgumentException(
                $"The text gives {tokens.Count} tokens; a context of {nCtx} needs at least {2 * nCtx} (as llama.cpp's perplexity asks). Give more text or a smaller context size.", nameof(tokens));
        }
        int vocab = model.Config.VocabSize;
        if (options.FirstToken >= vocab)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.FirstToken, $"The first token is outside the vocabulary of {vocab} tokens.");
        }
        if (parent != null && VocabularyMismatch(model, parent) is { } mismatch)
        {
            throw new ArgumentException(mismatch, nameof(parent));
        }

        int chunks = ChunkCount(tokens.Count, options);
        int first = nCtx / 2;
        int scored = nCtx - first - 1;
        var chunk = new int[nCtx];
        var targets = new int[scored];
        var logits = new float[(long)nCtx * vocab];        // (n_ctx, V)
        float[]? parentLogits = parent != null ? new float[(long)nCtx * vocab] : null;
        var nll = new double[scored];
        var parentNll = new double[parent != null ? scored : 0];
        var modelNll = new double[parentNll.Length];
        var kld = new double[parentNll.Length];
        var deltaP = new double[parentNll.Length];
        var sameTop = new bool[parentNll.Length];
        KvCache cache = model.CreateCache(nCtx);
        KvCache? parentCache = parent?.CreateCache(nCtx);
        KlDivergenceAccumulator? divergence = parent != null ? new KlDivergenceAccumulator() : null;

        double sum = 0, sum2 = 0;
        long count = 0;
        var clock = Stopwatch.StartNew();
        for (int c = 0; c < chunks; c++)
        {
            cancellation.ThrowIfCancellationRequested();
            int start = c * nCtx;
            for (int k = 0; k < nCtx; k++)
            {
                chunk[k] = tokens[start + k];
            }
            if (options.FirstToken >= 0)
            {
                chunk[0] = options.FirstToken;
            }
            for (int k = 0; k < scored; k++)
            {
                targets[k] = tokens[start + first + k + 1];
            }
            cache.Clear();
            model.Forward(chunk, cache, logits, allLogits: true);
            if (parent != null)
            {
                parentCache!.Clear();
                parent.Forward(chunk, parentCache, parentLogits, allLogits: true);
            }

            fixed (float* l = logits)
            fixed (float* pl = parentLogits)
            fixed (int* t = targets)
            fixed (double* pn = nll, pmn = modelNll, ppn = parentNll, pk = kld, pd = deltaP)
            fixed (bool* ps = sameTop)
            {
                var job = new TokenScores.Job
                {
                    Logits = l + (long)first * vocab,
                    ParentLogits = pl == null ? null : pl + (long)first * vocab,
                    Targets = t,
                    Vocab = vocab,
                    Count = scored,
                    Nll = pn,
                    ModelNll = pmn,
                    ParentNll = ppn,
                    Kld = pk,
                    DeltaP = pd,
                    SameTop = ps,
                };
                model.Pool.Run(in job, scored);
            }
            for (int k = 0; k < scored; k++)
            {
                sum += nll[k];
                sum2 += nll[k] * nll[k];
            }
            count += scored;
            divergence?.Add(modelNll, parentNll, kld, deltaP, sameTop);
            progress?.Report(new PerplexityProgress(c + 1, chunks, Math.Exp(sum / count)));
        }

        double mean = sum / count;
        double variance = sum2 / count - mean * mean;
        double ppl = Math.Exp(mean);
        double error = variance > 0 ? ppl * Math.Sqrt(variance / (count - 1)) : 0;
        return new PerplexityResult(tokens.Count, chunks, nCtx, count, mean, ppl, error,
            divergence != null ? new KlDivergenceResult(divergence) : null, clock.Elapsed);
    }

    /// <summary>
    /// Why <paramref name="model"/> cannot be compared token by token with <paramref name="parent"/>, or null
    /// when they share the vocabulary: the same size, and, for models loaded from GGUF, the same tokenizer
    /// type, the same token texts in the same order and the same BOS.
    /// </summary>
    public static string? VocabularyMismatch(LanguageModel model, LanguageModel parent)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(parent);
        string name = model.File?.Path ?? "the model";
        string parentName = parent.File?.Path ?? "the parent";
        if (model.Config.VocabSize != parent.Config.VocabSize)
        {
            return $"{name} has a vocabulary of {model.Config.VocabSize} tokens and {parentName} one of {parent.Config.VocabSize}; KL divergence compares next-token distributions token by token, so the parent must be the model this one was derived from (same vocabulary).";
        }
        if (model.File is null || parent.File is null)
        {
            return null;
        }
        bool hasA = model.File.HasKey(GgufTokenizer.TokensKey), hasB = parent.File.HasKey(GgufTokenizer.TokensKey);
        if (!hasA || !hasB)
        {
            return hasA == hasB ? null : $"{(hasA ? parentName : name)} has no tokenizer.ggml.tokens to compare with the other model's vocabulary; give a parent with the same tokenizer metadata.";
        }
        TokenizerSpec a = GgufTokenizer.ReadSpec(model.File);
        TokenizerSpec b = GgufTokenizer.ReadSpec(parent.File);
        if (!string.Equals(a.Model, b.Model, StringComparison.Ordinal))
        {
            return $"{name} has a '{a.Model}' tokenizer and {parentName} a '{b.Model}' one; the two models must share the vocabulary to be compared.";
        }
        if (a.Tokens.Count != b.Tokens.Count)
        {
            return $"{name} lists {a.Tokens.Count} tokens and {parentName} {b.Tokens.Count}; the two models must share the vocabulary to be compared.";
        }
        for (int i = 0; i < a.Tokens.Count; i++)
        {
            if (!string.Equals(a.Tokens[i], b.Tokens[i], StringComparison.Ordinal))
            {
                return $"token {i} is '{a.Tokens[i]}' in {name} but '{b.Tokens[i]}' in {parentName}; the two models must share the vocabulary to be compared.";
            }
        }
        if (a.BosId != b.BosId)
        {
            return $"{name} has BOS id {a.BosId?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "(none)"} and {parentName} {b.BosId?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "(none)"}; the two models must share the vocabulary to be compared.";
        }
        return null;
    }
}
