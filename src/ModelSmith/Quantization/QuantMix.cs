using System.Text;
using ModelSmith.Formats;

namespace ModelSmith.Quantization;

/// <summary>
/// The model facts llama.cpp's type choice depends on (its hparams and model type), read from GGUF metadata.
/// </summary>
/// <param name="Architecture">general.architecture, e.g. "llama".</param>
/// <param name="LayerCount">{arch}.block_count (n_layer).</param>
/// <param name="HeadCount">{arch}.attention.head_count of layer 0.</param>
/// <param name="KvHeadCount">{arch}.attention.head_count_kv of layer 0 (defaults to the head count).</param>
/// <param name="ExpertCount">{arch}.expert_count (0 for a dense model).</param>
public sealed record QuantModelInfo(string Architecture, int LayerCount, int HeadCount, int KvHeadCount, int ExpertCount)
{
    /// <summary>n_gqa(): query heads per key/value head (0 when there are no key/value heads).</summary>
    public int GroupSize => KvHeadCount > 0 ? HeadCount / KvHeadCount : 0;

    /// <summary>llama.cpp's LLM_TYPE_70B: a llama with 80 layers and grouped-query attention.</summary>
    public bool Is70B => Architecture == "llama" && LayerCount == 80 && HeadCount != KvHeadCount;

    /// <summary>Reads the facts from a GGUF file's metadata; a missing key reads as llama.cpp's default.</summary>
    public static QuantModelInfo FromGguf(GgufFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        string arch = file.GetStringOrNull("general.architecture")
            ?? throw new ModelFormatException(file.Path, -1, "general.architecture is missing; llama.cpp's quantizer needs it to pick tensor types.");
        int First(string key, int fallback)
        {
            GgufValue? v = file.Get(key);
            if (v is null)
            {
                return fallback;
            }
            long n = v.Type == GgufValueType.Array ? (v.ArrayLength > 0 ? v.AsInt64Array()[0] : fallback) : v.AsInt64();
            return checked((int)n);
        }
        int layers = First($"{arch}.block_count", 0);
        int heads = First($"{arch}.attention.head_count", 0);
        int kvHeads = First($"{arch}.attention.head_count_kv", heads);
        int experts = First($"{arch}.expert_count", 0);
        return new QuantModelInfo(arch, layers, heads, kvHeads, experts);
    }
}

/// <summary>What <see cref="QuantMix"/> decided for one tensor.</summary>
/// <param name="Type">The type the tensor is stored in.</param>
/// <param name="Wanted">The type the mix or an override asked for before a fallback replaced it, or null when none did.</param>
/// <param name="Override">The --keep override that chose the type, or null.</param>
/// <param name="Quantizable">False for tensors llama.cpp never converts (1-D tensors, norms, ...), which keep their type.</param>
public sealed record TensorTypeChoice(GgmlType Type, GgmlType? Wanted, TensorTypeOverride? Override, bool Quantizable)
{
    /// <summary>True when the row length did not fit the wanted type and a fallback type was taken.</summary>
    public bool FellBack => Wanted is not null;
}

