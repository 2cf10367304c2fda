using ModelSmith.Formats;
using ModelSmith.Inference;
using ModelSmith.Tensors;

namespace ModelSmith.Models;

/// <summary>
/// The Llama architecture as llama.cpp runs it: token embedding, then per block
/// x += Wo·attn(rope(Wq·n), rope(Wk·n), Wv·n) with n = rmsnorm(x), and
/// x += Wdown·(silu(Wgate·n) ⊙ Wup·n) with n = rmsnorm(x); finally logits = Wout·rmsnorm(x).
/// RoPE in GGUF's interleaved ("normal") layout; grouped-query attention; output tied to the
/// embedding when the file has no output.weight.
/// </summary>
internal sealed class LlamaModel : LanguageModel
{
    private readonly LlamaWeights _weights;
    private readonly LlamaActivations _act;
    private readonly Attention _attention;
    private RopeTable _rope;

    public LlamaModel(ModelConfig config, GgufFile file, int threads, WeightResidence residence) : base(config, file, threads, residence)
    {
        int c = config.EmbeddingLength, f = config.FeedForwardLength, v = config.VocabSize;
        var layers = new LlamaLayerWeights[config.BlockCount];
        for (int l = 0; l < layers.Length; l++)
        {
            string p = $"blk.{l}.";
            layers[l] = new LlamaLayerWeights(
                AttentionNorm: Vector(p + "attn_norm.weight", c),
                Query: Matrix(p + "attn_q.weight", config.QDim, c),
                Key: Matrix(p + "attn_k.weight", config.KvDim, c),
                Value: Matrix(p + "attn_v.weight", config.KvDim, c),
                Output: Matrix(p + "attn_output.weight", c, config.QDim),
                FeedForwardNorm: Vector(p + "ffn_norm.weight", c),
                Gate: Matrix(p + "ffn_gate.weight", f, c),
                Up: Matrix(p + "ffn_up.weight", f, c),
                Down: Matrix(p + "ffn_down.weight", c, f));
        }
        WeightMatrix embedding = Matrix("token_embd.weight", v, c);
        _weights = new LlamaWeights(
            embedding,
            layers,
            Vector("output_norm.weight", c),
            config.TiedOutput ? embedding : Matrix("output.weight", v, c));
        _act = new LlamaActivations(config, MaxBatch);
        _attention = new Attention(config);
        _rope = new RopeTable(config.RopeDims, config.RopeFreqBase, config.ContextLength, RopeMode.Normal);
    }

