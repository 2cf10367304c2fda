using ModelSmith.Models;

namespace ModelSmith.Training;

/// <summary>Hyperparameters of LoRA adapters: W x + s·B·A·dropout(x), s = α/r (or α/√r with rsLoRA).</summary>
public sealed record LoraOptions
{
    /// <summary>Rank r of the update B·A.</summary>
    public int Rank { get; init; } = 8;

    /// <summary>α; the update is scaled by α/r (α/√r with <see cref="RankStabilized"/>).</summary>
    public float Alpha { get; init; } = 16f;

    /// <summary>Dropout probability on the adapter's input (training only; the base path never drops).</summary>
    public float Dropout { get; init; }

    /// <summary>rsLoRA scaling α/√r, which keeps the update's size independent of the rank.</summary>
    public bool RankStabilized { get; init; }

    /// <summary>
    /// The linear layers that get adapters, by GGUF module name (Llama: attn_q, attn_k, attn_v, attn_output,
    /// ffn_gate, ffn_up, ffn_down; GPT-2: attn_qkv, attn_output, ffn_up, ffn_down). Null: all of them.
    /// </summary>
    public IReadOnlyList<string>? Modules { get; init; }

    /// <summary>The factor s of the update.</summary>
    public float Scale => RankStabilized ? Alpha / MathF.Sqrt(Rank) : Alpha / Rank;

    /// <summary>Every linear module of <paramref name="architecture"/>, in block order.</summary>
    public static IReadOnlyList<string> AllModules(ModelArchitecture architecture) => architecture == ModelArchitecture.Llama
        ? ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
        : ["attn_qkv", "attn_output", "ffn_up", "ffn_down"];

    /// <summary>Null when usable with <paramref name="architecture"/>, else what is wrong.</summary>
    public string? Validate(ModelArchitecture architecture)
    {
        if (Rank < 1) return $"LoRA rank {Rank} must be at least 1.";
        if (!(Alpha > 0) || float.IsInfinity(Alpha)) return $"LoRA alpha {Alpha} must be positive and finite.";
        if (!(Dropout >= 0 && Dropout < 1)) return $"LoRA dropout {Dropout} must be in [0, 1).";
        if (Modules != null)
        {
            IReadOnlyList<string> all = AllModules(architecture);
            if (Modules.Count == 0) return "LoRA needs at least one target module.";
            foreach (string m in Modules)
                if (!all.Contains(m)) return $"'{m}' is not a linear module of {architecture}; choose from {string.Join(", ", all)}.";
        }
        return null;
    }
}

/// <summary>Which activation feeds an adapted linear layer.</summary>
internal enum LoraInput
{
    AttentionNorm,
    AttentionOutput,
    FeedForwardNorm,
    FeedForwardActivation,
}

/// <summary>One adapted linear layer: where its weight, its adapter and its output columns are.</summary>
internal sealed record LoraTarget(
    int Layer,
    string Module,
    LoraInput Input,
    int In,
    int Out,
    int OutputColumn,  // first column of this layer's output inside the (possibly fused) activation
    int OutputWidth,   // row stride of that activation
    int Weight,        // offset of W (Out, In) in the model's layout
    int A,             // offset of A (r, In) in the adapter layout
    int B);            // offset of B (Out, r) in the adapter layout

