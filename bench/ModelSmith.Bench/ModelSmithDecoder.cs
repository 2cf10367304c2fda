using ModelSmith.Evaluation;
using ModelSmith.Inference;
using ModelSmith.Models;

namespace ModelSmith.Bench;

/// <summary>ModelSmith's engine as the speed benchmark drives it: <c>smith bench</c>'s engine over the model
/// loaded as the llama.cpp side is, with the weight bytes a decode step reads.</summary>
internal sealed class ModelSmithDecoder : IDecoderUnderTest
{
    private readonly LanguageModel _model;
    private readonly SpeedBenchmark.ModelEngine _engine;

    public ModelSmithDecoder(string path, int threads, int context)
    {
        // Weights in private memory, as the llama.cpp side loads them (no mmap), so both stream the same kind of pages.
        _model = LanguageModel.Load(path, threads, WeightResidence.Memory);
        _engine = new SpeedBenchmark.ModelEngine(_model, context);
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

    public int VocabSize => _engine.VocabSize;

    public int ContextSize => _engine.Capacity;

    public int Bos => 1;

    public long WeightBytes { get; }

    public long KvBytesPerPosition => 2L * _model.Config.BlockCount * _model.Config.KvDim * sizeof(float);

    public void ClearCache() => _engine.ClearCache();

    public void Decode(ReadOnlySpan<int> tokens) => _engine.Decode(tokens);

    public void Dispose() => _model.Dispose();
}
