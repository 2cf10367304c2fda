namespace ModelSmith.Tokenization;

/// <summary>Token types as GGUF's <c>tokenizer.ggml.token_type</c> numbers them (llama.cpp's llama_token_type).</summary>
public enum TokenType
{
    Undefined = 0,
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

/// <summary>
/// The tokenizer metadata of a GGUF file, as plain data: what <see cref="Tokenizer.Create"/> needs to build a
/// tokenizer that gives llama.cpp's token ids. A null optional member means "key absent", and the tokenizer then
/// applies llama.cpp's default for the model (e.g. BOS 1 / EOS 2 / UNK 0 and add_bos for <c>llama</c>, BOS = EOS = 11
/// for <c>gpt2</c>). The lists are read, never modified; <see cref="Tokenizer.Create"/> copies what it keeps.
/// </summary>
public sealed record TokenizerSpec
{
    /// <summary><c>tokenizer.ggml.model</c>: <c>gpt2</c> (byte-level BPE) or <c>llama</c> (SentencePiece BPE).</summary>
    public required string Model { get; init; }

    /// <summary><c>tokenizer.ggml.pre</c>: the pre-tokenizer of a <c>gpt2</c> model (<c>default</c>, <c>gpt-2</c>, <c>llama3</c> ...).</summary>
    public string? Pre { get; init; }

    /// <summary><c>tokenizer.ggml.tokens</c>: the text of each token id; for gpt2, bytes are in GPT-2's byte-to-unicode alphabet.</summary>
    public required IReadOnlyList<string> Tokens { get; init; }

    /// <summary><c>tokenizer.ggml.scores</c>: one per token; the merge priority of a <c>llama</c> vocabulary (higher merges first).</summary>
    public IReadOnlyList<float>? Scores { get; init; }

    /// <summary><c>tokenizer.ggml.token_type</c>: one per token; absent means every token is <see cref="TokenType.Normal"/>.</summary>
    public IReadOnlyList<TokenType>? TokenTypes { get; init; }

    /// <summary><c>tokenizer.ggml.merges</c>: "left right" pairs, highest priority first; required for <c>gpt2</c>.</summary>
    public IReadOnlyList<string>? Merges { get; init; }

    /// <summary><c>tokenizer.ggml.bos_token_id</c>.</summary>
    public int? BosId { get; init; }

    /// <summary><c>tokenizer.ggml.eos_token_id</c>.</summary>
    public int? EosId { get; init; }

    /// <summary><c>tokenizer.ggml.unknown_token_id</c>.</summary>
    public int? UnknownId { get; init; }

    /// <summary><c>tokenizer.ggml.padding_token_id</c>.</summary>
    public int? PaddingId { get; init; }

    /// <summary><c>tokenizer.ggml.add_bos_token</c>.</summary>
    public bool? AddBos { get; init; }

    /// <summary><c>tokenizer.ggml.add_eos_token</c>.</summary>
    public bool? AddEos { get; init; }

    /// <summary><c>tokenizer.ggml.add_space_prefix</c>.</summary>
    public bool? AddSpacePrefix { get; init; }
}
