namespace ModelSmith.Training.Data;

/// <summary>
/// The record formats <see cref="DataReader"/> reads. With <see cref="Auto"/>, each file's format is chosen on its own:
/// <c>.txt</c> / <c>.txt.gz</c> files are <see cref="Text"/>; <c>.jsonl</c> / <c>.jsonl.gz</c> files, and any other
/// file whose first non-blank character is '{', are JSON Lines, and their first well-formed record decides: a <c>messages</c> key means <see cref="Chat"/>, else an
/// <c>instruction</c> key means <see cref="Alpaca"/>, else a <c>text</c> key means <see cref="JsonText"/>; any other
/// file is <see cref="Text"/>.
/// </summary>
public enum DataFormat
{
    /// <summary>Decide per file (see the type's summary).</summary>
    Auto,

    /// <summary>Plain UTF-8 text, cut into documents as <see cref="TextDocumentSplit"/> says.</summary>
    Text,

    /// <summary>JSON Lines, one document per line: <c>{"text": "..."}</c>.</summary>
    JsonText,

    /// <summary>JSON Lines, <c>{"instruction": "...", "input": "..." (optional), "output": "..."}</c>.</summary>
    Alpaca,

    /// <summary>JSON Lines, <c>{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}</c>.</summary>
    Chat,
}

/// <summary>Where a plain text file is cut into documents (each document gets its own EOS, and the train/validation split is by document).</summary>
public enum TextDocumentSplit
{
    /// <summary>At runs of blank (empty or whitespace-only) lines; a document's lines are joined with '\n'.</summary>
    BlankLines,

    /// <summary>Every non-blank line is a document.</summary>
    Lines,

    /// <summary>The whole file is one document, verbatim.</summary>
    File,
}