/// <summary>
/// llama.cpp's per-tensor type choice for a file type (llama-quant.cpp: tensor_allows_quantization,
/// llama_tensor_get_type, llama_tensor_get_type_impl, tensor_type_fallback), ported rule for rule for the
/// file types ModelSmith writes:
/// <list type="bullet">
/// <item>Only tensors of 2+ dimensions whose name ends in "weight" are converted; norms, position
/// embeddings and a few tiny tensors keep their type.</item>
/// <item>output.weight, and token_embd.weight when the output is tied to it, get Q6_K (Q8_0 when its
/// rows do not fit the file type's block, or for Falcon, and Q8_0 files keep Q8_0).</item>
/// <item>attn_v (and the fused attn_qkv) gets more bits: Q2_K → Q3_K (Q4_K with 4+ query heads per KV head),
/// Q3_K_M → Q5_K for the first two and Q4_K after, Q3_K_L → Q5_K, Q4_K_S → Q5_K for the first four,
/// Q4_K_M/Q5_K_M → Q6_K on the layers use_more_bits picks (the first and last eighth, and every third
/// between); a 70B llama raises Q3_K/Q4_K to Q5_K, an 8-expert model uses Q8_0.</item>
/// <item>ffn_down: Q2_K → Q3_K, Q3_K_M → Q5_K below layer n/16 and Q4_K after (Falcon: Q3_K off the
/// use_more_bits layers), Q3_K_L → Q5_K, Q4_K_M/Q5_K_M → Q6_K on use_more_bits layers, Q4_K_S → Q5_K below
/// n/8; with an importance matrix Q4_0/Q5_0 use Q4_1/Q5_1 below n/8.</item>
/// <item>attn_output: Q2_K → Q3_K, Q3_K_M → Q4_K, Q3_K_L → Q5_K (8 experts: Q5_K for the low mixes);
/// attn_k of an 8-expert model: Q8_0.</item>
/// <item>A row length that is not a multiple of the block: Q2_K/Q3_K → Q4_0, Q4_K → Q5_0, Q5_K → Q5_1,
/// Q6_K → Q8_0, and F16 when even 32 does not divide it; a 32-block type that does not fit has no
/// fallback in llama.cpp and is refused.</item>
/// </list>
/// Layer positions come from counters that advance in llama.cpp's tensor order (by layer number, then by
/// name), so <see cref="Choose"/> must be called in <see cref="LlamaOrder"/>; <see cref="Plan"/> does that.
/// </summary>
public sealed class QuantMix
{
    private readonly QuantModelInfo _model;
    private readonly QuantFileType _fileType;
    private readonly GgmlType _defaultType;
    private readonly bool _hasImportance;
    private readonly bool _pure;
    private readonly IReadOnlyList<TensorTypeOverride> _overrides;
    private readonly int _attentionVCount;
    private readonly int _layerCount;
    private readonly bool _tiedEmbeddings;
    private int _attentionV;
    private int _ffnDown;
    private int _ffnGate;
    private int _ffnUp;

