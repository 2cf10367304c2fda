using ModelSmith.Formats;
using ModelSmith.Inference;
using ModelSmith.Tensors;

namespace ModelSmith.Models;

/// <summary>
/// GPT-2 as llama.cpp runs it: x = token embedding + learned position embedding, then per block
/// x += Wo·attn(split(Wqkv·n + bqkv)) + bo with n = layernorm(x), and
/// x += Wdown·gelu(Wup·n + bup) + bdown with n = layernorm(x); finally logits = Wout·layernorm(x).
/// Q, K and V come from one fused projection, laid out [Q | K | V] along its output rows.
/// GELU is the tanh approximation evaluated the way ggml's CPU backend evaluates it (a binary16 lookup
/// table), so logits agree with llama.cpp's to ~5e-5 of their range instead of ~5e-4.
/// </summary>
internal sealed class Gpt2Model : LanguageModel
{
    private readonly Gpt2Weights _weights;
    private readonly Gpt2Activations _act;
    private readonly Attention _attention;

    public Gpt2Model(ModelConfig config, GgufFile file, int threads, WeightResidence residence) : base(config, file, threads, residence)
    {
        int c = config.EmbeddingLength, f = config.FeedForwardLength, v = config.VocabSize;
        int qkv = config.QDim + 2 * config.KvDim;
        var layers = new Gpt2LayerWeights[config.BlockCount];
        for (int l = 0; l < layers.Length; l++)
        {
            string p = $"blk.{l}.";
            layers[l] = new Gpt2LayerWeights(
                AttentionNorm: Vector(p + "attn_norm.weight", c),
                AttentionNormBias: Vector(p + "attn_norm.bias", c),
                Qkv: Matrix(p + "attn_qkv.weight", qkv, c),
                QkvBias: Vector(p + "attn_qkv.bias", qkv),
                Output: Matrix(p + "attn_output.weight", c, config.QDim),
                OutputBias: Vector(p + "attn_output.bias", c),
                FeedForwardNorm: Vector(p + "ffn_norm.weight", c),
                FeedForwardNormBias: Vector(p + "ffn_norm.bias", c),
                Up: Matrix(p + "ffn_up.weight", f, c),
                UpBias: Vector(p + "ffn_up.bias", f),
                Down: Matrix(p + "ffn_down.weight", c, f),
                DownBias: Vector(p + "ffn_down.bias", c));
        }
        WeightMatrix embedding = Matrix("token_embd.weight", v, c);
        _weights = new Gpt2Weights(
            embedding,
            Matrix("position_embd.weight", config.ContextLength, c),
            layers,
            Vector("output_norm.weight", c),
            Vector("output_norm.bias", c),
            config.TiedOutput ? embedding : Matrix("output.weight", v, c));
        _act = new Gpt2Activations(config, MaxBatch);
        _attention = new Attention(config);
    }

