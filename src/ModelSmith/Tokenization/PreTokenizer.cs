namespace ModelSmith.Tokenization;

/// <summary>The pre-tokenizers of llama.cpp's BPE vocabularies that this library reproduces.</summary>
internal enum PreTokenizerKind
{
    /// <summary>LLAMA_VOCAB_PRE_TYPE_DEFAULT (<c>tokenizer.ggml.pre</c> = "default" or absent).</summary>
    Default,

    /// <summary>LLAMA_VOCAB_PRE_TYPE_GPT2 ("gpt-2" and the names llama.cpp treats alike).</summary>
    Gpt2,

    /// <summary>LLAMA_VOCAB_PRE_TYPE_LLAMA3 ("llama3", "llama-bpe" ...); its vocabularies also ignore merges for whole-word tokens.</summary>
    Llama3,
}

/// <summary>
/// Splits text into the words that byte-level BPE merges within, exactly as llama.cpp's unicode_regex_split does for
/// the supported pre-tokenizers. llama.cpp does not run real Unicode regexes: it runs a list of expressions one after
/// the other, each one splitting every piece left by the previous one into its matches and the gaps between them.
/// The GPT-2 and Llama-3 expressions have hand-written matchers there (unicode_regex_split_custom_gpt2/llama3),
/// which this file ports line by line; the others go through std::regex on a "collapsed" text in which every
/// non-ASCII code point stands for its category (<c>\p{L}</c> is [A-Za-z] plus "any non-ASCII letter") and every
/// non-ASCII White_Space code point is a vertical tab, so <c>\s</c> means White_Space. The few such expressions used
/// here are character-class runs and digit triples, written out below.
/// <para>
/// <c>Default</c>: <c>[\p{P}\$\+&lt;=&gt;\^~\|]+</c>, then the GPT-2 expression, then <c>\p{N}+</c>, then
/// <c>[0-9][0-9][0-9]</c>. <c>Gpt2</c>: <c>'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)</c>,
/// where the matcher also takes a lone trailing run of whitespace (<c>\s+</c>). <c>Llama3</c>:
/// <c>(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+</c>.
/// </para>
/// </summary>
internal static class PreTokenizer
{
    /// <summary>The pre-tokenizer llama.cpp picks for a <c>tokenizer.ggml.pre</c> value of a gpt2 model.</summary>
    public static PreTokenizerKind Parse(string? pre) => pre switch
    {
        null or "" or "default" => PreTokenizerKind.Default,
        "gpt-2" or "phi-2" or "jina-es" or "jina-de" or "gigachat" or "jina-v2-es" or "jina-v2-de" or "a.x-4.0"
            or "mellum" or "modern-bert" or "mpt" or "olmo" => PreTokenizerKind.Gpt2,
        "llama3" or "llama-v3" or "llama-bpe" or "falcon3" or "falcon-h1" or "pixtral" or "midm-2.0" or "lfm2" => PreTokenizerKind.Llama3,
        _ => throw new NotSupportedException(
            $"tokenizer.ggml.pre = '{pre}' is not a pre-tokenizer this library reproduces; supported: default, gpt-2 (and phi-2, mpt, olmo ...), llama3 (and llama-bpe ...)."),
    };

    /// <summary>
    /// Splits <paramref name="cps"/> into words; returns the list (<paramref name="a"/> or <paramref name="b"/>, both
    /// overwritten) of word lengths in code points, which sum to cps.Length and are all positive.
    /// </summary>
    public static List<int> Split(PreTokenizerKind kind, ReadOnlySpan<int> cps, List<int> a, List<int> b) // cps: (N)
    {
        a.Clear();
        b.Clear();
        if (cps.IsEmpty)
            return a;
        a.Add(cps.Length);
        switch (kind)
        {
            case PreTokenizerKind.Gpt2:
                Gpt2(cps, a, b);
                return b;
            case PreTokenizerKind.Llama3:
                Llama3(cps, a, b);
                return b;
            default:
                Runs(cps, a, b, RunKind.DefaultPunctuation);
                a.Clear();
                Gpt2(cps, b, a);
                b.Clear();
                Runs(cps, a, b, RunKind.Number);
                a.Clear();
                DigitTriples(cps, b, a);
                return a;
        }
    }

