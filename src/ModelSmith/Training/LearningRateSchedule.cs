namespace ModelSmith.Training;

/// <summary>
/// Linear warmup to <see cref="Peak"/> over <see cref="WarmupSteps"/> steps, then cosine decay to
/// <see cref="Minimum"/> at <see cref="TotalSteps"/> (and <see cref="Minimum"/> after it).
/// </summary>
public sealed record LearningRateSchedule
{
    public required float Peak { get; init; }

    public float Minimum { get; init; }

    public int WarmupSteps { get; init; }

    public required int TotalSteps { get; init; }

    /// <summary>Null when the schedule is usable, else what is wrong.</summary>
    public string? Validate()
    {
        if (!(Peak > 0) || float.IsInfinity(Peak)) return $"peak learning rate {Peak} must be positive and finite.";
        if (Minimum < 0 || Minimum > Peak) return $"minimum learning rate {Minimum} must be between 0 and the peak {Peak}.";
        if (TotalSteps < 1) return $"total steps {TotalSteps} must be at least 1.";
        if (WarmupSteps < 0 || WarmupSteps > TotalSteps) return $"warmup steps {WarmupSteps} must be between 0 and the total {TotalSteps}.";
        return null;
    }

    /// <summary>
    /// The rate for step <paramref name="step"/> (0-based): Peak·(step + 1)/WarmupSteps during warmup, then
    /// Minimum + ½(Peak − Minimum)(1 + cos(π·p)) with p = (step − WarmupSteps)/(TotalSteps − WarmupSteps) clamped to [0, 1].
    /// </summary>
    public float At(long step)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        if (step < WarmupSteps) return (float)((double)Peak * (step + 1) / WarmupSteps);
        double decay = Math.Max(1, TotalSteps - WarmupSteps);
        double p = Math.Clamp((step - WarmupSteps) / decay, 0, 1);
        return (float)(Minimum + 0.5 * (Peak - Minimum) * (1 + Math.Cos(Math.PI * p)));
    }
}