    private protected override void ForwardBatch(ReadOnlySpan<int> tokens, KvCache cache, Span<float> logits, bool allLogits)
    {
        ModelConfig cfg = Config;
        int T = tokens.Length, c = cfg.EmbeddingLength, f = cfg.FeedForwardLength;
        int qkvDim = cfg.QDim + 2 * cfg.KvDim;
        int start = cache.Length;
        Gpt2Activations a = _act;
        Span<float> x = a.Residual.AsSpan(0, T * c);        // (T, C)
        Span<float> xb = a.Normed.AsSpan(0, T * c);         // (T, C)
        Span<float> xb2 = a.Projected.AsSpan(0, T * c);     // (T, C)
        Span<float> qkv = a.Qkv.AsSpan(0, T * qkvDim);      // (T, H·D + 2·Hkv·D)
        Span<float> q = a.Query.AsSpan(0, T * cfg.QDim);    // (T, H·D)
        Span<float> k = a.Key.AsSpan(0, T * cfg.KvDim);     // (T, Hkv·D)
        Span<float> v = a.Value.AsSpan(0, T * cfg.KvDim);   // (T, Hkv·D)
        Span<float> att = a.AttentionOut.AsSpan(0, T * cfg.QDim); // (T, H·D)
        Span<float> hidden = a.Hidden.AsSpan(0, T * f);     // (T, F)
        Span<float> position = a.Position.AsSpan(0, c);     // (C)

        for (int t = 0; t < T; t++)
        {
            Span<float> row = x.Slice(t * c, c);
            _weights.TokenEmbedding.DequantizeRow(tokens[t], row);
            _weights.PositionEmbedding.DequantizeRow(start + t, position);
            VectorOps.Add(row, position, row);
        }

        for (int l = 0; l < cfg.BlockCount; l++)
        {
            Gpt2LayerWeights w = _weights.Layers[l];

            for (int t = 0; t < T; t++)
                LayerNorm.Forward(x.Slice(t * c, c), w.AttentionNorm, w.AttentionNormBias, cfg.NormEpsilon, xb.Slice(t * c, c));
            MatMulInputObserver?.Observe(l, MatMulInput.Attention, xb, T);
            MatMul.Forward(xb, w.Qkv, w.QkvBias, T, qkv, Pool);
            for (int t = 0; t < T; t++)
            {
                ReadOnlySpan<float> row = qkv.Slice(t * qkvDim, qkvDim);
                row[..cfg.QDim].CopyTo(q.Slice(t * cfg.QDim, cfg.QDim));
                row.Slice(cfg.QDim, cfg.KvDim).CopyTo(k.Slice(t * cfg.KvDim, cfg.KvDim));
                row.Slice(cfg.QDim + cfg.KvDim, cfg.KvDim).CopyTo(v.Slice(t * cfg.KvDim, cfg.KvDim));
            }
            _attention.Store(k, v, cache, l, start, T);
            _attention.Forward(q, cache, l, start, T, att, Pool);
            MatMulInputObserver?.Observe(l, MatMulInput.AttentionOutput, att, T);
            MatMul.Forward(att, w.Output, w.OutputBias, T, xb2, Pool);
            VectorOps.Add(x, xb2, x);

            for (int t = 0; t < T; t++)
                LayerNorm.Forward(x.Slice(t * c, c), w.FeedForwardNorm, w.FeedForwardNormBias, cfg.NormEpsilon, xb.Slice(t * c, c));
            MatMulInputObserver?.Observe(l, MatMulInput.FeedForward, xb, T);
            MatMul.Forward(xb, w.Up, w.UpBias, T, hidden, Pool);
            Activations.GeluGgml(hidden, hidden);
            MatMulInputObserver?.Observe(l, MatMulInput.FeedForwardDown, hidden, T);
            MatMul.Forward(hidden, w.Down, w.DownBias, T, xb2, Pool);
            VectorOps.Add(x, xb2, x);
        }
        cache.Advance(T);

        if (logits.IsEmpty) return;
        int first = allLogits ? 0 : T - 1, rows = T - first;
        for (int t = first; t < T; t++)
            LayerNorm.Forward(x.Slice(t * c, c), _weights.OutputNorm, _weights.OutputNormBias, cfg.NormEpsilon, xb.Slice((t - first) * c, c));
        if (!cfg.TiedOutput) MatMulInputObserver?.Observe(-1, MatMulInput.Output, xb[..(rows * c)], rows);
        MatMul.Forward(xb[..(rows * c)], _weights.Output, [], rows, logits[..(rows * cfg.VocabSize)], Pool);
    }
}

/// <summary>Weights of one GPT-2 block; matrices are (out, in) in their stored type.</summary>
internal sealed record Gpt2LayerWeights(
    float[] AttentionNorm, float[] AttentionNormBias, // (C), (C)
    WeightMatrix Qkv, float[] QkvBias,                // (H·D + 2·Hkv·D, C), (H·D + 2·Hkv·D)
    WeightMatrix Output, float[] OutputBias,          // (C, H·D), (C)
    float[] FeedForwardNorm, float[] FeedForwardNormBias, // (C), (C)
    WeightMatrix Up, float[] UpBias,                  // (F, C), (F)
    WeightMatrix Down, float[] DownBias);             // (C, F), (C)

/// <summary>All weights of a GPT-2 model.</summary>
internal sealed record Gpt2Weights(
    WeightMatrix TokenEmbedding,    // (V, C)
    WeightMatrix PositionEmbedding, // (context, C)
    Gpt2LayerWeights[] Layers,
    float[] OutputNorm, float[] OutputNormBias, // (C), (C)
    WeightMatrix Output);           // (V, C)

/// <summary>Activation buffers for a batch of up to B tokens, allocated once and sliced per call.</summary>
internal sealed class Gpt2Activations
{
    public Gpt2Activations(ModelConfig config, int batch)
    {
        int c = config.EmbeddingLength;
        Residual = new float[batch * c];
        Normed = new float[batch * c];
        Projected = new float[batch * c];
        Qkv = new float[batch * (config.QDim + 2 * config.KvDim)];
        Query = new float[batch * config.QDim];
        Key = new float[batch * config.KvDim];
        Value = new float[batch * config.KvDim];
        AttentionOut = new float[batch * config.QDim];
        Hidden = new float[batch * config.FeedForwardLength];
        Position = new float[c];
    }

    public float[] Residual { get; }     // (B, C)
    public float[] Normed { get; }       // (B, C)
    public float[] Projected { get; }    // (B, C)
    public float[] Qkv { get; }          // (B, H·D + 2·Hkv·D)
    public float[] Query { get; }        // (B, H·D)
    public float[] Key { get; }          // (B, Hkv·D)
    public float[] Value { get; }        // (B, Hkv·D)
    public float[] AttentionOut { get; } // (B, H·D)
    public float[] Hidden { get; }       // (B, F)
    public float[] Position { get; }     // (C)
}
