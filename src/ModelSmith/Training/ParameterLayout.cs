using ModelSmith.Models;

namespace ModelSmith.Training;

/// <summary>What a parameter tensor is, which decides its initialisation and whether weight decay applies.</summary>
public enum ParameterKind
{
    /// <summary>Token embedding (V, C); also the output projection when the output is tied.</summary>
    TokenEmbedding,

    /// <summary>GPT-2's learned position embedding (context, C).</summary>
    PositionEmbedding,

    /// <summary>A linear layer's weight (out, in).</summary>
    Matrix,

    /// <summary>The untied output projection (V, C).</summary>
    Output,

    /// <summary>A norm's scale (C).</summary>
    Norm,

    /// <summary>A bias (out) of a linear layer or a LayerNorm.</summary>
    Bias,

    /// <summary>A LoRA down-projection A (r, in).</summary>
    LoraA,

    /// <summary>A LoRA up-projection B (out, r).</summary>
    LoraB,
}

/// <summary>
/// One tensor of a flat parameter vector: floats [Offset, Offset + Length) hold a row-major (Rows, Cols)
/// matrix (a vector has Rows = 1), named and shaped as GGUF stores it: shape [Cols, Rows] innermost first,
/// so a linear layer's (out, in) weight is GGUF [in, out].
/// </summary>
public sealed record ParameterTensor(string Name, ParameterKind Kind, int Rows, int Cols, int Offset)
{
    public int Length => Rows * Cols;

    /// <summary>True for one-dimensional tensors (norm scales, biases).</summary>
    public bool IsVector => Kind is ParameterKind.Norm or ParameterKind.Bias;

    /// <summary>GGUF shape, innermost first.</summary>
    public long[] GgufShape => IsVector ? [Cols] : [Cols, Rows];
}

/// <summary>
/// Named tensors packed back to back in one flat float vector: the layout shared by a set of values, its
/// gradients and its optimizer moments.
/// </summary>
public abstract class TensorLayout
{
    private readonly List<ParameterTensor> _tensors = [];
    private readonly Dictionary<string, ParameterTensor> _byName = [];
    private long _count;

    /// <summary>Every tensor, in storage order.</summary>
    public IReadOnlyList<ParameterTensor> Tensors => _tensors;

    /// <summary>Total floats.</summary>
    public int Count => (int)_count;

    /// <summary>The tensor called <paramref name="name"/>, or null.</summary>
    public ParameterTensor? Find(string name) => _byName.GetValueOrDefault(name);

    /// <summary>True when <paramref name="other"/> has the same tensors (names, kinds, shapes) in the same order.</summary>
    public bool SameShape(TensorLayout other)
    {
        ArgumentNullException.ThrowIfNull(other);
        if (other._tensors.Count != _tensors.Count) return false;
        for (int i = 0; i < _tensors.Count; i++)
            if (other._tensors[i] != _tensors[i]) return false;
        return true;
    }

    /// <summary>Appends a (rows, cols) tensor and returns its offset.</summary>
    private protected int Add(string name, ParameterKind kind, int rows, int cols)
    {
        long length = (long)rows * cols;
        if (_count + length > Array.MaxLength)
            throw new ArgumentException($"Tensor '{name}' would take the layout past {Array.MaxLength} floats, more than one array holds; choose a smaller configuration.");
        var t = new ParameterTensor(name, kind, rows, cols, (int)_count);
        _tensors.Add(t);
        _byName.Add(name, t);
        _count += length;
        return t.Offset;
    }
}

/// <summary>Offsets of one block's tensors in the flat parameter vector (−1 where the architecture has none).</summary>
internal readonly record struct BlockOffsets
{
    /// <summary>Attention norm scale (C).</summary>
    public int AttentionNorm { get; init; }

    /// <summary>Attention LayerNorm bias (C), GPT-2.</summary>
    public int AttentionNormBias { get; init; }

    /// <summary>Fused [Q; K; V] projection (H·D + 2·Hkv·D, C): Llama's attn_q, attn_k, attn_v back to back, GPT-2's attn_qkv.</summary>
    public int Qkv { get; init; }

    /// <summary>QKV bias (H·D + 2·Hkv·D), GPT-2.</summary>
    public int QkvBias { get; init; }

    /// <summary>Attention output projection (C, H·D).</summary>
    public int AttentionOutput { get; init; }

    /// <summary>Attention output bias (C), GPT-2.</summary>
    public int AttentionOutputBias { get; init; }

    /// <summary>Feed-forward norm scale (C).</summary>
    public int FeedForwardNorm { get; init; }

    /// <summary>Feed-forward LayerNorm bias (C), GPT-2.</summary>
    public int FeedForwardNormBias { get; init; }

    /// <summary>Feed-forward input projection: Llama's [gate; up] (2F, C) back to back, GPT-2's up (F, C).</summary>
    public int FeedForwardIn { get; init; }

    /// <summary>Feed-forward input bias (F), GPT-2.</summary>
    public int FeedForwardInBias { get; init; }

    /// <summary>Feed-forward output projection ffn_down (C, F).</summary>
    public int FeedForwardOut { get; init; }

    /// <summary>Feed-forward output bias (C), GPT-2.</summary>
    public int FeedForwardOutBias { get; init; }
}

