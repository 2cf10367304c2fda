namespace ModelSmith.Training.Data;

/// <summary>
/// Tokenized documents packed back to back (each already ends in EOS) into one stream and cut into rows of T + 1
/// tokens: row r is stream[r*T .. r*T + T], so consecutive rows share one token and every token after the first is
/// a target exactly once. A model reads a row's first T tokens and is scored on predicting tokens 1..T; the target
/// at position t (predicting Tokens[t + 1]) counts iff Mask[t + 1]. Attention is not cut at document boundaries
/// (the usual packing; EOS tells the model a new document starts). The last row is filled up with a padding token
/// whose mask is false.
/// </summary>
public sealed class PackedDataset
{
    private readonly int[] _tokens; // (Rows * T + 1)
    private readonly bool[] _mask;  // (Rows * T + 1)

    private PackedDataset(int contextLength, int rows, int[] tokens, bool[] mask, long realTokens, long targets, int documents)
    {
        ContextLength = contextLength;
        RowCount = rows;
        _tokens = tokens;
        _mask = mask;
        TokenCount = realTokens;
        TargetCount = targets;
        DocumentCount = documents;
    }

    /// <summary>T: tokens a model reads per row.</summary>
    public int ContextLength { get; }

    /// <summary>Rows of T + 1 tokens.</summary>
    public int RowCount { get; }

    /// <summary>Tokens packed (without padding).</summary>
    public long TokenCount { get; }

    /// <summary>Tokens that are training targets (mask true), not counting the stream's first token.</summary>
    public long TargetCount { get; }

    /// <summary>Documents packed.</summary>
    public int DocumentCount { get; }

    /// <summary>
    /// Packs <paramref name="examples"/> in their order, or shuffled with <paramref name="shuffleSeed"/> (a seeded
    /// Fisher-Yates over whole documents) when given; <paramref name="padToken"/> fills the last row.
    /// </summary>
    public static PackedDataset Pack(IReadOnlyList<TokenizedExample> examples, int contextLength, int padToken, ulong? shuffleSeed = null)
    {
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentOutOfRangeException.ThrowIfLessThan(contextLength, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(padToken);
        int[] order = new int[examples.Count];
        for (int i = 0; i < order.Length; i++)
            order[i] = i;
        if (shuffleSeed is ulong seed)
            new DataRng(DataRng.StateFromSeed(seed)).Shuffle(order.AsSpan());

        long total = 0;
        foreach (TokenizedExample example in examples)
        {
            if (example.Tokens.Length != example.Mask.Length)
                throw new ArgumentException($"example from {example.Source}:{example.Line} has {example.Tokens.Length} tokens but {example.Mask.Length} mask entries.", nameof(examples));
            total += example.Tokens.Length;
        }
        long rows = total <= 1 ? 0 : (total - 1 + contextLength - 1) / contextLength;
        long length = rows * contextLength + 1;
        if (length > Array.MaxLength || rows > int.MaxValue)
            throw new InvalidOperationException($"{total} tokens are more than one packed array can hold; train on fewer files.");

        var tokens = new int[Math.Max(length, 1)];
        var mask = new bool[tokens.Length];
        long at = 0, targets = 0;
        foreach (int i in order)
        {
            TokenizedExample example = examples[i];
            example.Tokens.CopyTo(tokens, at);
            example.Mask.CopyTo(mask, at);
            at += example.Tokens.Length;
        }
        for (long i = 1; i < Math.Min(at, tokens.Length); i++)
            if (mask[i])
                targets++;
        for (long i = at; i < tokens.Length; i++)
            tokens[i] = padToken;
        if (rows == 0)
            mask[0] = false;
        return new PackedDataset(contextLength, (int)rows, tokens, mask, total, targets, examples.Count);
    }

    /// <summary>Row <paramref name="row"/>'s T + 1 tokens.</summary>
    public ReadOnlySpan<int> RowTokens(int row) => _tokens.AsSpan(RowStart(row), ContextLength + 1);

    /// <summary>Row <paramref name="row"/>'s T + 1 mask entries (entry 0 belongs to the previous row's last target).</summary>
    public ReadOnlySpan<bool> RowMask(int row) => _mask.AsSpan(RowStart(row), ContextLength + 1);

    private int RowStart(int row)
    {
        if ((uint)row >= (uint)RowCount)
            throw new ArgumentOutOfRangeException(nameof(row), row, $"row {row} is outside the {RowCount} rows.");
        return row * ContextLength;
    }
}