    private protected override void ForwardBatch(ReadOnlySpan<int> tokens, KvCache cache, Span<float> logits, bool allLogits)
    {
        ModelConfig cfg = Config;
        int T = tokens.Length, c = cfg.EmbeddingLength, f = cfg.FeedForwardLength, d = cfg.HeadDim;
        int start = cache.Length;
        LlamaActivations a = _act;
        Span<float> x = a.Residual.AsSpan(0, T * c);      // (T, C)
        Span<float> xb = a.Normed.AsSpan(0, T * c);       // (T, C)
        Span<float> xb2 = a.Projected.AsSpan(0, T * c);   // (T, C)
        Span<float> q = a.Query.AsSpan(0, T * cfg.QDim);  // (T, H·D)
        Span<float> k = a.Key.AsSpan(0, T * cfg.KvDim);   // (T, Hkv·D)
        Span<float> v = a.Value.AsSpan(0, T * cfg.KvDim); // (T, Hkv·D)
        Span<float> att = a.AttentionOut.AsSpan(0, T * cfg.QDim); // (T, H·D)
        Span<float> gate = a.Gate.AsSpan(0, T * f);       // (T, F)
        Span<float> up = a.Up.AsSpan(0, T * f);           // (T, F)

        if (start + T > _rope.MaxPositions)
            _rope = new RopeTable(cfg.RopeDims, cfg.RopeFreqBase, cache.Capacity, RopeMode.Normal);
        for (int t = 0; t < T; t++)
            _weights.TokenEmbedding.DequantizeRow(tokens[t], x.Slice(t * c, c));

        for (int l = 0; l < cfg.BlockCount; l++)
        {
            LlamaLayerWeights w = _weights.Layers[l];

            // Attention block.
            for (int t = 0; t < T; t++)
                RmsNorm.Forward(x.Slice(t * c, c), w.AttentionNorm, cfg.NormEpsilon, xb.Slice(t * c, c));
            MatMulInputObserver?.Observe(l, MatMulInput.Attention, xb, T);
            MatMul.Forward(xb, w.Query, [], T, q, Pool);
            MatMul.Forward(xb, w.Key, [], T, k, Pool);
            MatMul.Forward(xb, w.Value, [], T, v, Pool);
            for (int t = 0; t < T; t++)
            {
                for (int h = 0; h < cfg.HeadCount; h++) Rope.Apply(q.Slice(t * cfg.QDim + h * d, d), d, start + t, _rope);
                for (int g = 0; g < cfg.KvHeadCount; g++) Rope.Apply(k.Slice(t * cfg.KvDim + g * d, d), d, start + t, _rope);
            }
            _attention.Store(k, v, cache, l, start, T);
            _attention.Forward(q, cache, l, start, T, att, Pool);
            MatMulInputObserver?.Observe(l, MatMulInput.AttentionOutput, att, T);
            MatMul.Forward(att, w.Output, [], T, xb2, Pool);
            VectorOps.Add(x, xb2, x);

            // Feed-forward block.
            for (int t = 0; t < T; t++)
                RmsNorm.Forward(x.Slice(t * c, c), w.FeedForwardNorm, cfg.NormEpsilon, xb.Slice(t * c, c));
            MatMulInputObserver?.Observe(l, MatMulInput.FeedForward, xb, T);
            MatMul.Forward(xb, w.Gate, [], T, gate, Pool);
            MatMul.Forward(xb, w.Up, [], T, up, Pool);
            Activations.SwiGlu(gate, up, gate);
            MatMulInputObserver?.Observe(l, MatMulInput.FeedForwardDown, gate, T);
            MatMul.Forward(gate, w.Down, [], T, xb2, Pool);
            VectorOps.Add(x, xb2, x);
        }
        cache.Advance(T);

        if (logits.IsEmpty) return;
        int first = allLogits ? 0 : T - 1, rows = T - first;
        for (int t = first; t < T; t++)
            RmsNorm.Forward(x.Slice(t * c, c), _weights.OutputNorm, cfg.NormEpsilon, xb.Slice((t - first) * c, c));
        if (!cfg.TiedOutput) MatMulInputObserver?.Observe(-1, MatMulInput.Output, xb[..(rows * c)], rows);
        MatMul.Forward(xb[..(rows * c)], _weights.Output, [], rows, logits[..(rows * cfg.VocabSize)], Pool);
    }
}

/// <summary>Weights of one Llama block; matrices are (out, in) in their stored type.</summary>
internal sealed record LlamaLayerWeights(
    float[] AttentionNorm,  // (C)
    WeightMatrix Query,     // (H·D, C)
    WeightMatrix Key,       // (Hkv·D, C)
    WeightMatrix Value,     // (Hkv·D, C)
    WeightMatrix Output,    // (C, H·D)
    float[] FeedForwardNorm, // (C)
    WeightMatrix Gate,      // (F, C)
    WeightMatrix Up,        // (F, C)
    WeightMatrix Down);     // (C, F)

/// <summary>All weights of a Llama model.</summary>
internal sealed record LlamaWeights(
    WeightMatrix TokenEmbedding, // (V, C)
    LlamaLayerWeights[] Layers,
    float[] OutputNorm,          // (C)
    WeightMatrix Output);        // (V, C)

/// <summary>Activation buffers for a batch of up to B tokens, allocated once and sliced per call.</summary>
internal sealed class LlamaActivations
{
    public LlamaActivations(ModelConfig config, int batch)
    {
        int c = config.EmbeddingLength, f = config.FeedForwardLength;
        Residual = new float[batch * c];
        Normed = new float[batch * c];
        Projected = new float[batch * c];
        Query = new float[batch * config.QDim];
        Key = new float[batch * config.KvDim];
        Value = new float[batch * config.KvDim];
        AttentionOut = new float[batch * config.QDim];
        Gate = new float[batch * f];
        Up = new float[batch * f];
    }

    public float[] Residual { get; }     // (B, C)
    public float[] Normed { get; }       // (B, C)
    public float[] Projected { get; }    // (B, C)
    public float[] Query { get; }        // (B, H·D)
    public float[] Key { get; }          // (B, Hkv·D)
    public float[] Value { get; }        // (B, Hkv·D)
    public float[] AttentionOut { get; } // (B, H·D)
    public float[] Gate { get; }         // (B, F)
    public float[] Up { get; }           // (B, F)
}
