namespace ModelSmith.Training;

/// <summary>
/// One micro-batch: <see cref="Batch"/> sequences of <see cref="SeqLen"/> tokens, the targets to predict
/// (usually the tokens shifted by one), and an optional loss mask. Tokens, Targets, Mask: (Batch, SeqLen).
/// </summary>
public sealed record TokenBatch(int[] Tokens, int[] Targets, int Batch, int SeqLen, bool[]? Mask = null)
{
    /// <summary>
    /// The batch of <paramref name="batch"/> rows of T + 1 tokens as <see cref="Data.DataLoader"/> fills them:
    /// the model reads tokens 0..T−1 of a row and predicts tokens 1..T, position t counting iff mask[t + 1].
    /// rows, rowMask: (B, T + 1).
    /// </summary>
    public static TokenBatch FromRows(ReadOnlySpan<int> rows, ReadOnlySpan<bool> rowMask, int batch, int seqLen)
    {
        int width = seqLen + 1;
        if (batch < 1 || seqLen < 1 || rows.Length != batch * width || rowMask.Length != batch * width)
            throw new ArgumentException($"Rows of {batch} × ({seqLen} + 1) = {batch * width} tokens and mask entries are needed; got {rows.Length} and {rowMask.Length}.", nameof(rows));
        var tokens = new int[batch * seqLen];
        var targets = new int[batch * seqLen];
        var mask = new bool[batch * seqLen];
        for (int b = 0; b < batch; b++)
        {
            rows.Slice(b * width, seqLen).CopyTo(tokens.AsSpan(b * seqLen, seqLen));
            rows.Slice(b * width + 1, seqLen).CopyTo(targets.AsSpan(b * seqLen, seqLen));
            rowMask.Slice(b * width + 1, seqLen).CopyTo(mask.AsSpan(b * seqLen, seqLen));
        }
        return new TokenBatch(tokens, targets, batch, seqLen, mask);
    }

    /// <summary>Tokens that count towards the loss.</summary>
    public int CountedTokens
    {
        get
        {
            if (Mask == null) return Batch * SeqLen;
            int n = 0;
            foreach (bool m in Mask) if (m) n++;
            return n;
        }
    }
}

/// <summary>What one optimizer step of a <see cref="Trainer"/> did.</summary>
public readonly record struct TrainingStepResult(long Step, float Loss, int Tokens, float LearningRate, double GradientNorm, float ClipScale);

/// <summary>
/// A training step: gradients of the mean loss over all counted tokens of the step's micro-batches
/// (accumulated micro-batch by micro-batch, each scaled by 1/total so the sum is the whole batch's gradient),
/// then one AdamW update at the scheduled learning rate, of the whole model or, when the model has LoRA
/// adapters attached at construction, of the adapters only. The same parameters, data and thread count give
/// the same losses bit for bit; so does any thread count (see <see cref="TrainingModel"/>).
/// </summary>
public sealed class Trainer
{
    public Trainer(TrainingModel model, AdamWOptions options, LearningRateSchedule schedule)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(schedule);
        string? problem = schedule.Validate();
        if (problem != null) throw new ArgumentException(problem, nameof(schedule));
        Model = model;
        Adapter = model.Lora;
        Optimizer = Adapter != null ? new AdamW(Adapter.Layout, options) : new AdamW(model.Layout, options);
        Schedule = schedule;
    }

    public TrainingModel Model { get; }

    /// <summary>The adapters being trained, or null for full training.</summary>
    public LoraAdapter? Adapter { get; }

    public AdamW Optimizer { get; }

    public LearningRateSchedule Schedule { get; }

    /// <summary>Runs one optimizer step over <paramref name="microBatches"/> (gradient accumulation when more than one).</summary>
    public TrainingStepResult Step(IReadOnlyList<TokenBatch> microBatches)
    {
        ArgumentNullException.ThrowIfNull(microBatches);
        if (microBatches.Count == 0) throw new ArgumentException("A step needs at least one micro-batch.", nameof(microBatches));
        int total = 0;
        foreach (TokenBatch b in microBatches) total += b.CountedTokens;
        if (total == 0) throw new ArgumentException("No token of this step's micro-batches counts towards the loss (every mask is false).", nameof(microBatches));

        if (!ReferenceEquals(Model.Lora, Adapter))
            throw new InvalidOperationException("LoRA adapters were attached to or detached from the model after this trainer was created; create a new trainer.");
        if (Adapter != null) Adapter.Gradients.Clear();
        else Model.Gradients.Clear();
        double lossSum = 0;
        foreach (TokenBatch b in microBatches)
        {
            Model.Forward(b.Tokens, b.Targets, b.Batch, b.SeqLen, b.Mask);
            lossSum += Model.LossSum;
            Model.Backward(1f / total);
        }
        float rate = Schedule.At(Optimizer.Step);
        OptimizerStep s = Adapter != null
            ? Optimizer.Update(Adapter.Parameters, Adapter.Gradients, rate, Model.Pool)
            : Optimizer.Update(Model.Parameters, Model.Gradients, rate, Model.Pool);
        return new TrainingStepResult(s.Step, (float)(lossSum / total), total, rate, s.GradientNorm, s.ClipScale);
    }
}