    private enum RunKind { DefaultPunctuation, Number }

    /// <summary>
    /// <c>[\p{P}\$\+&lt;=&gt;\^~\|]+</c>: in llama.cpp's collapsed form the class is every non-ASCII punctuation code
    /// point and the ASCII characters <c>!"#%&amp;'()*,-./:;?@[\]_{}$+&lt;=&gt;^~|</c> (all ASCII punctuation and
    /// symbols except the backtick).
    /// </summary>
    private static bool IsDefaultPunctuation(int cp)
    {
        if (cp < 128)
            return cp is '!' or '"' or '#' or '%' or '&' or '\'' or '(' or ')' or '*' or ',' or '-' or '.' or '/'
                or ':' or ';' or '?' or '@' or '[' or '\\' or ']' or '_' or '{' or '}'
                or '$' or '+' or '<' or '=' or '>' or '^' or '~' or '|';
        CodepointFlags f = Codepoints.Flags(cp);
        return (f & CodepointFlags.Whitespace) == 0 && (f & CodepointFlags.Categories) == CodepointFlags.Punctuation;
    }

    /// <summary><c>\p{N}</c> in collapsed form: ASCII digits and non-ASCII, non-White_Space numbers.</summary>
    private static bool IsNumber(int cp)
    {
        if (cp < 128)
            return cp is >= '0' and <= '9';
        CodepointFlags f = Codepoints.Flags(cp);
        return (f & CodepointFlags.Whitespace) == 0 && (f & CodepointFlags.Categories) == CodepointFlags.Number;
    }

    /// <summary>An expression <c>[class]+</c>: each maximal run of class members and each gap between runs becomes a piece.</summary>
    private static void Runs(ReadOnlySpan<int> cps, List<int> input, List<int> output, RunKind kind)
    {
        int start = 0;
        foreach (int length in input)
        {
            int end = start + length;
            int pieceStart = start;
            bool inRun = false;
            for (int i = start; i < end; i++)
            {
                bool member = kind == RunKind.Number ? IsNumber(cps[i]) : IsDefaultPunctuation(cps[i]);
                if (member != inRun && i > pieceStart)
                {
                    output.Add(i - pieceStart);
                    pieceStart = i;
                }
                inRun = member;
            }
            if (end > pieceStart)
                output.Add(end - pieceStart);
            start = end;
        }
    }

    /// <summary><c>[0-9][0-9][0-9]</c>: leftmost non-overlapping ASCII digit triples, and the gaps between them.</summary>
    private static void DigitTriples(ReadOnlySpan<int> cps, List<int> input, List<int> output)
    {
        int start = 0;
        foreach (int length in input)
        {
            int end = start + length;
            int gapStart = start;
            int i = start;
            while (i + 2 < end)
            {
                if (IsAsciiDigit(cps[i]) && IsAsciiDigit(cps[i + 1]) && IsAsciiDigit(cps[i + 2]))
                {
                    if (i > gapStart)
                        output.Add(i - gapStart);
                    output.Add(3);
                    i += 3;
                    gapStart = i;
                }
                else
                {
                    i++;
                }
            }
            if (end > gapStart)
                output.Add(end - gapStart);
            start = end;
        }
    }

    private static bool IsAsciiDigit(int cp) => cp is >= '0' and <= '9';

    /// <summary>Reads a piece [ini, end) of the code points the way llama.cpp's splitters do: out of range is "no code point".</summary>
    private readonly ref struct Piece
    {
        public const int OutOfRange = -1;
        private readonly ReadOnlySpan<int> _cps;
        private readonly int _ini;
        private readonly int _end;

        public Piece(ReadOnlySpan<int> cps, int ini, int end)
        {
            _cps = cps;
            _ini = ini;
            _end = end;
        }

        public int Cpt(int pos) => pos >= _ini && pos < _end ? _cps[pos] : OutOfRange;

        public CodepointFlags Flags(int pos) => pos >= _ini && pos < _end ? Codepoints.Flags(_cps[pos]) : CodepointFlags.None;
    }

