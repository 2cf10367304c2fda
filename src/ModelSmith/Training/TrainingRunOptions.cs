using System.Globalization;
using System.Text;

namespace ModelSmith.Training;

/// <summary>How a <see cref="TrainingRun"/> trains: steps, batches, the learning-rate schedule, AdamW, evaluation and checkpoints.</summary>
public sealed record TrainingRunOptions
{
    /// <summary>Optimizer steps in the whole run.</summary>
    public int Steps { get; init; } = 200;

    /// <summary>Rows (sequences of the data's context length) per micro-batch.</summary>
    public int BatchSize { get; init; } = 8;

    /// <summary>Micro-batches whose gradients are summed into one step.</summary>
    public int GradientAccumulation { get; init; } = 1;

    /// <summary>Peak learning rate, reached at the end of warmup.</summary>
    public float LearningRate { get; init; } = 1e-3f;

    /// <summary>Rate at the end of the cosine decay.</summary>
    public float MinLearningRate { get; init; } = 1e-4f;

    /// <summary>Steps of linear warmup.</summary>
    public int WarmupSteps { get; init; }

    /// <summary>Decoupled weight decay λ of AdamW (norms and biases are never decayed).</summary>
    public float WeightDecay { get; init; } = 0.1f;

    /// <summary>Clip the global gradient norm to this (0: no clipping).</summary>
    public float MaxGradNorm { get; init; } = 1f;

    /// <summary>Measure the validation loss every this many steps (0: only after the last step).</summary>
    public int EvalInterval { get; init; }

    /// <summary>Validation batches per measurement (fewer when the validation set is smaller).</summary>
    public int EvalBatches { get; init; } = 8;

    /// <summary>Write a checkpoint every this many steps (0: only when cancelled).</summary>
    public int CheckpointInterval { get; init; }

    /// <summary>Seed of the LoRA initialisation and dropout (the data's own seed orders the batches).</summary>
    public ulong Seed { get; init; } = 1234;

    /// <summary>Compute threads (0: one per core). Losses do not depend on it.</summary>
    public int Threads { get; init; }

    /// <summary>Train LoRA adapters with these options, or null to train every parameter.</summary>
    public LoraOptions? Lora { get; init; }

    /// <summary>Null when usable, else what is wrong.</summary>
    public string? Validate()
    {
        if (Steps < 1) return $"steps {Steps} must be at least 1.";
        if (BatchSize < 1) return $"batch size {BatchSize} must be at least 1.";
        if (GradientAccumulation < 1) return $"gradient accumulation {GradientAccumulation} must be at least 1.";
        if (EvalInterval < 0) return $"eval interval {EvalInterval} must be 0 (end only) or positive.";
        if (EvalBatches < 1) return $"eval batches {EvalBatches} must be at least 1.";
        if (CheckpointInterval < 0) return $"checkpoint interval {CheckpointInterval} must be 0 (only when interrupted) or positive.";
        if (Threads < 0) return $"threads {Threads} must be 0 (all cores) or positive.";
        string? schedule = Schedule().Validate();
        if (schedule != null) return schedule;
        return Optimizer().Validate();
    }

    internal LearningRateSchedule Schedule() => new()
    {
        Peak = LearningRate,
        Minimum = MinLearningRate,
        WarmupSteps = WarmupSteps,
        TotalSteps = Steps,
    };

    internal AdamWOptions Optimizer() => new() { WeightDecay = WeightDecay, MaxGradNorm = MaxGradNorm };

    /// <summary>
    /// The options that decide what the run computes, one "key=value" per line in a fixed order: everything but
    /// <see cref="Threads"/> and <see cref="CheckpointInterval"/>, which change only how it runs. A checkpoint
    /// stores this text and resumes only a run that describes itself the same way.
    /// </summary>
    public string Describe()
    {
        AdamWOptions adam = Optimizer();
        var text = new StringBuilder();
        void Add(string key, object value) => text.Append(key).Append('=').Append(Convert.ToString(value, CultureInfo.InvariantCulture)).Append('\n');
        Add("steps", Steps);
        Add("batch", BatchSize);
        Add("grad_accum", GradientAccumulation);
        Add("lr", LearningRate.ToString("R", CultureInfo.InvariantCulture));
        Add("min_lr", MinLearningRate.ToString("R", CultureInfo.InvariantCulture));
        Add("warmup", WarmupSteps);
        Add("weight_decay", WeightDecay.ToString("R", CultureInfo.InvariantCulture));
        Add("clip", MaxGradNorm.ToString("R", CultureInfo.InvariantCulture));
        Add("adam", string.Create(CultureInfo.InvariantCulture, $"{adam.Beta1:R},{adam.Beta2:R},{adam.Epsilon:R},{adam.DecayEmbeddings}"));
        Add("eval_every", EvalInterval);
        Add("eval_batches", EvalBatches);
        Add("seed", Seed);
        if (Lora is null)
        {
            Add("method", "full");
        }
        else
        {
            Add("method", "lora");
            Add("lora_rank", Lora.Rank);
            Add("lora_alpha", Lora.Alpha.ToString("R", CultureInfo.InvariantCulture));
            Add("lora_dropout", Lora.Dropout.ToString("R", CultureInfo.InvariantCulture));
            Add("rslora", Lora.RankStabilized);
            Add("lora_modules", Lora.Modules is null ? "all" : string.Join(",", Lora.Modules));
        }
        return text.ToString();
    }
}
