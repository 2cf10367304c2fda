namespace ModelSmith.Bench;

/// <summary>An inference engine as the speed benchmark drives it: one sequence, a KV cache that
/// <see cref="Reset"/> empties, a prompt evaluated in one call, then one token per call. Implementations
/// compute logits for the last prompt token and for every decoded token, as a generator would.</summary>
internal interface IDecoderUnderTest : IDisposable
{
    /// <summary>Column label, e.g. "llama.cpp".</summary>
    string Name { get; }

    /// <summary>Settings that matter for speed, shown under the table (e.g. "KV F16, flash attn auto").</summary>
    string Settings { get; }

    int VocabSize { get; }

    /// <summary>Most tokens the cache holds.</summary>
    int ContextSize { get; }

    /// <summary>BOS id, or -1 if the model has none.</summary>
    int Bos { get; }

    /// <summary>Weight bytes one decode step streams from memory (every weight matrix once).</summary>
    long WeightBytes { get; }

    /// <summary>KV-cache bytes per cached position (K and V, all layers); a decode step at position p reads p of them.</summary>
    long KvBytesPerPosition { get; }

    /// <summary>Empties the KV cache.</summary>
    void Reset();

    /// <summary>Evaluates <paramref name="tokens"/> (T,) at the next T positions in one batch.</summary>
    void Prefill(ReadOnlySpan<int> tokens);

    /// <summary>Evaluates one token at the next position.</summary>
    void Decode(int token);
}

/// <summary>Creates a decoder for a model file running on a given number of threads.</summary>
internal delegate IDecoderUnderTest DecoderFactory(string modelPath, int threads);
