using System.Text;

namespace ModelSmith.Tokenization;

/// <summary>
/// A tokenizer built from GGUF tokenizer metadata that gives exactly llama.cpp's token ids (llama-vocab.cpp):
/// <c>gpt2</c> vocabularies get byte-level BPE, <c>llama</c> vocabularies SentencePiece-style BPE. Instances are
/// immutable and safe to use from several threads.
/// </summary>
public abstract class Tokenizer
{
    /// <summary>Token texts that llama.cpp treats as end of generation (and forces to control type) whatever the metadata says.</summary>
    private static readonly string[] EndOfGenerationTexts =
    [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
        "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
        "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[",
        // fill-in-the-middle pad / repository / file separator tokens also end generation
        "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]",
        "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>",
    ];

    /// <summary>Fill-in-the-middle prefix / suffix / middle tokens: forced to control type, not end of generation.</summary>
    private static readonly string[] FimControlTexts =
    [
        "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>",
        "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>",
        "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>",
    ];

    private protected readonly string[] Texts;
    private protected readonly TokenType[] Types;
    private readonly Dictionary<string, int> _ids;
    private protected readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> IdsBySpan;
    private readonly byte[][] _pieces;
    private readonly int[] _specialTokens;
    private readonly HashSet<int> _endOfGeneration;

    private protected Tokenizer(TokenizerSpec spec, int defaultBos, int defaultEos, int defaultUnknown, bool defaultAddBos, bool defaultAddSpacePrefix)
    {
        ArgumentNullException.ThrowIfNull(spec);
        IReadOnlyList<string> tokens = spec.Tokens ?? throw new ArgumentException("tokenizer.ggml.tokens is missing.", nameof(spec));
        int n = tokens.Count;
        if (n == 0)
            throw new ArgumentException("tokenizer.ggml.tokens is empty; a vocabulary needs at least one token.", nameof(spec));
        if (spec.TokenTypes is { } tt && tt.Count < n)
            throw new ArgumentException($"tokenizer.ggml.token_type has {tt.Count} entries for {n} tokens; it needs one per token.", nameof(spec));
        Model = spec.Model;

        Texts = new string[n];
        Types = new TokenType[n];
        _ids = new Dictionary<string, int>(n, StringComparer.Ordinal);
        for (int i = 0; i < n; i++)
        {
            // llama.cpp reads token texts as C strings (cut at the first NUL), renames empty ones so that they
            // cannot match text, and refuses duplicates.
            string text = CString(tokens[i]);
            if (text.Length == 0)
                text = $"[EMPTY_{i}]";
            if (!_ids.TryAdd(text, i))
                throw new ArgumentException($"duplicate token in vocabulary: '{text}' has ids {_ids[text]} and {i}; token texts must be unique.", nameof(spec));
            Texts[i] = text;
            TokenType type = spec.TokenTypes is null ? TokenType.Normal : spec.TokenTypes[i];
            Types[i] = type is >= TokenType.Undefined and <= TokenType.Byte ? type : TokenType.Undefined;
        }
        IdsBySpan = _ids.GetAlternateLookup<ReadOnlySpan<char>>();

        // Special ids: llama.cpp's defaults for the model (disabled when out of range), replaced by metadata in range.
        Bos = Resolve(spec.BosId, defaultBos, n);
        Eos = Resolve(spec.EosId, defaultEos, n);
        Unknown = Resolve(spec.UnknownId, defaultUnknown, n);
        Padding = Resolve(spec.PaddingId, -1, n);
        AddBos = spec.AddBos ?? defaultAddBos;
        AddEos = spec.AddEos ?? false;
        AddSpacePrefix = spec.AddSpacePrefix ?? defaultAddSpacePrefix;
        if (AddBos && Bos < 0)
            throw new ArgumentException("tokenizer.ggml.add_bos_token is true, but tokenizer.ggml.bos_token_id is not set (or out of range).", nameof(spec));
        if (AddEos && Eos < 0)
            throw new ArgumentException("tokenizer.ggml.add_eos_token is true, but tokenizer.ggml.eos_token_id is not set (or out of range).", nameof(spec));

        _endOfGeneration = ApplyTextOverrides();
        if (Eos >= 0)
            _endOfGeneration.Add(Eos);

        // Special tokens are split out of the text longest first (llama.cpp sorts by byte length; ties keep id order here).
        var specials = new List<int>();
        for (int i = 0; i < n; i++)
            if (Types[i] is TokenType.Control or TokenType.UserDefined or TokenType.Unknown)
                specials.Add(i);
        int[] byteLengths = new int[n];
        foreach (int id in specials)
            byteLengths[id] = Encoding.UTF8.GetByteCount(Texts[id]);
        _specialTokens = [.. specials.OrderByDescending(id => byteLengths[id]).ThenBy(id => id)];

        _pieces = new byte[n][];
    }

