using ModelSmith.Formats;
using ModelSmith.Inference;
using ModelSmith.Tensors;

namespace ModelSmith.Models;

/// <summary>
/// A decoder-only transformer loaded from GGUF, ready to run. Weights stay in the file's memory map in
/// their stored type (F32, F16, BF16 ...) and are read by the matmul kernels directly.
/// </summary>
public abstract class LanguageModel : IDisposable
{
    /// <summary>Most positions one forward call processes at once; longer inputs are run in chunks.</summary>
    public const int MaxBatch = 256;

    private readonly GgufFile? _file;
    private bool _disposed;

    private readonly WeightStore? _store;

    private protected LanguageModel(ModelConfig config, GgufFile? file, int threads, WeightResidence residence)
    {
        Config = config;
        _file = file;
        _store = file == null ? null : new WeightStore(file, residence);
        Pool = new ComputePool(threads);
    }

    public ModelConfig Config { get; }

    /// <summary>Worker threads used by the kernels.</summary>
    public int Threads => Pool.ThreadCount;

    internal ComputePool Pool { get; }

    /// <summary>The GGUF file the weights come from, when loaded from one.</summary>
    public GgufFile? File => _file;

    /// <summary>
    /// Sees the input rows of every weight matmul during <see cref="Forward"/> (activation statistics such as
    /// an importance matrix). Null, the default, costs one null check per matmul.
    /// </summary>
    internal IMatMulInputObserver? MatMulInputObserver { get; set; }

    /// <summary>Where the weights live: the file's memory map, or a private copy in memory.</summary>
    public WeightResidence Residence => _store?.Residence ?? WeightResidence.Memory;

    /// <summary>
    /// Opens a GGUF model of a supported architecture. <paramref name="threads"/> 0 uses every core;
    /// <paramref name="residence"/> chooses between reading weights from the memory map (default) and a private copy.
    /// </summary>
    public static LanguageModel Load(string path, int threads = 0, WeightResidence residence = WeightResidence.Mapped)
    {
        GgufFile file = GgufFile.Open(path);
        try
        {
            ModelConfig config = ModelConfig.FromGguf(file);
            int n = threads > 0 ? threads : Environment.ProcessorCount;
            return config.Architecture switch
            {
                ModelArchitecture.Llama => new LlamaModel(config, file, n, residence),
                ModelArchitecture.Gpt2 => new Gpt2Model(config, file, n, residence),
                _ => throw new ModelFormatException(path, -1, $"architecture {config.Architecture} is not supported."),
            };
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>A KV cache for up to <paramref name="capacity"/> positions (default: the training context).</summary>
    public KvCache CreateCache(int capacity = 0) => new(Config, capacity > 0 ? capacity : Config.ContextLength);

    /// <summary>
    /// Runs <paramref name="tokens"/> at the positions after those already in <paramref name="cache"/>,
    /// appends their keys and values to it, and writes logits: for the last token only, (V), or with
    /// <paramref name="allLogits"/> for every token, (T, V).
    /// </summary>
    public void Forward(ReadOnlySpan<int> tokens, KvCache cache, Span<float> logits, bool allLogits = false)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(cache);
        int vocab = Config.VocabSize;
        if (tokens.Length == 0) throw new ArgumentException("No tokens to run.", nameof(tokens));
        if (logits.Length < (allLogits ? tokens.Length * vocab : vocab))
            throw new ArgumentException("Logits buffer is too small.", nameof(logits));
        if (cache.Length + tokens.Length > cache.Capacity)
            throw new ArgumentException($"{tokens.Length} tokens after {cache.Length} exceed the context of {cache.Capacity} positions.", nameof(tokens));
        foreach (int t in tokens)
            if ((uint)t >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(tokens), t, $"Token id {t} is outside the vocabulary (0..{vocab - 1}).");

        for (int start = 0; start < tokens.Length; start += MaxBatch)
        {
            int count = Math.Min(MaxBatch, tokens.Length - start);
            bool last = start + count == tokens.Length;
            Span<float> chunkLogits = allLogits ? logits.Slice(start * vocab, count * vocab) : (last ? logits[..vocab] : []);
            ForwardBatch(tokens.Slice(start, count), cache, chunkLogits, allLogits);
        }
    }

    /// <summary>
    /// One batch of at most <see cref="MaxBatch"/> tokens. Writes logits for every token when
    /// <paramref name="allLogits"/>, for the last one when <paramref name="logits"/> is not empty, else none.
    /// </summary>
    private protected abstract void ForwardBatch(ReadOnlySpan<int> tokens, KvCache cache, Span<float> logits, bool allLogits);

    /// <summary>A weight matrix of the file: (rows = ne1, cols = ne0), in its stored type.</summary>
    private protected WeightMatrix Matrix(string name, int rows, int cols)
    {
        GgufTensorInfo t = _file!.RequireTensor(name);
        if (t.Shape.Length != 2 || t.Shape[0] != cols || t.Shape[1] != rows)
            throw new ModelFormatException(_file.Path, -1, $"tensor '{name}' has shape {t.ShapeText}; expected [{cols}, {rows}].");
        return new WeightMatrix(t.Type, rows, cols, _store!.Get(t));
    }

    /// <summary>A 1-D tensor (norm weight or bias) converted to F32.</summary>
    private protected float[] Vector(string name, int length)
    {
        GgufTensorInfo t = _file!.RequireTensor(name);
        if (t.ElementCount != length || t.Shape[0] != length)
            throw new ModelFormatException(_file.Path, -1, $"tensor '{name}' has shape {t.ShapeText}; expected [{length}].");
        var values = new float[length];
        new WeightMatrix(t.Type, 1, length, _file.GetTensorData(t)).DequantizeRow(0, values);
        return values;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Pool.Dispose();
        _store?.Dispose();
        _file?.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>Which weights a matmul input feeds; the architecture decides the tensor names.</summary>
internal enum MatMulInput
{
    /// <summary>The normed residual into attn_q/attn_k/attn_v (Llama) or attn_qkv (GPT-2).</summary>
    Attention,

    /// <summary>The attention result into attn_output.</summary>
    AttentionOutput,

    /// <summary>The normed residual into ffn_gate/ffn_up.</summary>
    FeedForward,

    /// <summary>The activated hidden state into ffn_down.</summary>
    FeedForwardDown,

    /// <summary>The final normed state into output (only when it is not tied to token_embd).</summary>
    Output,
}

/// <summary>Receives matmul inputs from <see cref="LanguageModel.MatMulInputObserver"/>.</summary>
internal interface IMatMulInputObserver
{
    /// <summary>
    /// <paramref name="x"/>: (tokens, cols), the rows about to be multiplied by the weights of
    /// <paramref name="input"/> in block <paramref name="layer"/> (−1 for <see cref="MatMulInput.Output"/>).
    /// </summary>
    void Observe(int layer, MatMulInput input, ReadOnlySpan<float> x, int tokens);
}
