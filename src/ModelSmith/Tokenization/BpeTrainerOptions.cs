namespace ModelSmith.Tokenization;

/// <summary>What <see cref="BpeTrainer.Train"/> learns: the vocabulary's size, its special tokens and its pre-tokenizer.</summary>
public sealed record BpeTrainerOptions
{
    /// <summary>
    /// Tokens in the result, counting the 256 byte tokens and <see cref="SpecialTokens"/>; training stops earlier
    /// when no pair occurs at least <see cref="MinFrequency"/> times.
    /// </summary>
    public int VocabSize { get; init; } = 8192;

    /// <summary>
    /// Texts that become control tokens at the end of the vocabulary, in this order. The first is the end-of-text
    /// token: BOS and EOS both (as GPT-2's &lt;|endoftext|&gt;). Training text is cut at each occurrence of one, so no
    /// merge spans or learns from them.
    /// </summary>
    public IReadOnlyList<string> SpecialTokens { get; init; } = ["<|endoftext|>"];

    /// <summary>A pair is merged only when it occurs at least this often (at least 1).</summary>
    public int MinFrequency { get; init; } = 2;

    /// <summary><c>tokenizer.ggml.pre</c> of the result: <c>gpt-2</c> or <c>default</c> (llama.cpp's names).</summary>
    public string PreTokenizer { get; init; } = "gpt-2";
}

/// <summary>The stage that a <see cref="BpeTrainerProgress"/> report is about.</summary>
public enum BpeTrainerStage
{
    /// <summary>Reading texts and counting their words; Completed = texts read, Total = -1 (not known in advance).</summary>
    CountingWords,

    /// <summary>Learning merges; Completed = tokens learned so far, Total = tokens to learn.</summary>
    Merging,
}

/// <summary>A progress report of <see cref="BpeTrainer.Train"/>.</summary>
/// <param name="Stage">What is being done.</param>
/// <param name="Completed">Units done in this stage.</param>
/// <param name="Total">Units in this stage, or -1 when unknown.</param>
/// <param name="Words">Distinct words counted so far.</param>
public readonly record struct BpeTrainerProgress(BpeTrainerStage Stage, long Completed, long Total, int Words);