    /// <summary><c>gpt2</c> or <c>llama</c>.</summary>
    public string Model { get; }

    /// <summary>Number of token ids.</summary>
    public int VocabularySize => Texts.Length;

    /// <summary>Beginning-of-sequence id, or -1.</summary>
    public int Bos { get; }

    /// <summary>End-of-sequence id, or -1.</summary>
    public int Eos { get; }

    /// <summary>Unknown-token id, or -1.</summary>
    public int Unknown { get; }

    /// <summary>Padding id, or -1.</summary>
    public int Padding { get; }

    /// <summary>Whether <see cref="Encode"/> with addSpecial puts <see cref="Bos"/> first.</summary>
    public bool AddBos { get; }

    /// <summary>Whether <see cref="Encode"/> with addSpecial puts <see cref="Eos"/> last.</summary>
    public bool AddEos { get; }

    /// <summary>Whether a <c>llama</c> vocabulary prefixes a space to text at the start and after each special token.</summary>
    public bool AddSpacePrefix { get; }

    /// <summary>Builds the tokenizer that llama.cpp would build from this metadata.</summary>
    public static Tokenizer Create(TokenizerSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        Tokenizer tokenizer = spec.Model switch
        {
            "gpt2" => new ByteLevelBpeTokenizer(spec),
            "llama" => new SentencePieceBpeTokenizer(spec),
            _ => throw new NotSupportedException(
                $"tokenizer.ggml.model = '{spec.Model}' is not supported; use 'gpt2' (byte-level BPE) or 'llama' (SentencePiece BPE)."),
        };
        tokenizer.BuildPieces();
        return tokenizer;
    }

    /// <summary>
    /// Token ids of <paramref name="text"/>, as llama_tokenize gives them. <paramref name="addSpecial"/> adds BOS/EOS
    /// where the vocabulary asks for them; <paramref name="parseSpecial"/> turns text equal to a control token into
    /// that token (user-defined tokens are always matched, control and unknown ones only with parseSpecial).
    /// </summary>
    public int[] Encode(string text, bool addSpecial = true, bool parseSpecial = false)
    {
        var output = new List<int>(text.Length / 3 + 2);
        Encode(text, output, addSpecial, parseSpecial);
        return [.. output];
    }

    /// <summary>As <see cref="Encode(string, bool, bool)"/>, appending to <paramref name="output"/>.</summary>
    public void Encode(string text, List<int> output, bool addSpecial = true, bool parseSpecial = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(output);
        if (addSpecial && AddBos)
            output.Add(Bos);
        if (text.Length > 0)
        {
            // Fragments: (token id, or -1 for text; start; length) in text order (llama.cpp's tokenizer_st_partition).
            List<(int Id, int Start, int Length)> fragments = Partition(text, parseSpecial);
            bool afterSpecial = true;
            foreach ((int id, int start, int length) in fragments)
            {
                if (id >= 0)
                {
                    output.Add(id);
                    afterSpecial = true;
                }
                else
                {
                    EncodeText(text.AsSpan(start, length), afterSpecial, output);
                    afterSpecial = false;
                }
            }
        }
        if (addSpecial && AddEos)
            output.Add(Eos);
    }