    /// <summary>
    /// A mix for the tensors named <paramref name="tensorNames"/> (all of the model's tensors; they set
    /// the attn_v count and whether the output is tied). <paramref name="hasImportance"/>: an importance
    /// matrix will be used (it changes Q4_0/Q5_0's ffn_down); <paramref name="pure"/>: no mix, every matrix
    /// the default type (llama-quantize --pure).
    /// </summary>
    public QuantMix(QuantModelInfo model, IEnumerable<string> tensorNames, QuantFileType fileType,
        bool hasImportance = false, IReadOnlyList<TensorTypeOverride>? overrides = null, bool pure = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tensorNames);
        _model = model;
        _fileType = fileType;
        _defaultType = QuantFileTypes.DefaultType(fileType);
        _hasImportance = hasImportance;
        _pure = pure;
        _overrides = overrides ?? [];
        _tiedEmbeddings = true;
        foreach (string name in tensorNames)
        {
            Category category = CategoryOf(name);
            if (category is Category.AttentionV or Category.AttentionQkv or Category.AttentionKvB)
            {
                _attentionVCount++;
            }
            if (category == Category.Output)
            {
                _tiedEmbeddings = false;
            }
        }
        _layerCount = model.LayerCount;
    }

    /// <summary>Tensors that needed a fallback type so far.</summary>
    public int FallbackCount { get; private set; }

    /// <summary>
    /// The type for one tensor of current type <paramref name="current"/> and shape <paramref name="shape"/>
    /// (innermost first). Call once per tensor in <see cref="LlamaOrder"/>. Throws
    /// <see cref="InvalidOperationException"/> where llama.cpp refuses (no fallback for the row length).
    /// </summary>
    public TensorTypeChoice Choose(string name, GgmlType current, ReadOnlySpan<long> shape)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (!AllowsQuantization(name, shape))
        {
            return new TensorTypeChoice(current, null, null, Quantizable: false);
        }
        GgmlType type = _defaultType;
        if (GgmlTypeInfo.BlockSize(_defaultType) == 1)
        {
            return new TensorTypeChoice(type, null, null, Quantizable: true);
        }
        TensorTypeOverride? manual = null;
        foreach (TensorTypeOverride o in _overrides)
        {
            if (o.Matches(name))
            {
                manual = o;
                type = o.Type;
                break;
            }
        }
        if (manual is null && !_pure)
        {
            type = MixType(type, name, shape[0]);
        }
        GgmlType fitted = Fallback(name, shape[0], type);
        return new TensorTypeChoice(fitted, fitted != type ? type : null, manual, Quantizable: true);
    }

    /// <summary>
    /// Types for every tensor of a model, in <see cref="LlamaOrder"/> (the order llama.cpp writes them).
    /// </summary>
    public static IReadOnlyList<(GgufTensorInfo Tensor, TensorTypeChoice Choice)> Plan(QuantModelInfo model, IReadOnlyList<GgufTensorInfo> tensors,
        QuantFileType fileType, bool hasImportance = false, IReadOnlyList<TensorTypeOverride>? overrides = null, bool pure = false)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        GgufTensorInfo[] ordered = LlamaOrder(tensors);
        var mix = new QuantMix(model, ordered.Select(t => t.Name), fileType, hasImportance, overrides, pure);
        var plan = new (GgufTensorInfo, TensorTypeChoice)[ordered.Length];
        for (int i = 0; i < ordered.Length; i++)
        {
            plan[i] = (ordered[i], mix.Choose(ordered[i].Name, ordered[i].Type, ordered[i].Shape));
        }
        return plan;
    }

    /// <summary>
    /// llama.cpp's tensor order (llama_model_loader's weight_name_comparer): by the layer number after
    /// "blk." (tensors outside a block first, as layer −1), then by name, byte by byte.
    /// </summary>
    public static GgufTensorInfo[] LlamaOrder(IReadOnlyList<GgufTensorInfo> tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var keyed = new (long Layer, byte[] Name, GgufTensorInfo Tensor)[tensors.Count];
        for (int i = 0; i < keyed.Length; i++)
        {
            keyed[i] = (LayerOf(tensors[i].Name) ?? -1, Encoding.UTF8.GetBytes(tensors[i].Name), tensors[i]);
        }
        Array.Sort(keyed, (a, b) => a.Layer != b.Layer ? a.Layer.CompareTo(b.Layer) : a.Name.AsSpan().SequenceCompareTo(b.Name));
        var ordered = new GgufTensorInfo[keyed.Length];
        for (int i = 0; i < keyed.Length; i++)
        {
            ordered[i] = keyed[i].Tensor;
        }
        return ordered;
    }

    /// <summary>
    /// tensor_allows_quantization: 2+ dimensions, a name ending in "weight", and none of llama.cpp's
    /// exceptions (norms, expert routers, position and token-type embeddings, the tiny
    /// tensors of RWKV/Mamba/Gemma-3n/T5 and multimodal projectors).
    /// </summary>
    public static bool AllowsQuantization(string name, ReadOnlySpan<long> shape)
    {
        ArgumentNullException.ThrowIfNull(name);
        int dims = shape.Length;
        while (dims > 1 && shape[dims - 1] == 1)
        {
            dims--;
        }
        if (dims < 2 || !name.EndsWith("weight", StringComparison.Ordinal))
        {
            return false;
        }
        foreach (string part in s_neverQuantized)
        {
            if (name.Contains(part, StringComparison.Ordinal))
            {
                return false;
            }
        }
        // llama.cpp compares with LLM_TN(arch)(POS_EMBD / TOKEN_TYPES, "weight"), which names these tensors
        // the same for every architecture, so they are never quantized whatever the model.
        return name is not ("position_embd.weight" or "token_types.weight");
    }

    /// <summary>The layer number after "blk." as C's sscanf("blk.%d.") reads it, or null.</summary>
    public static long? LayerOf(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (!name.StartsWith("blk.", StringComparison.Ordinal))
        {
            return null;
        }
        int i = 4;
        while (i < name.Length && char.IsWhiteSpace(name[i]))
        {
            i++;
        }
        bool negative = false;
        if (i < name.Length && (name[i] == '-' || name[i] == '+'))
        {
            negative = name[i] == '-';
            i++;
        }
        int start = i;
        long value = 0;
        while (i < name.Length && name[i] is >= '0' and <= '9')
        {
            value = Math.Min(value * 10 + (name[i] - '0'), int.MaxValue);
            i++;
        }
        if (i == start)
        {
            return null;
        }
        return negative ? -value : value;
    }

    /// <summary>Substrings that keep a tensor out of quantization in every architecture (tensor_allows_quantization).</summary>
    private static readonly string[] s_neverQuantized =
    [
        "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
        "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight",
        "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
        "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight",
        "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
        "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
        "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos",
        ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
    ];

    /// <summary>llama_tensor_get_type_impl for the file types ModelSmith writes.</summary>
    private GgmlType MixType(GgmlType type, string name, long columns)
    {
        Category category = CategoryOf(name);
        QuantFileType ft = _fileType;
        bool falcon = _model.Architecture == "falcon";
        int experts = _model.ExpertCount;
        int gqa = _model.GroupSize;

        if (category == Category.Output || (_tiedEmbeddings && category == Category.TokenEmbedding))
        {
            if (falcon || columns % GgmlTypeInfo.BlockSize(type) != 0)
            {
                return GgmlType.Q8_0;
            }
            return type != GgmlType.Q8_0 ? GgmlType.Q6_K : type;
        }
        if (category == Category.TokenEmbedding)
        {
            return type;
        }
        if (category is Category.AttentionV or Category.AttentionQkv or Category.AttentionKvB)
        {
            if (ft == QuantFileType.Q2_K)
            {
                type = gqa >= 4 ? GgmlType.Q4_K : GgmlType.Q3_K;
            }
            else if (ft == QuantFileType.Q3_K_M)
            {
                type = _attentionV < 2 ? GgmlType.Q5_K : GgmlType.Q4_K;
            }
            else if (ft == QuantFileType.Q3_K_L)
            {
                type = GgmlType.Q5_K;
            }
            else if ((ft == QuantFileType.Q4_K_M || ft == QuantFileType.Q5_K_M) && UseMoreBits(_attentionV, _attentionVCount))
            {
                type = GgmlType.Q6_K;
            }
            else if (ft == QuantFileType.Q4_K_S && _attentionV < 4)
            {
                type = GgmlType.Q5_K;
            }
            if (_model.Is70B && type is GgmlType.Q3_K or GgmlType.Q4_K)
            {
                type = GgmlType.Q5_K;
            }
            if (experts == 8)
            {
                type = GgmlType.Q8_0;
            }
            _attentionV++;
            return type;
        }
        if (category == Category.AttentionK)
        {
            return experts == 8 ? GgmlType.Q8_0 : type;
        }
        if (category == Category.AttentionQ)
        {
            return type;
        }
        if (category == Category.FeedForwardDown)
        {
            (int layer, int layers) = LayerInfo(_ffnDown, _layerCount, name);
            if (ft == QuantFileType.Q2_K)
            {
                type = GgmlType.Q3_K;
            }
            else if (ft == QuantFileType.Q3_K_M)
            {
                type = layer < layers / 16 ? GgmlType.Q5_K
                    : !falcon || UseMoreBits(layer, layers) ? GgmlType.Q4_K
                    : GgmlType.Q3_K;
            }
            else if (ft == QuantFileType.Q3_K_L)
            {
                type = falcon ? GgmlType.Q4_K : GgmlType.Q5_K;
            }
            else if (ft == QuantFileType.Q4_K_M)
            {
                if (falcon)
                {
                    type = layer < layers / 16 ? GgmlType.Q6_K : UseMoreBits(layer, layers) ? GgmlType.Q5_K : GgmlType.Q4_K;
                }
                else if (UseMoreBits(layer, layers))
                {
                    type = GgmlType.Q6_K;
                }
            }
            else if (ft == QuantFileType.Q5_K_M && UseMoreBits(layer, layers))
            {
                type = GgmlType.Q6_K;
            }
            else if (ft == QuantFileType.Q4_K_S && !falcon && layer < layers / 8)
            {
                type = GgmlType.Q5_K;
            }
            else if ((ft == QuantFileType.Q4_0 || ft == QuantFileType.Q5_0) && _hasImportance && layer < layers / 8)
            {
                // llama.cpp guards the first ffn_down layers of Q4_0/Q5_0 only when an imatrix is given, so
                // that a file quantized without one stays what it always was.
                type = ft == QuantFileType.Q4_0 ? GgmlType.Q4_1 : GgmlType.Q5_1;
            }
            _ffnDown++;
            return type;
        }
        if (category == Category.AttentionOutput)
        {
            if (!falcon)
            {
                if (experts == 8)
                {
                    if (ft is QuantFileType.Q2_K or QuantFileType.Q3_K_S or QuantFileType.Q3_K_M or QuantFileType.Q4_K_S or QuantFileType.Q4_K_M)
                    {
                        type = GgmlType.Q5_K;
                    }
                }
                else if (ft == QuantFileType.Q2_K)
                {
                    type = GgmlType.Q3_K;
                }
                else if (ft == QuantFileType.Q3_K_M)
                {
                    type = GgmlType.Q4_K;
                }
                else if (ft == QuantFileType.Q3_K_L)
                {
                    type = GgmlType.Q5_K;
                }
            }
            else if (ft == QuantFileType.Q3_K_L)
            {
                type = GgmlType.Q4_K;
            }
            return type;
        }
        if (category == Category.FeedForwardGate)
        {
            LayerInfo(_ffnGate, _layerCount, name);
            _ffnGate++;
            return type;
        }
        if (category == Category.FeedForwardUp)
        {
            LayerInfo(_ffnUp, _layerCount, name);
            _ffnUp++;
            return type;
        }
        return type;
    }

    /// <summary>
    /// tensor_type_fallback: the block type if the row length fits it, else llama.cpp's compatible type
    /// (F16 when no block type fits).
    /// </summary>
    private GgmlType Fallback(string name, long columns, GgmlType type)
    {
        if (columns % GgmlTypeInfo.BlockSize(type) == 0)
        {
            return type;
        }
        FallbackCount++;
        GgmlType fallback = type switch
        {
            GgmlType.Q2_K or GgmlType.Q3_K => GgmlType.Q4_0,
            GgmlType.Q4_K => GgmlType.Q5_0,
            GgmlType.Q5_K => GgmlType.Q5_1,
            GgmlType.Q6_K => GgmlType.Q8_0,
            _ => throw new InvalidOperationException(
                $"Tensor '{name}' has rows of {columns} values, not a multiple of the {type} block of {GgmlTypeInfo.BlockSize(type)}, and llama.cpp defines no fallback for {type}; " +
                $"store such tensors in another type (e.g. --keep '{System.Text.RegularExpressions.Regex.Replace(name, @"^blk\.[0-9]+\.", "blk.*.")}=f16') or use a K-quant file type, which falls back to F16."),
        };
        return columns % GgmlTypeInfo.BlockSize(fallback) == 0 ? fallback : GgmlType.F16;
    }

    /// <summary>
    /// The layer of an ffn tensor: the counter's value for dense models; for mixture-of-experts models the
    /// number after "blk." in the name (experts are not stored in layer order), which must be in [0, layers).
    /// </summary>
    private (int Layer, int Layers) LayerInfo(int counter, int layers, string name)
    {
        if (_model.ExpertCount > 1)
        {
            long? layer = LayerOf(name) ?? throw new InvalidOperationException($"Failed to determine the layer of tensor '{name}' (expected 'blk.N.' in its name).");
            if (layer < 0 || layer >= layers)
            {
                throw new InvalidOperationException($"Bad layer {layer} for tensor '{name}'; the model has {layers} layers.");
            }
            return ((int)layer, layers);
        }
        return (counter, layers);
    }

    /// <summary>
    /// use_more_bits: the first and last eighth of the layers, and every third layer in between.
    /// </summary>
    private static bool UseMoreBits(int layer, int layers) =>
        layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;

    private enum Category
    {
        TokenEmbedding,
        AttentionQ,
        AttentionV,
        AttentionK,
        AttentionQkv,
        AttentionKvB,
        AttentionOutput,
        FeedForwardUp,
        FeedForwardGate,
        FeedForwardDown,
        Output,
        Other,
    }

    /// <summary>tensor_get_category: llama.cpp's broad role of a tensor, by name.</summary>
    private static Category CategoryOf(string name)
    {
        if (name == "output.weight")
        {
            return Category.Output;
        }
        if (name is "token_embd.weight" or "per_layer_token_embd.weight")
        {
            return Category.TokenEmbedding;
        }
        if (name.Contains("attn_qkv.weight", StringComparison.Ordinal))
        {
            return Category.AttentionQkv;
        }
        if (name.Contains("attn_kv_b.weight", StringComparison.Ordinal))
        {
            return Category.AttentionKvB;
        }
        if (name.Contains("attn_v.weight", StringComparison.Ordinal))
        {
            return Category.AttentionV;
        }
        if (name.Contains("attn_k.weight", StringComparison.Ordinal))
        {
            return Category.AttentionK;
        }
        if (name.Contains("attn_q.weight", StringComparison.Ordinal))
        {
            return Category.AttentionQ;
        }
        if (name.Contains("attn_output.weight", StringComparison.Ordinal))
        {
            return Category.AttentionOutput;
        }
        if (name.Contains("ffn_up", StringComparison.Ordinal))
        {
            return Category.FeedForwardUp;
        }
        if (name.Contains("ffn_gate", StringComparison.Ordinal))
        {
            return Category.FeedForwardGate;
        }
        if (name.Contains("ffn_down", StringComparison.Ordinal))
        {
            return Category.FeedForwardDown;
        }
        return Category.Other;
    }
}
