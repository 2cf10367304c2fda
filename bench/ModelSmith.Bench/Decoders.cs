using ModelSmith.Evaluation;

namespace ModelSmith.Bench;

/// <summary>An inference engine as the speed benchmark drives it: the library's <see cref="ISpeedTestEngine"/>
/// (one sequence, a KV cache that ClearCache empties, token ids decoded in batches with logits for the last one,
/// as a generator would), plus what the benchmark's tables print about it.</summary>
internal interface IDecoderUnderTest : ISpeedTestEngine, IDisposable
{
    /// <summary>Column label, e.g. "llama.cpp".</summary>
    string Name { get; }

    /// <summary>Settings that matter for speed, shown under the table (e.g. "KV F16, flash attn auto").</summary>
    string Settings { get; }

    /// <summary>Most tokens the cache holds.</summary>
    int ContextSize { get; }

    /// <summary>BOS id, or -1 if the model has none.</summary>
    int Bos { get; }

    /// <summary>Weight bytes one decode step streams from memory (every weight matrix once).</summary>
    long WeightBytes { get; }

    /// <summary>KV-cache bytes per cached position (K and V, all layers); a decode step at position p reads p of them.</summary>
    long KvBytesPerPosition { get; }
}

/// <summary>Creates a decoder for a model file running on a given number of threads.</summary>
internal delegate IDecoderUnderTest DecoderFactory(string modelPath, int threads);