/// <summary>
/// Where every parameter of a model of a given <see cref="ModelConfig"/> lives in one flat float vector;
/// parameters, gradients and optimizer moments all use it. Tensors appear in GGUF order and with GGUF names;
/// within a block, Llama's Q, K, V weights are adjacent (one fused (H·D + 2·Hkv·D, C) matrix for the GEMMs) and
/// so are gate and up ((2F, C)).
/// </summary>
public sealed class ParameterLayout : TensorLayout
{
    public ParameterLayout(ModelConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        string? problem = config.Validate();
        if (problem != null) throw new ArgumentException(problem, nameof(config));
        Config = config;
        int c = config.EmbeddingLength, f = config.FeedForwardLength, v = config.VocabSize;
        TokenEmbedding = Add("token_embd.weight", ParameterKind.TokenEmbedding, v, c);
        PositionEmbedding = config.Architecture == ModelArchitecture.Gpt2
            ? Add("position_embd.weight", ParameterKind.PositionEmbedding, config.ContextLength, c)
            : -1;
        var blocks = new BlockOffsets[config.BlockCount];
        int qkv = config.QDim + 2 * config.KvDim;
        for (int l = 0; l < blocks.Length; l++)
        {
            string p = $"blk.{l}.";
            if (config.Architecture == ModelArchitecture.Llama)
            {
                int norm1 = Add(p + "attn_norm.weight", ParameterKind.Norm, 1, c);
                int q = Add(p + "attn_q.weight", ParameterKind.Matrix, config.QDim, c);
                Add(p + "attn_k.weight", ParameterKind.Matrix, config.KvDim, c);
                Add(p + "attn_v.weight", ParameterKind.Matrix, config.KvDim, c);
                int o = Add(p + "attn_output.weight", ParameterKind.Matrix, c, config.QDim);
                int norm2 = Add(p + "ffn_norm.weight", ParameterKind.Norm, 1, c);
                int gate = Add(p + "ffn_gate.weight", ParameterKind.Matrix, f, c);
                Add(p + "ffn_up.weight", ParameterKind.Matrix, f, c);
                int down = Add(p + "ffn_down.weight", ParameterKind.Matrix, c, f);
                blocks[l] = new BlockOffsets
                {
                    AttentionNorm = norm1, AttentionNormBias = -1, Qkv = q, QkvBias = -1,
                    AttentionOutput = o, AttentionOutputBias = -1, FeedForwardNorm = norm2, FeedForwardNormBias = -1,
                    FeedForwardIn = gate, FeedForwardInBias = -1, FeedForwardOut = down, FeedForwardOutBias = -1,
                };
            }
            else
            {
                blocks[l] = new BlockOffsets
                {
                    AttentionNorm = Add(p + "attn_norm.weight", ParameterKind.Norm, 1, c),
                    AttentionNormBias = Add(p + "attn_norm.bias", ParameterKind.Bias, 1, c),
                    Qkv = Add(p + "attn_qkv.weight", ParameterKind.Matrix, qkv, c),
                    QkvBias = Add(p + "attn_qkv.bias", ParameterKind.Bias, 1, qkv),
                    AttentionOutput = Add(p + "attn_output.weight", ParameterKind.Matrix, c, config.QDim),
                    AttentionOutputBias = Add(p + "attn_output.bias", ParameterKind.Bias, 1, c),
                    FeedForwardNorm = Add(p + "ffn_norm.weight", ParameterKind.Norm, 1, c),
                    FeedForwardNormBias = Add(p + "ffn_norm.bias", ParameterKind.Bias, 1, c),
                    FeedForwardIn = Add(p + "ffn_up.weight", ParameterKind.Matrix, f, c),
                    FeedForwardInBias = Add(p + "ffn_up.bias", ParameterKind.Bias, 1, f),
                    FeedForwardOut = Add(p + "ffn_down.weight", ParameterKind.Matrix, c, f),
                    FeedForwardOutBias = Add(p + "ffn_down.bias", ParameterKind.Bias, 1, c),
                };
            }
        }
        Blocks = blocks;
        OutputNorm = Add("output_norm.weight", ParameterKind.Norm, 1, c);
        OutputNormBias = config.Architecture == ModelArchitecture.Gpt2 ? Add("output_norm.bias", ParameterKind.Bias, 1, c) : -1;
        Output = config.TiedOutput ? TokenEmbedding : Add("output.weight", ParameterKind.Output, v, c);
    }

    public ModelConfig Config { get; }

    internal int TokenEmbedding { get; }

    internal int PositionEmbedding { get; }

    internal IReadOnlyList<BlockOffsets> Blocks { get; }

    internal int OutputNorm { get; }

    internal int OutputNormBias { get; }

    /// <summary>Offset of the (V, C) output projection: the token embedding's when tied.</summary>
    internal int Output { get; }
}
