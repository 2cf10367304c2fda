using ModelSmith.LlamaCpp;

namespace ModelSmith.Bench;

/// <summary>llama.cpp through ModelSmith.LlamaCpp, loaded as <c>smith bench --vs-llama-cpp</c> loads it, with llama-bench's
/// context settings (<see cref="LlamaCppModel.WithLlamaBenchSettings"/>), so its numbers match what llama-bench would print;
/// --kv and --fa change the KV type and flash attention. Weights are read into private memory (llama-bench's --mmap 0),
/// as ModelSmithDecoder loads ours, so both stream the same kind of pages.</summary>
internal sealed class LlamaCppDecoder(string modelPath, int threads, int contextSize, bool f32KvCache, bool? flashAttention)
    : IDecoderUnderTest
{
    private readonly LlamaCppModel _model = LlamaCppModel.WithLlamaBenchSettings(modelPath, threads, contextSize, f32KvCache, flashAttention, memoryMap: false);

    public string Name => "llama.cpp";

    public string Settings => _model.SpeedSettings;

    public int VocabSize => _model.VocabSize;

    public int ContextSize => _model.ContextSize;

    public int Bos => _model.Bos;

    public long WeightBytes => (long)_model.SizeInBytes;

    public long KvBytesPerPosition => _model.KvBytesPerPosition;

    public void ClearCache() => _model.Reset();

    public void Decode(ReadOnlySpan<int> tokens) => _model.Append(tokens);

    public void Dispose() => _model.Dispose();
}
