using ModelSmith.Models;
using ModelSmith.Tensors;

namespace ModelSmith.Training;

/// <summary>
/// A Llama or GPT-2 model for training: parameters, gradients and activations allocated once for batches of
/// up to (MaxBatch, MaxSeqLen) tokens, a forward pass to the mean cross-entropy and a backward pass that adds
/// the loss gradient to <see cref="Gradients"/>.
/// </summary>
/// <remarks>
/// <para>The forward pass computes the inference engine's function (same RoPE table, same norm rounding;
/// logits agree to ~1e-6 of their range, GPT-2's up to ggml's binary16 GELU table); the backward pass is written
/// layer by layer beside it (see the layer classes:
/// <see cref="Linear"/>, <see cref="RmsNormLayer"/>, <see cref="LayerNormLayer"/>, <see cref="RopeLayer"/>,
/// <see cref="CausalAttention"/>, <see cref="SwiGluLayer"/>, <see cref="GeluLayer"/>,
/// <see cref="Embedding"/>, <see cref="CrossEntropy"/>).</para>
/// <para><b>Determinism.</b> Every kernel splits work only over independent outputs and sums in a fixed
/// order, so the loss and every gradient are bit-identical for every thread count (given the same CPU vector
/// width), not only for the same one.</para>
/// <para>Not thread-safe: one forward/backward at a time.</para>
/// </remarks>
public sealed unsafe class TrainingModel : IDisposable
{
    private readonly ComputePool _pool;
    private readonly GemmBuffer _gemm = new();
    private readonly TrainingActivations _act;
    private readonly RopeTable? _rope;
    private readonly int[] _tokens;   // (B, T) of the last forward pass, pinned
    private readonly int[] _targets;  // (B, T)
    private readonly bool[] _mask;    // (B, T)
    private int _batch, _seqLen;
    private bool _hasMask;
    private long _loraCounter;  // dropout counter of the last forward pass
    private bool _loraDropout;  // whether the last forward pass applied adapter dropout
    private State _state = State.Empty;
    private bool _disposed;

    private enum State
    {
        Empty,
        Logits,
        Loss,
        Backpropagated,
    }

