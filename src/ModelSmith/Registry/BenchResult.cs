namespace ModelSmith.Registry;

/// <summary>
/// One speed measurement of a variant as `smith bench` makes it: prefill (pp) and decode (tg) tokens per second
/// (mean and standard deviation over repetitions), load time, peak resident memory, threads. A test that was
/// not run has 0 tokens and null speeds.
/// </summary>
public sealed record BenchResult
{
    /// <summary>Row id in the registry (0 before it is recorded).</summary>
    public long Id { get; init; }
    /// <summary>The variant measured (set by <see cref="Workspace.RecordBench"/>).</summary>
    public string VariantId { get; init; } = "";
    public int PromptTokens { get; init; }
    public double? PrefillTokensPerSecond { get; init; }
    public double? PrefillStdDev { get; init; }
    public int GeneratedTokens { get; init; }
    public double? DecodeTokensPerSecond { get; init; }
    public double? DecodeStdDev { get; init; }
    public double LoadSeconds { get; init; }
    public long PeakResidentBytes { get; init; }
    public int Threads { get; init; }
    public int Repetitions { get; init; }
    /// <summary>Where it ran (default: this machine).</summary>
    public MachineInfo? Machine { get; init; }
    /// <summary>When it was recorded (default: now).</summary>
    public DateTimeOffset? Recorded { get; init; }
}
