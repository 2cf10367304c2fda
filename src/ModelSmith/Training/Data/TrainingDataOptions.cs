namespace ModelSmith.Training.Data;

/// <summary>How training data is read, rendered, tokenized, split and packed.</summary>
public sealed record TrainingDataOptions
{
    /// <summary>Record format of every file, or <see cref="DataFormat.Auto"/> to decide per file.</summary>
    public DataFormat Format { get; init; } = DataFormat.Auto;

    /// <summary>Where plain text files are cut into documents.</summary>
    public TextDocumentSplit TextSplit { get; init; } = TextDocumentSplit.BlankLines;

    /// <summary>Skip and count malformed records instead of stopping at the first.</summary>
    public bool SkipBadRecords { get; init; }

    /// <summary>
    /// For Alpaca and chat documents, train only on the completion (the response, or each assistant message and its
    /// end-of-turn marker); false trains on every token. Text documents always train on every token.
    /// </summary>
    public bool CompletionOnly { get; init; } = true;

    /// <summary>How chat messages are rendered; the default is ChatML.</summary>
    public ChatTemplate ChatTemplate { get; init; } = ChatTemplate.ChatML;

    /// <summary>Render Alpaca records as a two-message chat with <see cref="ChatTemplate"/> instead of the Alpaca prompt.</summary>
    public bool AlpacaAsChat { get; init; }

    /// <summary>Share of documents held out for validation, in [0, 1).</summary>
    public double ValidationFraction { get; init; } = 0.05;

    /// <summary>Seed of the split, the packing order and the batch order.</summary>
    public ulong Seed { get; init; } = 1234;

    /// <summary>Tokens a model sees per row (T); packed rows hold T + 1 tokens.</summary>
    public int ContextLength { get; init; } = 256;
}
