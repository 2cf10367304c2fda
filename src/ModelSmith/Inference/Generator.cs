using System.Diagnostics;
using ModelSmith.Models;

namespace ModelSmith.Inference;

/// <summary>What a generation produced and how long it took.</summary>
public sealed record GenerationResult(
    int[] Tokens,
    int PromptLength,
    TimeSpan PrefillTime,
    TimeSpan DecodeTime,
    bool StoppedAtEndOfText)
{
    /// <summary>The generated ids, without the prompt.</summary>
    public ReadOnlySpan<int> Generated => Tokens.AsSpan(PromptLength);

    /// <summary>Prompt tokens per second of the prefill.</summary>
    public double PrefillTokensPerSecond => PromptLength / Math.Max(PrefillTime.TotalSeconds, 1e-9);

    /// <summary>Generated tokens per second (each one a single-token forward pass after the first).</summary>
    public double DecodeTokensPerSecond => Math.Max(0, Tokens.Length - PromptLength - 1) / Math.Max(DecodeTime.TotalSeconds, 1e-9);
}

/// <summary>
/// Autoregressive generation: one batched forward pass over the prompt (prefill), then one token at a
/// time through the KV cache (decode). The first new token comes from the prefill's logits, so decode
/// time covers the forward passes of tokens 2..n.
/// </summary>
public sealed class Generator
{
    private readonly LanguageModel _model;
    private readonly KvCache _cache;
    private readonly float[] _logits;

    public Generator(LanguageModel model, int contextSize = 0)
    {
        ArgumentNullException.ThrowIfNull(model);
        _model = model;
        _cache = model.CreateCache(contextSize);
        _logits = new float[model.Config.VocabSize];
    }

    /// <summary>Positions the generator can hold (prompt plus new tokens).</summary>
    public int ContextSize => _cache.Capacity;

    /// <summary>
    /// Generates up to <paramref name="maxNewTokens"/> tokens after <paramref name="prompt"/>, calling
    /// <paramref name="onToken"/> with each as soon as it is chosen, and stopping early after a token for
    /// which <paramref name="isEndOfText"/> is true.
    /// </summary>
    public GenerationResult Generate(
        ReadOnlySpan<int> prompt, int maxNewTokens, SamplingOptions sampling,
        Action<int>? onToken = null, Func<int, bool>? isEndOfText = null)
    {
        ArgumentNullException.ThrowIfNull(sampling);
        if (prompt.Length == 0) throw new ArgumentException("The prompt needs at least one token (a BOS token will do).", nameof(prompt));
        ArgumentOutOfRangeException.ThrowIfNegative(maxNewTokens);
        if (prompt.Length + maxNewTokens > _cache.Capacity)
            throw new ArgumentException($"{prompt.Length} prompt tokens + {maxNewTokens} new tokens exceed the context of {_cache.Capacity} positions.", nameof(maxNewTokens));

        var sampler = new Sampler(sampling, _model.Config.VocabSize);
        var tokens = new List<int>(prompt.Length + maxNewTokens);
        foreach (int t in prompt) tokens.Add(t);
        _cache.Clear();

        var clock = Stopwatch.StartNew();
        _model.Forward(prompt, _cache, _logits);
        TimeSpan prefill = clock.Elapsed;
        clock.Restart();

        bool stopped = false;
        Span<int> one = stackalloc int[1];
        for (int i = 0; i < maxNewTokens; i++)
        {
            if (i > 0)
            {
                one[0] = tokens[^1];
                _model.Forward(one, _cache, _logits);
            }
            int next = sampler.Sample(_logits);
            tokens.Add(next);
            onToken?.Invoke(next);
            if (isEndOfText != null && isEndOfText(next))
            {
                stopped = true;
                break;
            }
        }
        return new GenerationResult(tokens.ToArray(), prompt.Length, prefill, clock.Elapsed, stopped);
    }
}
