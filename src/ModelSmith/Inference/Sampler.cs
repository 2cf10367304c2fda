namespace ModelSmith.Inference;

/// <summary>How the next token is chosen from the logits.</summary>
public sealed record SamplingOptions
{
    /// <summary>0 picks the most likely token (greedy); higher values flatten the distribution.</summary>
    public float Temperature { get; init; } = 0.8f;

    /// <summary>Keep only the k most likely tokens (0 = all).</summary>
    public int TopK { get; init; } = 40;

    /// <summary>Keep the smallest set of most likely tokens whose probability reaches p (1 = all).</summary>
    public float TopP { get; init; } = 0.95f;

    /// <summary>Seed of the random draw; the same seed and logits give the same tokens.</summary>
    public ulong Seed { get; init; } = 42;

    /// <summary>Greedy decoding: always the argmax.</summary>
    public static SamplingOptions Greedy { get; } = new() { Temperature = 0, TopK = 1, TopP = 1 };

    /// <summary>Null when valid, else what is wrong.</summary>
    public string? Validate()
    {
        if (Temperature < 0 || float.IsNaN(Temperature)) return $"temperature {Temperature} must be 0 or more.";
        if (TopK < 0) return $"top-k {TopK} must be 0 or more.";
        if (TopP is <= 0 or > 1 || float.IsNaN(TopP)) return $"top-p {TopP} must be in (0, 1].";
        return null;
    }
}

/// <summary>
/// Chooses tokens from logits: top-k, then top-p (nucleus), then temperature, then a draw from the
/// renormalised distribution with a seeded xoshiro256** generator. Temperature 0 is argmax.
/// Buffers are allocated once for the vocabulary size.
/// </summary>
public sealed class Sampler
{
    private readonly SamplingOptions _options;
    private readonly int[] _order;
    private readonly float[] _probabilities;
    private ulong _s0, _s1, _s2, _s3;

    public Sampler(SamplingOptions options, int vocabSize)
    {
        ArgumentNullException.ThrowIfNull(options);
        string? problem = options.Validate();
        if (problem != null) throw new ArgumentException(problem, nameof(options));
        _options = options;
        _order = new int[vocabSize];
        _probabilities = new float[vocabSize];
        // SplitMix64 expands the seed into the xoshiro state.
        ulong x = options.Seed;
        _s0 = SplitMix(ref x);
        _s1 = SplitMix(ref x);
        _s2 = SplitMix(ref x);
        _s3 = SplitMix(ref x);
    }

    /// <summary>Index of the largest logit (the first one on ties, as llama.cpp's greedy sampler).</summary>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        float bestValue = float.NegativeInfinity;
        for (int i = 0; i < logits.Length; i++)
        {
            if (logits[i] > bestValue)
            {
                bestValue = logits[i];
                best = i;
            }
        }
        return best;
    }

    /// <summary>Picks the next token from <paramref name="logits"/> (V).</summary>
    public int Sample(ReadOnlySpan<float> logits)
    {
        if (_options.Temperature == 0 || _options.TopK == 1) return ArgMax(logits);
        int n = logits.Length;
        for (int i = 0; i < n; i++) _order[i] = i;

        // Candidates sorted by logit, descending; only the top k matter, so a partial sort would do,
        // but vocabularies here are small enough that a full sort is simpler and fast.
        int k = _options.TopK > 0 ? Math.Min(_options.TopK, n) : n;
        float[] keys = _probabilities;
        for (int i = 0; i < n; i++) keys[i] = -logits[i];
        Array.Sort(keys, _order, 0, n);

        // Softmax over the top k at temperature 1 for the nucleus cut.
        float max = -keys[0];
        double sum = 0;
        for (int i = 0; i < k; i++)
        {
            float p = MathF.Exp(-keys[i] - max);
            _probabilities[i] = p;
            sum += p;
        }
        int kept = k;
        if (_options.TopP < 1)
        {
            double cumulative = 0;
            for (int i = 0; i < k; i++)
            {
                cumulative += _probabilities[i] / sum;
                if (cumulative >= _options.TopP)
                {
                    kept = i + 1;
                    break;
                }
            }
        }

        // Temperature, then the draw.
        double total = 0;
        float inverseTemperature = 1f / _options.Temperature;
        for (int i = 0; i < kept; i++)
        {
            float logit = logits[_order[i]];
            float p = MathF.Exp((logit - max) * inverseTemperature);
            _probabilities[i] = p;
            total += p;
        }
        double r = NextDouble() * total;
        double acc = 0;
        for (int i = 0; i < kept; i++)
        {
            acc += _probabilities[i];
            if (r < acc) return _order[i];
        }
        return _order[kept - 1];
    }

    private double NextDouble() => (Next() >> 11) * (1.0 / (1UL << 53));

    private ulong Next()
    {
        ulong result = ulong.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = ulong.RotateLeft(_s3, 45);
        return result;
    }

    private static ulong SplitMix(ref ulong x)
    {
        ulong z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
