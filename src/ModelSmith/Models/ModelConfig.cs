using ModelSmith.Formats;

namespace ModelSmith.Models;

/// <summary>The architectures the engine runs.</summary>
public enum ModelArchitecture
{
    /// <summary>Llama family: RMSNorm, RoPE, SwiGLU, grouped-query attention, no biases.</summary>
    Llama,

    /// <summary>GPT-2: LayerNorm with bias, learned positions, GELU, fused QKV, biases everywhere.</summary>
    Gpt2,
}

/// <summary>
/// Hyperparameters of a decoder-only transformer, as GGUF stores them under "&lt;arch&gt;.*" keys.
/// Immutable; everything else (weights, activations, caches) is sized from it.
/// </summary>
public sealed record ModelConfig
{
    public required ModelArchitecture Architecture { get; init; }

    /// <summary>Vocabulary size (rows of the embedding table).</summary>
    public required int VocabSize { get; init; }

    /// <summary>Training context length (positions the model was trained on).</summary>
    public required int ContextLength { get; init; }

    /// <summary>Residual stream width C.</summary>
    public required int EmbeddingLength { get; init; }

    /// <summary>Number of transformer blocks L.</summary>
    public required int BlockCount { get; init; }

    /// <summary>Hidden width of the feed-forward network F.</summary>
    public required int FeedForwardLength { get; init; }

    /// <summary>Query heads H.</summary>
    public required int HeadCount { get; init; }

    /// <summary>Key/value heads (H for multi-head attention, fewer for grouped-query attention).</summary>
    public required int KvHeadCount { get; init; }

    /// <summary>Per-head width D (usually C / H).</summary>
    public required int HeadDim { get; init; }

    /// <summary>Epsilon of RMSNorm (Llama) or LayerNorm (GPT-2).</summary>
    public required float NormEpsilon { get; init; }

    /// <summary>RoPE base frequency (Llama only).</summary>
    public float RopeFreqBase { get; init; } = 10000f;

    /// <summary>Number of dimensions of each head that RoPE rotates (Llama only; usually D).</summary>
    public int RopeDims { get; init; }

    /// <summary>True when the output projection reuses the token embedding.</summary>
    public bool TiedOutput { get; init; }

    /// <summary>Query heads that share one key/value head.</summary>
    public int GroupSize => HeadCount / KvHeadCount;

    /// <summary>Width of the key (and value) projections: kv-heads × D.</summary>
    public int KvDim => KvHeadCount * HeadDim;

    /// <summary>Width of the query projection: H × D.</summary>
    public int QDim => HeadCount * HeadDim;

    /// <summary>The GGUF architecture name ("llama", "gpt2").</summary>
    public string ArchitectureName => Architecture switch
    {
        ModelArchitecture.Llama => "llama",
        ModelArchitecture.Gpt2 => "gpt2",
        _ => throw new InvalidOperationException(),
    };

    /// <summary>Reads the hyperparameters of a GGUF model, checking them for consistency.</summary>
    public static ModelConfig FromGguf(GgufFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        string arch = file.GetString("general.architecture");
        ModelArchitecture architecture = arch switch
        {
            "llama" => ModelArchitecture.Llama,
            "gpt2" => ModelArchitecture.Gpt2,
            _ => throw new ModelFormatException(file.Path, -1, $"architecture '{arch}' is not supported; supported: llama, gpt2."),
        };

        int Int(string key) => checked((int)file.GetInteger($"{arch}.{key}"));
        int embedding = Int("embedding_length");
        int heads = Int("attention.head_count");
        int kvHeads = checked((int)file.GetInteger($"{arch}.attention.head_count_kv", heads));
        GgufTensorInfo tokenEmbedding = file.RequireTensor("token_embd.weight");
        int vocab = file.HasKey($"{arch}.vocab_size") ? Int("vocab_size") : checked((int)tokenEmbedding.Shape[^1]);
        int headDim = file.HasKey($"{arch}.attention.key_length") ? Int("attention.key_length") : (heads > 0 ? embedding / heads : 0);

        var config = new ModelConfig
        {
            Architecture = architecture,
            VocabSize = vocab,
            ContextLength = Int("context_length"),
            EmbeddingLength = embedding,
            BlockCount = Int("block_count"),
            FeedForwardLength = Int("feed_forward_length"),
            HeadCount = heads,
            KvHeadCount = kvHeads,
            HeadDim = headDim,
            NormEpsilon = (float)(architecture == ModelArchitecture.Llama
                ? file.GetFloat($"{arch}.attention.layer_norm_rms_epsilon", 1e-5)
                : file.GetFloat($"{arch}.attention.layer_norm_epsilon", 1e-5)),
            RopeFreqBase = (float)file.GetFloat($"{arch}.rope.freq_base", 10000.0),
            RopeDims = checked((int)file.GetInteger($"{arch}.rope.dimension_count", headDim)),
            TiedOutput = file.FindTensor("output.weight") is null,
        };
        string? problem = config.Validate();
        if (problem != null) throw new ModelFormatException(file.Path, -1, problem);
        return config;
    }

    /// <summary>Null when the hyperparameters are consistent, else what is wrong.</summary>
    public string? Validate()
    {
        if (VocabSize <= 0) return $"vocabulary size {VocabSize} must be positive.";
        if (EmbeddingLength <= 0 || BlockCount <= 0 || FeedForwardLength <= 0 || HeadCount <= 0 || KvHeadCount <= 0 || HeadDim <= 0)
            return "embedding length, block count, feed-forward length, head counts and head size must all be positive.";
        if (ContextLength <= 0) return $"context length {ContextLength} must be positive.";
        if (HeadCount % KvHeadCount != 0) return $"{HeadCount} query heads cannot be shared evenly by {KvHeadCount} key/value heads.";
        if (Architecture == ModelArchitecture.Gpt2 && HeadDim * HeadCount != EmbeddingLength)
            return $"GPT-2 needs head count × head size = embedding length, got {HeadCount} × {HeadDim} ≠ {EmbeddingLength}.";
        if (Architecture == ModelArchitecture.Llama && (RopeDims <= 0 || RopeDims > HeadDim || RopeDims % 2 != 0))
            return $"RoPE dimension count {RopeDims} must be even and at most the head size {HeadDim}.";
        if (NormEpsilon <= 0 || float.IsNaN(NormEpsilon)) return $"norm epsilon {NormEpsilon} must be positive.";
        return null;
    }

    /// <summary>Number of parameters of a model with this configuration.</summary>
    public long ParameterCount
    {
        get
        {
            long c = EmbeddingLength, f = FeedForwardLength, v = VocabSize;
            long output = TiedOutput ? 0 : v * c;
            if (Architecture == ModelArchitecture.Llama)
            {
                long perLayer = c + c * QDim + 2 * c * KvDim + QDim * c + c + 3 * c * f;
                return v * c + BlockCount * perLayer + c + output;
            }
            long gpt2Layer = 2 * c + c * 3 * c + 3 * c + c * c + c + 2 * c + c * f + f + f * c + c;
            return v * c + (long)ContextLength * c + BlockCount * gpt2Layer + 2 * c + output;
        }
    }
}