    private static bool Has(CodepointFlags f, CodepointFlags bit) => (f & bit) != 0;

    /// <summary>Port of unicode_regex_split_custom_gpt2.</summary>
    private static void Gpt2(ReadOnlySpan<int> cps, List<int> input, List<int> output)
    {
        int start = 0;
        foreach (int length in input)
        {
            int ini = start, end = start + length;
            start = end;
            var p = new Piece(cps, ini, end);
            int prevEnd = ini;
            int pos = ini;
            while (pos < end)
            {
                int cpt = p.Cpt(pos);
                CodepointFlags flags = p.Flags(pos);

                // 's|'t|'re|'ve|'m|'ll|'d
                if (cpt == '\'' && pos + 1 < end)
                {
                    int next = p.Cpt(pos + 1);
                    if (next is 's' or 't' or 'm' or 'd')
                    {
                        pos += Add(output, ref prevEnd, pos + 2);
                        continue;
                    }
                    if (pos + 2 < end)
                    {
                        int next2 = p.Cpt(pos + 2);
                        if ((next == 'r' && next2 == 'e') || (next == 'v' && next2 == 'e') || (next == 'l' && next2 == 'l'))
                        {
                            pos += Add(output, ref prevEnd, pos + 3);
                            continue;
                        }
                    }
                }

                CodepointFlags flags2 = cpt == ' ' ? p.Flags(pos + 1) : flags;
                // <space>?\p{L}+
                if (Has(flags2, CodepointFlags.Letter))
                {
                    pos += cpt == ' ' ? 1 : 0;
                    while (Has(flags2, CodepointFlags.Letter))
                        flags2 = p.Flags(++pos);
                    Add(output, ref prevEnd, pos);
                    continue;
                }
                // <space>?\p{N}+
                if (Has(flags2, CodepointFlags.Number))
                {
                    pos += cpt == ' ' ? 1 : 0;
                    while (Has(flags2, CodepointFlags.Number))
                        flags2 = p.Flags(++pos);
                    Add(output, ref prevEnd, pos);
                    continue;
                }
                // <space>?[^\s\p{L}\p{N}]+
                if (IsOther(flags2))
                {
                    pos += cpt == ' ' ? 1 : 0;
                    while (IsOther(flags2))
                        flags2 = p.Flags(++pos);
                    Add(output, ref prevEnd, pos);
                    continue;
                }

                int numWhitespaces = 0;
                while (Has(p.Flags(pos + numWhitespaces), CodepointFlags.Whitespace))
                    numWhitespaces++;

                // \s+(?!\S): leave the last whitespace to start the next word
                if (numWhitespaces > 1 && p.Cpt(pos + numWhitespaces) != Piece.OutOfRange)
                {
                    pos += numWhitespaces - 1;
                    Add(output, ref prevEnd, pos);
                    continue;
                }
                // \s+
                if (numWhitespaces > 0)
                {
                    pos += numWhitespaces;
                    Add(output, ref prevEnd, pos);
                    continue;
                }
                // no match: one code point alone
                Add(output, ref prevEnd, ++pos);
            }
        }
    }

