namespace ModelSmith.Registry;

/// <summary>
/// One evaluation of a variant on one data set: perplexity on text (with KL divergence and top-1 agreement
/// against a reference model when measured), or accuracy on a multiple-choice task. Fields that were not
/// measured are null.
/// </summary>
public sealed record EvalResult
{
    /// <summary>Row id in the registry (0 before it is recorded).</summary>
    public long Id { get; init; }
    /// <summary>The variant measured (set by <see cref="Workspace.RecordEval"/>).</summary>
    public string VariantId { get; init; } = "";
    /// <summary>The data set's name (file name) and the fingerprint of its bytes and tokens.</summary>
    public required DataFingerprint Data { get; init; }
    /// <summary>Tokens per chunk (perplexity); 0 for a task.</summary>
    public int Context { get; init; }
    public double? Perplexity { get; init; }
    /// <summary>Standard error of <see cref="Perplexity"/>.</summary>
    public double? PerplexityError { get; init; }
    /// <summary>Tokens scored (perplexity) or items (task).</summary>
    public long ScoredTokens { get; init; }
    /// <summary>Mean KL divergence from <see cref="ReferenceId"/>'s next-token distribution.</summary>
    public double? MeanKld { get; init; }
    /// <summary>Fraction of scored tokens where this model and the reference rank the same token first.</summary>
    public double? SameTop1 { get; init; }
    /// <summary>The variant the KL divergence is measured against (usually the parent).</summary>
    public string? ReferenceId { get; init; }
    /// <summary>Multiple-choice accuracy (lm-evaluation-harness acc).</summary>
    public double? Accuracy { get; init; }
    /// <summary>Multiple-choice accuracy per character (acc_norm).</summary>
    public double? AccuracyNorm { get; init; }
    /// <summary>Where it ran (default: this machine).</summary>
    public MachineInfo? Machine { get; init; }
    /// <summary>When it was recorded (default: now).</summary>
    public DateTimeOffset? Recorded { get; init; }

    /// <summary>True for a perplexity measurement, false for a multiple-choice task.</summary>
    public bool IsPerplexity => Perplexity.HasValue;
}
