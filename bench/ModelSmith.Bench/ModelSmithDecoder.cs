using ModelSmith.Inference;
using ModelSmith.Models;

namespace ModelSmith.Bench;

/// <summary>ModelSmith's engine as the speed benchmark drives it: the same calls a generator makes.</summary>
internal sealed class ModelSmithDecoder : IDecoderUnderTest
{
    private readonly LanguageModel _model;
    private readonly KvCache _cache;
    private readonly float[] _logits;

    public ModelSmithDecoder(string path, int threads, int context)
    {
        // Weights in private memory, as the llama.cpp side loads them (no mmap), so both stream the same kind of pages.
        _model = LanguageModel.Load(path, threads, WeightResidence.Memory);
        _cache = _model.CreateCache(context);
        _logits = new float[_model.Config.VocabSize];
        long weights = 0;
        foreach (var t in _model.File!.Tensors)
        {
            // The token embedding is only gathered (one row per token), unless it doubles as the output.
            if (t.Name == "token_embd.weight" && !_model.Config.TiedOutput) continue;
            if (t.Name == "position_embd.weight") continue;
            weights += t.ByteSize;
        }
        WeightBytes = weights;
    }

    public string Name => "ModelSmith";

    public string Settings => $"KV F32, weights {_model.Residence}, batch ≤ {LanguageModel.MaxBatch}";

    public int VocabSize => _model.Config.VocabSize;

    public int ContextSize => _cache.Capacity;

    public int Bos => 1;

    public long WeightBytes { get; }

    public long KvBytesPerPosition => 2L * _model.Config.BlockCount * _model.Config.KvDim * sizeof(float);

    public void Reset() => _cache.Clear();

    public void Prefill(ReadOnlySpan<int> tokens) => _model.Forward(tokens, _cache, _logits);

    public void Decode(int token) => _model.Forward([token], _cache, _logits);

    public void Dispose() => _model.Dispose();
}