    /// <summary>Port of unicode_regex_split_custom_llama3.</summary>
    private static void Llama3(ReadOnlySpan<int> cps, List<int> input, List<int> output)
    {
        int start = 0;
        foreach (int length in input)
        {
            int ini = start, end = start + length;
            start = end;
            var p = new Piece(cps, ini, end);
            int prevEnd = ini;
            int pos = ini;
            while (pos < end)
            {
                int cpt = p.Cpt(pos);
                CodepointFlags flags = p.Flags(pos);

                // (?i:'s|'t|'re|'ve|'m|'ll|'d)
                if (cpt == '\'' && pos + 1 < end)
                {
                    int next = AsciiLower(p.Cpt(pos + 1));
                    if (next is 's' or 't' or 'm' or 'd')
                    {
                        pos += Add(output, ref prevEnd, pos + 2);
                        continue;
                    }
                    if (pos + 2 < end)
                    {
                        int next2 = AsciiLower(p.Cpt(pos + 2));
                        if ((next == 'r' && next2 == 'e') || (next == 'v' && next2 == 'e') || (next == 'l' && next2 == 'l'))
                        {
                            pos += Add(output, ref prevEnd, pos + 3);
                            continue;
                        }
                    }
                }

                // [^\r\n\p{L}\p{N}]?\p{L}+
                if (!(cpt == '\r' || cpt == '\n' || Has(flags, CodepointFlags.Number)))
                {
                    if (Has(flags, CodepointFlags.Letter) || Has(p.Flags(pos + 1), CodepointFlags.Letter))
                    {
                        pos++;
                        while (Has(p.Flags(pos), CodepointFlags.Letter))
                            pos++;
                        Add(output, ref prevEnd, pos);
                        continue;
                    }
                }

                // \p{N}{1,3}
                if (Has(flags, CodepointFlags.Number))
                {
                    int runStart = pos;
                    while (Has(p.Flags(pos), CodepointFlags.Number))
                    {
                        if (++pos - runStart >= 3)
                        {
                            Add(output, ref prevEnd, pos);
                            runStart = pos;
                        }
                    }
                    Add(output, ref prevEnd, pos);
                    continue;
                }

                // <space>?[^\s\p{L}\p{N}]+[\r\n]*  (llama.cpp tests the current code point's flags for being
                // non-zero here, not the next one's; the difference only shows past the end of a piece)
                CodepointFlags flags2 = cpt == ' ' ? p.Flags(pos + 1) : flags;
                if ((flags2 & (CodepointFlags.Whitespace | CodepointFlags.Letter | CodepointFlags.Number)) == 0 && flags != CodepointFlags.None)
                {
                    pos += cpt == ' ' ? 1 : 0;
                    while (IsOther(flags2))
                        flags2 = p.Flags(++pos);
                    int cpt2 = p.Cpt(pos);
                    while (cpt2 == '\r' || cpt2 == '\n')
                        cpt2 = p.Cpt(++pos);
                    Add(output, ref prevEnd, pos);
                    continue;
                }

                int numWhitespaces = 0;
                int lastEndROrN = 0;
                while (Has(p.Flags(pos + numWhitespaces), CodepointFlags.Whitespace))
                {
                    int cpt2 = p.Cpt(pos + numWhitespaces);
                    if (cpt2 == '\r' || cpt2 == '\n')
                        lastEndROrN = pos + numWhitespaces + 1;
                    numWhitespaces++;
                }

                // \s*[\r\n]+
                if (lastEndROrN > 0)
                {
                    pos = lastEndROrN;
                    Add(output, ref prevEnd, pos);
                    continue;
                }
                // \s+(?!\S)
                if (numWhitespaces > 1 && p.Cpt(pos + numWhitespaces) != Piece.OutOfRange)
                {
                    pos += numWhitespaces - 1;
                    Add(output, ref prevEnd, pos);
                    continue;
                }
                // \s+
                if (numWhitespaces > 0)
                {
                    pos += numWhitespaces;
                    Add(output, ref prevEnd, pos);
                    continue;
                }
                Add(output, ref prevEnd, ++pos);
            }
        }
    }

    /// <summary>[^\s\p{L}\p{N}] inside a piece: not whitespace, letter or number, and not past the end.</summary>
    private static bool IsOther(CodepointFlags f) =>
        (f & (CodepointFlags.Whitespace | CodepointFlags.Letter | CodepointFlags.Number)) == 0 && f != CodepointFlags.None;

    private static int AsciiLower(int cp) => cp is >= 'A' and <= 'Z' ? cp + 32 : cp;

    /// <summary>Ends the current word at <paramref name="end"/>; returns its length (0 adds nothing).</summary>
    private static int Add(List<int> output, ref int prevEnd, int end)
    {
        int length = end - prevEnd;
        if (length > 0)
            output.Add(length);
        prevEnd = end;
        return length;
    }
}