/// <summary>
/// The adapter tensors of a model: for each adapted weight "blk.L.M.weight", A = "blk.L.M.weight.lora_a"
/// (r, in), GGUF [in, r], and B = "blk.L.M.weight.lora_b" (out, r), GGUF [r, out], as llama.cpp's LoRA
/// adapters name and shape them.
/// </summary>
public sealed class LoraLayout : TensorLayout
{
    public LoraLayout(ParameterLayout model, LoraOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        ModelConfig cfg = model.Config;
        string? problem = options.Validate(cfg.Architecture);
        if (problem != null) throw new ArgumentException(problem, nameof(options));
        Model = model;
        Options = options;
        IReadOnlyList<string> modules = options.Modules ?? LoraOptions.AllModules(cfg.Architecture);
        int c = cfg.EmbeddingLength, f = cfg.FeedForwardLength, r = options.Rank;
        int s = cfg.QDim + 2 * cfg.KvDim;
        bool llama = cfg.Architecture == ModelArchitecture.Llama;
        var targets = new List<LoraTarget>();
        for (int l = 0; l < cfg.BlockCount; l++)
        {
            // Module, input, in, out, first output column, output row stride.
            var all = llama
                ? new (string, LoraInput, int, int, int, int)[]
                {
                    ("attn_q", LoraInput.AttentionNorm, c, cfg.QDim, 0, s),
                    ("attn_k", LoraInput.AttentionNorm, c, cfg.KvDim, cfg.QDim, s),
                    ("attn_v", LoraInput.AttentionNorm, c, cfg.KvDim, cfg.QDim + cfg.KvDim, s),
                    ("attn_output", LoraInput.AttentionOutput, cfg.QDim, c, 0, c),
                    ("ffn_gate", LoraInput.FeedForwardNorm, c, f, 0, 2 * f),
                    ("ffn_up", LoraInput.FeedForwardNorm, c, f, f, 2 * f),
                    ("ffn_down", LoraInput.FeedForwardActivation, f, c, 0, c),
                }
                : new (string, LoraInput, int, int, int, int)[]
                {
                    ("attn_qkv", LoraInput.AttentionNorm, c, s, 0, s),
                    ("attn_output", LoraInput.AttentionOutput, cfg.QDim, c, 0, c),
                    ("ffn_up", LoraInput.FeedForwardNorm, c, f, 0, f),
                    ("ffn_down", LoraInput.FeedForwardActivation, f, c, 0, c),
                };
            foreach ((string module, LoraInput input, int inDim, int outDim, int column, int width) in all)
            {
                if (!modules.Contains(module)) continue;
                string weight = $"blk.{l}.{module}.weight";
                int a = Add(weight + ".lora_a", ParameterKind.LoraA, r, inDim);
                int b = Add(weight + ".lora_b", ParameterKind.LoraB, outDim, r);
                targets.Add(new LoraTarget(l, module, input, inDim, outDim, column, width, model.Find(weight)!.Offset, a, b));
            }
        }
        Targets = targets;
    }

    /// <summary>The layout of the model the adapters belong to.</summary>
    public ParameterLayout Model { get; }

    public LoraOptions Options { get; }

    internal IReadOnlyList<LoraTarget> Targets { get; }
}

/// <summary>The trainable adapter weights.</summary>
public sealed class LoraParameters : TensorSet<LoraLayout>
{
    public LoraParameters(LoraLayout layout) : base(layout)
    {
    }

    /// <summary>
    /// The usual LoRA start: A ~ U(−1/√in, 1/√in) (Kaiming-uniform with a = √5, as PEFT draws it), B = 0, so the
    /// adapted model starts equal to the base model.
    /// </summary>
    public void Initialize(ulong seed)
    {
        var rng = new TrainingRandom(seed);
        foreach (ParameterTensor t in Layout.Tensors)
        {
            if (t.Kind == ParameterKind.LoraA) rng.FillUniform(this[t], 1f / MathF.Sqrt(t.Cols));
            else this[t].Clear();
        }
    }

    /// <summary>W' = W + s·B·A for every adapted weight of <paramref name="model"/> (which must have this adapter's layout).</summary>
    public void MergeInto(ModelParameters model)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (!model.Layout.SameShape(Layout.Model))
            throw new ArgumentException("The adapter belongs to a model of another configuration.", nameof(model));
        float s = Layout.Options.Scale;
        int r = Layout.Options.Rank;
        ReadOnlySpan<float> all = Values;
        foreach (LoraTarget t in Layout.Targets)
        {
            Span<float> w = model.Values.Slice(t.Weight, t.Out * t.In);
            ReadOnlySpan<float> a = all.Slice(t.A, r * t.In), b = all.Slice(t.B, t.Out * r);
            for (int o = 0; o < t.Out; o++)
                for (int i = 0; i < t.In; i++)
                {
                    double d = 0;
                    for (int k = 0; k < r; k++) d += (double)b[o * r + k] * a[k * t.In + i];
                    w[o * t.In + i] += (float)(s * d);
                }
        }
    }
}

/// <summary>Gradients of the loss with respect to the adapter weights.</summary>
public sealed class LoraGradients : TensorSet<LoraLayout>
{
    public LoraGradients(LoraLayout layout) : base(layout)
    {
    }

    public void Clear() => Values.Clear();
}