    /// <summary>
    /// A model of <paramref name="config"/> with zeroed parameters (call <see cref="ModelParameters.Initialize"/>
    /// or load them) for batches of up to <paramref name="maxBatch"/> sequences of <paramref name="maxSeqLen"/>
    /// tokens, running on <paramref name="threads"/> threads (0: one per core).
    /// </summary>
    public TrainingModel(ModelConfig config, int maxBatch, int maxSeqLen, int threads = 0)
    {
        ArgumentNullException.ThrowIfNull(config);
        string? problem = config.Validate();
        if (problem != null) throw new ArgumentException(problem, nameof(config));
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxSeqLen, 1);
        if (maxSeqLen > config.ContextLength)
            throw new ArgumentOutOfRangeException(nameof(maxSeqLen), maxSeqLen, $"Sequences cannot be longer than the model's context length {config.ContextLength}.");
        Layout = new ParameterLayout(config);
        Parameters = new ModelParameters(Layout);
        Gradients = new ModelGradients(Layout);
        MaxBatch = maxBatch;
        MaxSeqLen = maxSeqLen;
        _pool = new ComputePool(threads > 0 ? threads : Environment.ProcessorCount);
        try
        {
            _act = new TrainingActivations(config, maxBatch, maxSeqLen);
        }
        catch
        {
            _pool.Dispose();
            throw;
        }
        if (config.Architecture == ModelArchitecture.Llama)
            _rope = new RopeTable(config.RopeDims, config.RopeFreqBase, maxSeqLen, RopeMode.Normal);
        int n = maxBatch * maxSeqLen;
        _tokens = GC.AllocateArray<int>(n, pinned: true);
        _targets = GC.AllocateArray<int>(n, pinned: true);
        _mask = GC.AllocateArray<bool>(n, pinned: true);
    }

    public ModelConfig Config => Layout.Config;

    public ParameterLayout Layout { get; }

    public ModelParameters Parameters { get; }

    /// <summary>Accumulated loss gradients; <see cref="Backward(float)"/> adds to them, <see cref="ModelGradients.Clear"/> resets them.</summary>
    public ModelGradients Gradients { get; }

    public int MaxBatch { get; }

    public int MaxSeqLen { get; }

    public int Threads => _pool.ThreadCount;

    internal ComputePool Pool => _pool;

    /// <summary>
    /// GPT-2 only: evaluate GELU in the forward pass through ggml's binary16 table, exactly as the inference
    /// engine and llama.cpp's CPU backend do, to compare logits with them. The backward pass always uses the
    /// smooth formula's derivative, so train with this off.
    /// </summary>
    internal bool GgmlGelu { get; set; }

    /// <summary>LoRA adapters, when attached; the base parameters are then frozen.</summary>
    public LoraAdapter? Lora { get; private set; }

    /// <summary>
    /// True (the default) while training: forward passes with targets apply adapter dropout. Set false to
    /// evaluate (validation loss) with the adapters' full input.
    /// </summary>
    public bool Training { get; set; } = true;

    /// <summary>
    /// Attaches LoRA adapters (A Kaiming-uniform from <paramref name="seed"/>, B = 0, so the model's outputs do not
    /// change) and freezes the base parameters: from now on <see cref="Backward(float)"/> writes gradients to
    /// <see cref="LoraAdapter.Gradients"/> only.
    /// </summary>
    public LoraAdapter AttachLora(LoraOptions options, ulong seed = 0)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Lora != null) throw new InvalidOperationException("LoRA adapters are already attached; merge or detach them first.");
        Lora = new LoraAdapter(Layout, options, MaxBatch * MaxSeqLen, seed);
        _state = State.Empty;
        return Lora;
    }

    /// <summary>Removes the adapters (without merging them) and unfreezes the base parameters.</summary>
    public void DetachLora()
    {
        Lora = null;
        _state = State.Empty;
    }

    /// <summary>Bytes of activation memory (kept for the backward pass, plus gradient scratch).</summary>
    public long ActivationBytes => _act.SizeInBytes;

    /// <summary>Tokens that counted towards the loss in the last forward pass with targets.</summary>
    public int CountedTokens { get; private set; }

    /// <summary>Sum of the counted tokens' losses in the last forward pass with targets.</summary>
    public double LossSum { get; private set; }

    /// <summary>Logits (B·T, V) of the last forward pass; overwritten by <see cref="Backward(float)"/>.</summary>
    public ReadOnlySpan<float> Logits
    {
        get
        {
            if (_state is not (State.Logits or State.Loss))
                throw new InvalidOperationException("No logits: run Forward first (Backward overwrites them with their gradient).");
            return new ReadOnlySpan<float>(_act.Logits, _batch * _seqLen * Config.VocabSize);
        }
    }

    /// <summary>Per-token losses (B·T) of the last forward pass with targets; 0 where the mask excluded the token.</summary>
    public ReadOnlySpan<float> TokenLosses
    {
        get
        {
            if (_state is not (State.Loss or State.Backpropagated))
                throw new InvalidOperationException("No losses: run Forward with targets first.");
            return new ReadOnlySpan<float>(_act.Losses, _batch * _seqLen);
        }
    }

    /// <summary>
    /// Forward pass of <paramref name="batch"/> sequences of <paramref name="seqLen"/> tokens to the logits only.
    /// tokens: (B, T), each sequence starting at position 0.
    /// </summary>
    public void Forward(ReadOnlySpan<int> tokens, int batch, int seqLen)
    {
        Prepare(tokens, batch, seqLen);
        _loraDropout = false;
        RunForward();
        _state = State.Logits;
    }

    /// <summary>
    /// Forward pass to the loss: the mean cross-entropy of predicting targets[b, t] after tokens[b, 0..t], over
    /// the tokens where <paramref name="mask"/> is true (every token when the mask is empty). tokens, targets,
    /// mask: (B, T). Returns 0 when no token counts. Follow with <see cref="Backward(float)"/> for gradients.
    /// </summary>
    public float Forward(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, int batch, int seqLen, ReadOnlySpan<bool> mask = default)
    {
        Prepare(tokens, batch, seqLen);
        int n = batch * seqLen, v = Config.VocabSize;
        if (targets.Length != n)
            throw new ArgumentException($"{targets.Length} targets given for a batch of {batch} × {seqLen} = {n} tokens.", nameof(targets));
        if (!mask.IsEmpty && mask.Length != n)
            throw new ArgumentException($"The loss mask has {mask.Length} entries but the batch has {n} tokens; pass one per token or none.", nameof(mask));
        _hasMask = !mask.IsEmpty;
        for (int t = 0; t < n; t++)
        {
            bool counted = !_hasMask || mask[t];
            if (counted && (uint)targets[t] >= (uint)v)
                throw new ArgumentOutOfRangeException(nameof(targets), targets[t], $"Target {t} (sequence {t / seqLen}, position {t % seqLen}) is outside the vocabulary 0..{v - 1}; mask it out or fix the data.");
            _targets[t] = counted ? targets[t] : 0;
            _mask[t] = counted;
        }

        _loraDropout = Lora != null && Training && Lora.Options.Dropout > 0;
        if (_loraDropout) _loraCounter = Lora!.DropoutCounter++;
        RunForward();
        fixed (int* pt = _targets)
        fixed (bool* pm = _mask)
        {
            (double sum, int count) = CrossEntropy.Forward(_pool, _act.Logits, pt, _hasMask ? pm : null, n, v, _act.Lse, _act.Losses);
            LossSum = sum;
            CountedTokens = count;
        }
        _state = State.Loss;
        return CountedTokens == 0 ? 0f : (float)(LossSum / CountedTokens);
    }

    /// <summary>Adds the gradient of the mean loss of the last forward pass (1/counted tokens · Σ loss) to <see cref="Gradients"/>.</summary>
    public void Backward() => Backward(CountedTokens == 0 ? 0f : 1f / CountedTokens);

    /// <summary>
    /// Adds the gradient of <paramref name="lossScale"/> · Σ_counted loss_t of the last forward pass to
    /// <see cref="Gradients"/>. For gradient accumulation over micro-batches pass 1 / (counted tokens of all of
    /// them), so the sum of the micro-batch gradients is the gradient of the mean over the whole batch.
    /// </summary>
    public void Backward(float lossScale)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_state != State.Loss)
            throw new InvalidOperationException("Backward needs a forward pass with targets first, and runs once per forward pass.");
        RunBackward(lossScale);
        _state = State.Backpropagated;
    }

    private void Prepare(ReadOnlySpan<int> tokens, int batch, int seqLen)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (batch < 1 || batch > MaxBatch)
            throw new ArgumentOutOfRangeException(nameof(batch), batch, $"The model was allocated for batches of 1 to {MaxBatch} sequences.");
        if (seqLen < 1 || seqLen > MaxSeqLen)
            throw new ArgumentOutOfRangeException(nameof(seqLen), seqLen, $"The model was allocated for sequences of 1 to {MaxSeqLen} tokens.");
        int n = batch * seqLen, v = Config.VocabSize;
        if (tokens.Length != n)
            throw new ArgumentException($"{tokens.Length} tokens given for a batch of {batch} × {seqLen} = {n}.", nameof(tokens));
        for (int t = 0; t < n; t++)
        {
            if ((uint)tokens[t] >= (uint)v)
                throw new ArgumentOutOfRangeException(nameof(tokens), tokens[t], $"Token {t} (sequence {t / seqLen}, position {t % seqLen}) is outside the vocabulary 0..{v - 1}.");
            _tokens[t] = tokens[t];
        }
        _batch = batch;
        _seqLen = seqLen;
        _state = State.Empty;
    }

    private float* Param(int offset) => Parameters.At(offset);

    // Null for a frozen base model (LoRA attached): the kernels then skip that parameter's gradient.
    private float* Grad(int offset) => Lora != null ? null : Gradients.At(offset);

    private void RunForward()
    {
        ModelConfig cfg = Config;
        ParameterLayout lay = Layout;
        TrainingActivations a = _act;
        bool llama = cfg.Architecture == ModelArchitecture.Llama;
        int b = _batch, t = _seqLen, n = b * t;
        int c = cfg.EmbeddingLength, f = cfg.FeedForwardLength, s = cfg.QDim + 2 * cfg.KvDim, fIn = llama ? 2 * f : f;

        Embedding.Forward(_tokens.AsSpan(0, n), t, Param(lay.TokenEmbedding), Param(lay.PositionEmbedding), c, a.Residual(0)); // (N, C)
        for (int l = 0; l < cfg.BlockCount; l++)
        {
            BlockOffsets o = lay.Blocks[l];
            TrainingActivations.Block k = a.Blocks[l];
            float* x = a.Residual(l);

            // Attention: Mid = x + Wo·attn(rope(Wqkv·norm(x) + bqkv)) + bo
            NormForward(x, o.AttentionNorm, o.AttentionNormBias, n, k.Norm1, k.Mean1, k.Rstd1);   // (N, C)
            Linear.Forward(_pool, _gemm, k.Norm1, Param(o.Qkv), Param(o.QkvBias), n, c, s, k.Qkv); // (N, S)
            LoraForward(l, LoraInput.AttentionNorm, k.Norm1, k.Qkv, n);
            if (llama) RopeLayer.Forward(_pool, k.Qkv, n, t, cfg.HeadCount, cfg.KvHeadCount, cfg.HeadDim, _rope!);
            CausalAttention.Forward(_pool, k.Qkv, b, t, cfg.HeadCount, cfg.KvHeadCount, cfg.HeadDim, k.Att, k.AttOut); // (N, H·D)
            Linear.Forward(_pool, _gemm, k.AttOut, Param(o.AttentionOutput), Param(o.AttentionOutputBias), n, cfg.QDim, c, k.Mid, residual: x);
            LoraForward(l, LoraInput.AttentionOutput, k.AttOut, k.Mid, n);

            // Feed-forward: x' = Mid + Wdown·act(Win·norm(Mid) + bin) + bdown
            NormForward(k.Mid, o.FeedForwardNorm, o.FeedForwardNormBias, n, k.Norm2, k.Mean2, k.Rstd2);
            Linear.Forward(_pool, _gemm, k.Norm2, Param(o.FeedForwardIn), Param(o.FeedForwardInBias), n, c, fIn, k.FfnIn); // (N, F2)
            LoraForward(l, LoraInput.FeedForwardNorm, k.Norm2, k.FfnIn, n);
            if (llama) SwiGluLayer.Forward(_pool, k.FfnIn, n, f, k.FfnAct); // (N, F)
            else GeluLayer.Forward(_pool, k.FfnIn, (long)n * f, k.FfnAct, GgmlGelu);
            Linear.Forward(_pool, _gemm, k.FfnAct, Param(o.FeedForwardOut), Param(o.FeedForwardOutBias), n, f, c, a.Residual(l + 1), residual: k.Mid);
            LoraForward(l, LoraInput.FeedForwardActivation, k.FfnAct, a.Residual(l + 1), n);
        }
        NormForward(a.Residual(cfg.BlockCount), lay.OutputNorm, lay.OutputNormBias, n, a.NormF, a.MeanF, a.RstdF);
        Linear.Forward(_pool, _gemm, a.NormF, Param(lay.Output), null, n, c, cfg.VocabSize, a.Logits); // (N, V)
    }

    private void RunBackward(float lossScale)
    {
        ModelConfig cfg = Config;
        ParameterLayout lay = Layout;
        TrainingActivations a = _act;
        bool llama = cfg.Architecture == ModelArchitecture.Llama;
        int b = _batch, t = _seqLen, n = b * t;
        int c = cfg.EmbeddingLength, f = cfg.FeedForwardLength, s = cfg.QDim + 2 * cfg.KvDim, fIn = llama ? 2 * f : f;
        float* dx = a.DResidual; // (N, C): gradient of the residual stream, carried down through the blocks

        fixed (int* pt = _targets)
        fixed (bool* pm = _mask)
            CrossEntropy.Backward(_pool, a.Logits, pt, _hasMask ? pm : null, a.Lse, n, cfg.VocabSize, lossScale); // logits → dlogits
        Linear.Backward(_pool, _gemm, a.Logits, a.NormF, Param(lay.Output), n, c, cfg.VocabSize, a.DNorm, false, Grad(lay.Output), null);
        new Span<float>(dx, n * c).Clear();
        NormBackward(a.DNorm, a.Residual(cfg.BlockCount), lay.OutputNorm, lay.OutputNormBias, n, a.MeanF, a.RstdF, dx);

        for (int l = cfg.BlockCount - 1; l >= 0; l--)
        {
            BlockOffsets o = lay.Blocks[l];
            TrainingActivations.Block k = a.Blocks[l];

            // Feed-forward; dx flows through the residual connection unchanged and gains the norm's gradient.
            Linear.Backward(_pool, _gemm, dx, k.FfnAct, Param(o.FeedForwardOut), n, f, c, a.DFfnAct, false, Grad(o.FeedForwardOut), Grad(o.FeedForwardOutBias));
            LoraBackward(l, LoraInput.FeedForwardActivation, dx, k.FfnAct, a.DFfnAct, n);
            if (llama) SwiGluLayer.Backward(_pool, a.DFfnAct, k.FfnIn, n, f, a.DFfnIn);
            else GeluLayer.Backward(_pool, a.DFfnAct, k.FfnIn, (long)n * f, a.DFfnIn);
            Linear.Backward(_pool, _gemm, a.DFfnIn, k.Norm2, Param(o.FeedForwardIn), n, c, fIn, a.DNorm, false, Grad(o.FeedForwardIn), Grad(o.FeedForwardInBias));
            LoraBackward(l, LoraInput.FeedForwardNorm, a.DFfnIn, k.Norm2, a.DNorm, n);
            NormBackward(a.DNorm, k.Mid, o.FeedForwardNorm, o.FeedForwardNormBias, n, k.Mean2, k.Rstd2, dx);

            // Attention.
            Linear.Backward(_pool, _gemm, dx, k.AttOut, Param(o.AttentionOutput), n, cfg.QDim, c, a.DAttOut, false, Grad(o.AttentionOutput), Grad(o.AttentionOutputBias));
            LoraBackward(l, LoraInput.AttentionOutput, dx, k.AttOut, a.DAttOut, n);
            CausalAttention.Backward(_pool, a.DAttOut, k.Qkv, k.Att, b, t, cfg.HeadCount, cfg.KvHeadCount, cfg.HeadDim, a.DQkv);
            if (llama) RopeLayer.Backward(_pool, a.DQkv, n, t, cfg.HeadCount, cfg.KvHeadCount, cfg.HeadDim, _rope!);
            Linear.Backward(_pool, _gemm, a.DQkv, k.Norm1, Param(o.Qkv), n, c, s, a.DNorm, false, Grad(o.Qkv), Grad(o.QkvBias));
            LoraBackward(l, LoraInput.AttentionNorm, a.DQkv, k.Norm1, a.DNorm, n);
            NormBackward(a.DNorm, a.Residual(l), o.AttentionNorm, o.AttentionNormBias, n, k.Mean1, k.Rstd1, dx);
        }
        if (Lora == null)
        {
            fixed (int* tokens = _tokens)
                Embedding.Backward(_pool, tokens, n, t, dx, c, Grad(lay.TokenEmbedding), Grad(lay.PositionEmbedding));
        }
    }

    // Adds the adapters of block `layer` fed by `input` to their outputs. x: (N, In); y: the (possibly fused) output activation.
    private void LoraForward(int layer, LoraInput input, float* x, float* y, int n)
    {
        LoraAdapter? lora = Lora;
        if (lora == null) return;
        LoraOptions opt = lora.Options;
        float p = _loraDropout ? opt.Dropout : 0f;
        for (int i = 0; i < lora.Targets.Count; i++)
        {
            LoraTarget t = lora.Targets[i];
            if (t.Layer != layer || t.Input != input) continue;
            LoraLinear.Forward(_pool, _gemm, x, n, t.In, t.Out, opt.Rank, lora.Parameters.At(t.A), lora.Parameters.At(t.B), opt.Scale,
                p, lora.Key(_loraCounter, i), lora.Xd(i), lora.Hs(i), y + t.OutputColumn, t.OutputWidth);
        }
    }

    // Adapter gradients of block `layer`'s adapters fed by `input`; dy: the output activation's gradient, dx: (N, In) accumulated.
    private void LoraBackward(int layer, LoraInput input, float* dy, float* x, float* dx, int n)
    {
        LoraAdapter? lora = Lora;
        if (lora == null) return;
        LoraOptions opt = lora.Options;
        float p = _loraDropout ? opt.Dropout : 0f;
        for (int i = 0; i < lora.Targets.Count; i++)
        {
            LoraTarget t = lora.Targets[i];
            if (t.Layer != layer || t.Input != input) continue;
            LoraLinear.Backward(_pool, _gemm, dy + t.OutputColumn, t.OutputWidth, x, lora.Xd(i), lora.Hs(i), n, t.In, t.Out, opt.Rank,
                lora.Parameters.At(t.A), lora.Parameters.At(t.B), opt.Scale, p, lora.Key(_loraCounter, i), dx,
                lora.Gradients.At(t.A), lora.Gradients.At(t.B), lora.DbT(n), lora.Dh, lora.Dxd(n));
        }
    }

    // RMSNorm (Llama) or LayerNorm (GPT-2) of x: (N, C) into y: (N, C); mean, rstd: (N).
    private void NormForward(float* x, int weight, int bias, int n, float* y, float* mean, float* rstd)
    {
        int c = Config.EmbeddingLength;
        if (Config.Architecture == ModelArchitecture.Llama) RmsNormLayer.Forward(_pool, x, Param(weight), Config.NormEpsilon, n, c, y, rstd);
        else LayerNormLayer.Forward(_pool, x, Param(weight), Param(bias), Config.NormEpsilon, n, c, y, mean, rstd);
    }

    // dx += norm'ᵀ·dy; parameter gradients accumulated. dy, x, dx: (N, C).
    private void NormBackward(float* dy, float* x, int weight, int bias, int n, float* mean, float* rstd, float* dx)
    {
        int c = Config.EmbeddingLength;
        if (Config.Architecture == ModelArchitecture.Llama) RmsNormLayer.Backward(_pool, dy, x, Param(weight), rstd, n, c, dx, Grad(weight));
        else LayerNormLayer.Backward(_pool, dy, x, Param(weight), mean, rstd, n, c, dx, Grad(weight), Grad(bias));
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _pool.Dispose();
        _gemm.Dispose();
        _act.Dispose();
    }
}