    /// <summary>
    /// The text of <paramref name="ids"/>: their pieces concatenated and read as UTF-8. Control and unknown tokens
    /// give nothing unless <paramref name="renderSpecial"/>. For a vocabulary with a space prefix, the space that
    /// <see cref="Encode(string, bool, bool)"/> put at the start and after special tokens is removed, so that
    /// Decode(Encode(x)) == x. (llama_detokenize differs: it keeps that space after a BOS and, for gpt2, also
    /// removes spaces before punctuation.)
    /// </summary>
    public string Decode(ReadOnlySpan<int> ids, bool renderSpecial = false)
    {
        var bytes = new List<byte>(ids.Length * 4);
        bool stripSpace = StripsPrefixSpace;
        foreach (int id in ids)
        {
            ReadOnlySpan<byte> piece = TokenToPiece(id, renderSpecial);
            if (IsSpecialFragment(id))
            {
                bytes.AddRange(piece);
                stripSpace = StripsPrefixSpace;
                continue;
            }
            if (stripSpace && piece.Length > 0 && piece[0] == (byte)' ')
                piece = piece[1..];
            stripSpace = false;
            bytes.AddRange(piece);
        }
        return Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes));
    }

    /// <summary>
    /// The bytes token <paramref name="id"/> stands for (llama_token_to_piece): possibly part of a UTF-8 sequence,
    /// so stream them through <see cref="CreateStreamDecoder"/> rather than decoding each on its own.
    /// </summary>
    public ReadOnlySpan<byte> TokenToPiece(int id, bool renderSpecial = false)
    {
        CheckId(id);
        if (!renderSpecial && Types[id] is TokenType.Control or TokenType.Unknown)
            return [];
        return _pieces[id];
    }

    /// <summary>A decoder that turns ids into text as they are generated, holding back incomplete UTF-8 sequences.</summary>
    public TokenStreamDecoder CreateStreamDecoder(bool renderSpecial = false) => new(this, renderSpecial);

    /// <summary>The vocabulary text of token <paramref name="id"/> (for gpt2, in GPT-2's byte alphabet).</summary>
    public string TokenText(int id)
    {
        CheckId(id);
        return Texts[id];
    }

    /// <summary>The type of token <paramref name="id"/>, after llama.cpp's overrides (e.g. &lt;|endoftext|&gt; is control).</summary>
    public TokenType GetTokenType(int id)
    {
        CheckId(id);
        return Types[id];
    }

    /// <summary>The id whose vocabulary text is exactly <paramref name="text"/>.</summary>
    public bool TryGetTokenId(string text, out int id) => _ids.TryGetValue(text, out id);

    /// <summary>Whether generation should stop at <paramref name="id"/> (EOS, EOT, EOM and llama.cpp's list of such texts).</summary>
    public bool IsEndOfGeneration(int id) => _endOfGeneration.Contains(id);

    /// <summary>Splits a text fragment (no special tokens in it) into ids appended to <paramref name="output"/>.</summary>
    private protected abstract void EncodeText(ReadOnlySpan<char> text, bool afterSpecial, List<int> output);

    /// <summary>The bytes of a normal token (gpt2: from the byte alphabet; llama: U+2581 back to spaces).</summary>
    private protected abstract byte[] NormalPiece(string text);

    /// <summary>Whether decoding removes the space that encoding prefixed at the start and after special tokens.</summary>
    private protected virtual bool StripsPrefixSpace => false;

    internal bool IsSpecialFragment(int id) => Types[id] is TokenType.Control or TokenType.UserDefined or TokenType.Unknown;

    internal bool StartsStripped => StripsPrefixSpace;

    private void CheckId(int id)
    {
        if ((uint)id >= (uint)Texts.Length)
            throw new ArgumentOutOfRangeException(nameof(id), id, $"token id {id} is outside the vocabulary of {Texts.Length} tokens.");
    }

    /// <summary><paramref name="text"/> up to its first NUL, as llama.cpp sees GGUF strings (gguf_get_arr_str is a C string).</summary>
    internal static string CString(string? text)
    {
        if (text is null)
            return string.Empty;
        int nul = text.IndexOf('\0', StringComparison.Ordinal);
        return nul < 0 ? text : text[..nul];
    }

    private static int Resolve(int? fromMetadata, int fallback, int n)
    {
        if (fallback >= n)
            fallback = -1;
        return fromMetadata is int id && id >= 0 && id < n ? id : fallback;
    }

    /// <summary>
    /// llama.cpp's fix-ups by token text: end-of-generation and fill-in-the-middle tokens become control tokens,
    /// gpt-oss's channel tokens become user-defined, and two vocabulary-specific exceptions. Returns the
    /// end-of-generation set (without EOS, added by the caller).
    /// </summary>
    private HashSet<int> ApplyTextOverrides()
    {
        var eog = new HashSet<int>();
        foreach (string text in EndOfGenerationTexts)
        {
            if (_ids.TryGetValue(text, out int id))
            {
                eog.Add(id);
                Types[id] = TokenType.Control;
            }
        }
        foreach (string text in FimControlTexts)
            if (_ids.TryGetValue(text, out int id))
                Types[id] = TokenType.Control;
        foreach (string text in (ReadOnlySpan<string>)["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"])
            if (_ids.TryGetValue(text, out int id))
                Types[id] = TokenType.UserDefined;

        // o200k_harmony / solar-open: "<|end|>" is not an end of generation when "<|return|>" and "<|call|>"
        // (or "<|calls|>" and "<|flush|>") are.
        bool has(string t) => _ids.ContainsKey(t);
        if (_ids.TryGetValue("<|end|>", out int end) && ((has("<|return|>") && has("<|call|>")) || (has("<|calls|>") && has("<|flush|>"))))
        {
            eog.Remove(end);
            Types[end] = TokenType.UserDefined;
        }
        // gemma4: "</s>" is an ordinary token when "<|tool_response>" exists.
        if (_ids.TryGetValue("</s>", out int s) && has("<|tool_response>"))
        {
            eog.Remove(s);
            Types[s] = TokenType.Normal;
        }
        return eog;
    }

    private void BuildPieces()
    {
        for (int id = 0; id < Texts.Length; id++)
        {
            string text = Texts[id];
            _pieces[id] = Types[id] switch
            {
                TokenType.Control or TokenType.Unknown or TokenType.UserDefined => Encoding.UTF8.GetBytes(text),
                TokenType.Normal => NormalPiece(text),
                TokenType.Byte => [ByteOfByteToken(text)],
                _ => [],
            };
        }
    }

    /// <summary>The byte of a "&lt;0xXX&gt;" token: llama.cpp reads the two characters after "&lt;0x" as hex (strtol).</summary>
    private static byte ByteOfByteToken(string text)
    {
        int value = 0;
        for (int i = 3; i < Math.Min(5, text.Length); i++)
        {
            int digit = HexValue(text[i]);
            if (digit < 0)
                break;
            value = value * 16 + digit;
        }
        return (byte)value;
    }

    private static int HexValue(char c) => c switch
    {
        >= '0' and <= '9' => c - '0',
        >= 'a' and <= 'f' => c - 'a' + 10,
        >= 'A' and <= 'F' => c - 'A' + 10,
        _ => -1,
    };

    /// <summary>
    /// Splits <paramref name="text"/> around special tokens, longest first, each at every non-overlapping occurrence
    /// from the left (llama.cpp's tokenizer_st_partition on UTF-8 bytes; for valid text an ordinal UTF-16 search
    /// finds the same occurrences).
    /// </summary>
    private List<(int Id, int Start, int Length)> Partition(string text, bool parseSpecial)
    {
        var fragments = new List<(int Id, int Start, int Length)> { (-1, 0, text.Length) };
        var next = new List<(int Id, int Start, int Length)>();
        foreach (int special in _specialTokens)
        {
            if (!parseSpecial && Types[special] is TokenType.Control or TokenType.Unknown)
                continue;
            string token = Texts[special];
            bool found = false;
            foreach (var fragment in fragments)
            {
                if (fragment.Id >= 0 || text.AsSpan(fragment.Start, fragment.Length).IndexOf(token, StringComparison.Ordinal) < 0)
                {
                    next.Add(fragment);
                    continue;
                }
                found = true;
                int offset = fragment.Start, length = fragment.Length;
                while (length > 0)
                {
                    int at = text.AsSpan(offset, length).IndexOf(token, StringComparison.Ordinal);
                    if (at < 0)
                    {
                        next.Add((-1, offset, length));
                        break;
                    }
                    if (at > 0)
                        next.Add((-1, offset, at));
                    next.Add((special, 0, 0));
                    offset += at + token.Length;
                    length -= at + token.Length;
                }
            }
            if (found)
                (fragments, next) = (next, fragments);
            next.Clear();
        }
        return fragments;
    }
}
