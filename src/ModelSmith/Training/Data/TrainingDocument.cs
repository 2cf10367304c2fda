namespace ModelSmith.Training.Data;

/// <summary>One message of a chat record.</summary>
/// <param name="Role"><c>system</c>, <c>user</c> or <c>assistant</c>.</param>
/// <param name="Content">The message text.</param>
public sealed record ChatMessage(string Role, string Content);

/// <summary>
/// One document of training data as read, before any template or tokenizer: a text, an Alpaca record or a chat.
/// Which members are set depends on <see cref="Format"/>: <see cref="Text"/> for Text and JsonText;
/// <see cref="Instruction"/>, <see cref="Input"/> (may be null) and <see cref="Output"/> for Alpaca;
/// <see cref="Messages"/> for Chat.
/// </summary>
/// <param name="Source">The file's <see cref="DataFile.Name"/>.</param>
/// <param name="Line">1-based line where the document starts.</param>
/// <param name="Index">0-based position of the document in its file (skipped records not counted).</param>
/// <param name="Format">Text, JsonText, Alpaca or Chat.</param>
public sealed record TrainingDocument(string Source, long Line, int Index, DataFormat Format)
{
    public string? Text { get; init; }

    public string? Instruction { get; init; }

    public string? Input { get; init; }

    public string? Output { get; init; }

    public IReadOnlyList<ChatMessage>? Messages { get; init; }

    /// <summary>Whether the document has a prompt part and a completion part (Alpaca and chat) rather than being all text.</summary>
    public bool IsInstruction => Format is DataFormat.Alpaca or DataFormat.Chat;
}

/// <summary>
/// A piece of a rendered document. <paramref name="IsMarkup"/> pieces are template text, tokenized with special
/// tokens recognised (so "&lt;|im_start|&gt;" becomes that token); the data's own text never is, so a record cannot
/// inject control tokens. <paramref name="IsCompletion"/> pieces are what the model is trained to produce.
/// </summary>
public readonly record struct TextSegment(string Text, bool IsCompletion, bool IsMarkup);
