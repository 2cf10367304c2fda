namespace ModelSmith.Cli.Demo;

/// <summary>
/// The sizes of one demo run: the model preset, the steps of each training run, the quantized types, and how much
/// text evaluation and benchmarking use. <see cref="Full"/> fits in 10 minutes on 2 cores, <see cref="Quick"/> in 2.
/// </summary>
internal sealed record DemoPlan(
    string Name,
    string Size,
    int PretrainSteps,
    int PretrainBatch,
    float PretrainLr,
    int FullSteps,
    float FullLr,
    int LoraSteps,
    float LoraLr,
    int LoraRank,
    int FineTuneBatch,
    bool QuantizeLora,
    int TestChars,
    int BenchPrompt,
    int BenchGenerate,
    int BenchReps)
{
    /// <summary>The file types every base and fine-tuned model is quantized to.</summary>
    public static IReadOnlyList<string> Types { get; } = ["q8_0", "q4_k_m", "q4_0"];

    /// <summary>
    /// The README's main job: the `tiny` preset (2 layers, 256 wide, 2048-token vocabulary, 2.1M parameters)
    /// pretrained on 2.5M tokens of general text (1.7 passes over it), then fine-tuned on 0.4M tokens of mail.
    /// </summary>
    public static DemoPlan Full { get; } = new("full", "tiny", PretrainSteps: 1200, PretrainBatch: 16, PretrainLr: 3e-3f,
        FullSteps: 200, FullLr: 1e-3f, LoraSteps: 200, LoraLr: 3e-3f, LoraRank: 16, FineTuneBatch: 16, QuantizeLora: true,
        TestChars: 80_000, BenchPrompt: 128, BenchGenerate: 64, BenchReps: 3);

    /// <summary>The same lineage at the `tiny` preset and a few hundred steps, for the test suite.</summary>
    public static DemoPlan Quick { get; } = new("quick", "tiny", PretrainSteps: 300, PretrainBatch: 8, PretrainLr: 4e-3f,
        FullSteps: 60, FullLr: 1e-3f, LoraSteps: 60, LoraLr: 4e-3f, LoraRank: 8, FineTuneBatch: 8, QuantizeLora: false,
        TestChars: 30_000, BenchPrompt: 128, BenchGenerate: 32, BenchReps: 2);
}
