using System.Collections.Concurrent;
using System.Text;

namespace ModelSmith.Tokenization;

/// <summary>
/// Byte-level BPE of <c>gpt2</c> vocabularies, as llama.cpp's llm_tokenizer_bpe_session: pre-tokenize into words
/// (<see cref="PreTokenizer"/>), write each word's UTF-8 bytes in GPT-2's byte alphabet, start from one symbol per
/// byte and repeatedly merge the adjacent pair with the lowest merge rank (ties: leftmost), then look each final
/// symbol up in the vocabulary. A symbol that is not a token falls back to one token per byte of its alphabet text
/// where a one-byte token exists, and is dropped otherwise (as llama.cpp does).
/// <para>
/// The merge loop works on interned symbol ids rather than strings: every byte string that occurs as a token, a
/// merge side or a merge result gets an id, and a merge is a lookup of the (left id, right id) pair. A queued
/// pair is stale when either side has since changed; llama.cpp detects that by comparing texts, which for the
/// same left position is the same test.
/// </para>
/// </summary>
internal sealed class ByteLevelBpeTokenizer : Tokenizer
{
    /// <summary>GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 for U+0100 upwards.</summary>
    internal static readonly char[] ByteToChar = BuildByteToChar();

    /// <summary>Inverse of <see cref="ByteToChar"/> over U+0000..U+0143; -1 for characters outside the alphabet.</summary>
    private static readonly short[] CharToByte = BuildCharToByte();

    private readonly PreTokenizerKind _pre;
    private readonly bool _ignoreMerges;
    private readonly Dictionary<byte[], int> _symbols = new(ByteStringComparer.Instance);
    private readonly Dictionary<byte[], int>.AlternateLookup<ReadOnlySpan<byte>> _symbolsBySpan;
    private readonly List<byte[]> _symbolBytes = [];
    private readonly List<int> _symbolToken = [];
    private readonly int[] _byteSymbol = new int[256];
    private readonly int[] _byteFallback = new int[256];
    private readonly Dictionary<long, (int Rank, int Result)> _merges;

    /// <summary>Tokens of words already merged (text repeats words, and merging dominates the cost); bounded.</summary>
    private readonly ConcurrentDictionary<byte[], int[]> _cache = new(ByteStringComparer.Instance);
    private readonly ConcurrentDictionary<byte[], int[]>.AlternateLookup<ReadOnlySpan<byte>> _cacheBySpan;
    private const int MaxCachedWords = 1 << 17;

    [ThreadStatic]
    private static Workspace? t_workspace;

    public ByteLevelBpeTokenizer(TokenizerSpec spec)
        : base(spec, defaultBos: 11, defaultEos: 11, defaultUnknown: -1,
               defaultAddBos: PreTokenizer.Parse(spec.Pre) == PreTokenizerKind.Llama3, defaultAddSpacePrefix: false)
    {
        _pre = PreTokenizer.Parse(spec.Pre);
        _ignoreMerges = _pre == PreTokenizerKind.Llama3;
        _symbolsBySpan = _symbols.GetAlternateLookup<ReadOnlySpan<byte>>();
        _cacheBySpan = _cache.GetAlternateLookup<ReadOnlySpan<byte>>();
        IReadOnlyList<string> merges = spec.Merges
            ?? throw new ArgumentException("tokenizer.ggml.merges is missing; a gpt2 vocabulary needs its merges.", nameof(spec));

        for (int b = 0; b < 256; b++)
            _byteSymbol[b] = Intern([(byte)b]);
        for (int id = 0; id < Texts.Length; id++)
        {
            if (TryAlphabetBytes(Texts[id], out byte[]? bytes))
                _symbolToken[Intern(bytes)] = id;
        }

        // llama.cpp splits each merge at the first space after its first byte and keeps the first rank of a pair.
        _merges = new Dictionary<long, (int, int)>(merges.Count);
        for (int rank = 0; rank < merges.Count; rank++)
        {
            string merge = CString(merges[rank]);
            int space = merge.Length > 1 ? merge.IndexOf(' ', 1) : -1;
            if (space < 0)
                continue; // llama.cpp records an ("", "") pair, which no symbol pair can match
            if (!TryAlphabetBytes(merge[..space], out byte[]? left) || !TryAlphabetBytes(merge[(space + 1)..], out byte[]? right))
                continue; // a side outside the byte alphabet never occurs in byte-level text
            if (left.Length == 0 || right.Length == 0)
                continue;
            int l = Intern(left), r = Intern(right);
            int result = Intern([.. left, .. right]);
            _merges.TryAdd(Key(l, r), (rank, result));
        }

        // Fallback for a symbol that is no token: llama.cpp looks up each byte of its alphabet text as a one-byte
        // token, which can only exist for the printable ASCII bytes (the others are two-byte characters).
        for (int b = 0; b < 256; b++)
        {
            char c = ByteToChar[b];
            _byteFallback[b] = c < 0x80 && TryGetTokenId(c.ToString(), out int id) ? id : -1;
        }
    }

    private protected override byte[] NormalPiece(string text)
    {
        // llama_decode_text: each character back to its byte; a character outside the alphabet is spelled out.
        var bytes = new List<byte>(text.Length);
        Span<byte> utf8 = stackalloc byte[4];
        foreach (Rune rune in text.EnumerateRunes())
        {
            if (rune.Value < CharToByte.Length && CharToByte[rune.Value] >= 0)
            {
                bytes.Add((byte)CharToByte[rune.Value]);
                continue;
            }
            int n = rune.EncodeToUtf8(utf8);
            var unknown = new StringBuilder("[UNK_BYTE_0x");
            for (int i = 0; i < n; i++)
                unknown.Append(utf8[i].ToString("x2", System.Globalization.CultureInfo.InvariantCulture));
            unknown.Append(text).Append(']');
            bytes.AddRange(Encoding.UTF8.GetBytes(unknown.ToString()));
        }
        return [.. bytes];
    }

    private protected override void EncodeText(ReadOnlySpan<char> text, bool afterSpecial, List<int> output)
    {
        Workspace ws = t_workspace ??= new Workspace();
        int count = ws.LoadCodepoints(text);
        ReadOnlySpan<int> cps = ws.Codepoints.AsSpan(0, count);
        List<int> words = PreTokenizer.Split(_pre, cps, ws.WordsA, ws.WordsB);
        int start = 0;
        foreach (int length in words)
        {
            int byteCount = ws.LoadUtf8(cps.Slice(start, length));
            start += length;
            ReadOnlySpan<byte> word = ws.Bytes.AsSpan(0, byteCount);
            if (_ignoreMerges && _symbolsBySpan.TryGetValue(word, out int whole) && _symbolToken[whole] >= 0)
            {
                output.Add(_symbolToken[whole]);
                continue;
            }
            if (_cacheBySpan.TryGetValue(word, out int[]? cached))
            {
                output.AddRange(cached);
                continue;
            }
            int before = output.Count;
            Merge(word, ws, output);
            if (_cache.Count < MaxCachedWords)
                _cache.TryAdd(word.ToArray(), [.. output.GetRange(before, output.Count - before)]);
        }
    }

    /// <summary>BPE on one word's bytes (N), appending its tokens.</summary>
    private void Merge(ReadOnlySpan<byte> word, Workspace ws, List<int> output)
    {
        int n = word.Length;
        ws.EnsureSymbols(n);
        int[] sym = ws.Symbol, prev = ws.Prev, next = ws.Next, len = ws.Length;
        for (int i = 0; i < n; i++)
        {
            sym[i] = _byteSymbol[word[i]];
            prev[i] = i - 1;
            next[i] = i + 1 < n ? i + 1 : -1;
            len[i] = 1;
        }
        PriorityQueue<Bigram, (int Rank, int Left)> queue = ws.Queue;
        queue.Clear();
        for (int i = 1; i < n; i++)
            Enqueue(queue, sym, i - 1, i);

        while (queue.TryDequeue(out Bigram bigram, out _))
        {
            int left = bigram.Left, right = bigram.Right;
            if (len[left] == 0 || len[right] == 0 || sym[left] != bigram.LeftSymbol || sym[right] != bigram.RightSymbol)
                continue; // outdated: one side was merged away or has grown since the pair was queued
            sym[left] = bigram.Result;
            len[left] += len[right];
            len[right] = 0;
            next[left] = next[right];
            if (next[right] >= 0)
                prev[next[right]] = left;
            if (prev[left] >= 0)
                Enqueue(queue, sym, prev[left], left);
            if (next[left] >= 0)
                Enqueue(queue, sym, left, next[left]);
        }

        for (int i = 0; i != -1; i = next[i])
        {
            int token = _symbolToken[sym[i]];
            if (token >= 0)
            {
                output.Add(token);
                continue;
            }
            foreach (byte b in _symbolBytes[sym[i]])
                if (_byteFallback[b] >= 0)
                    output.Add(_byteFallback[b]);
        }
    }

    private void Enqueue(PriorityQueue<Bigram, (int, int)> queue, int[] sym, int left, int right)
    {
        if (_merges.TryGetValue(Key(sym[left], sym[right]), out (int Rank, int Result) merge))
            queue.Enqueue(new Bigram(left, right, sym[left], sym[right], merge.Result), (merge.Rank, left));
    }

    private static long Key(int left, int right) => ((long)left << 32) | (uint)right;

    private int Intern(byte[] bytes)
    {
        if (_symbols.TryGetValue(bytes, out int id))
            return id;
        id = _symbolBytes.Count;
        _symbols.Add(bytes, id);
        _symbolBytes.Add(bytes);
        _symbolToken.Add(-1);
        return id;
    }

    /// <summary>The bytes a text in GPT-2's byte alphabet stands for; false when a character is outside it.</summary>
    private static bool TryAlphabetBytes(string text, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out byte[]? bytes)
    {
        bytes = new byte[text.Length];
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (c >= CharToByte.Length || CharToByte[c] < 0)
            {
                bytes = null;
                return false;
            }
            bytes[i] = (byte)CharToByte[c];
        }
        return true;
    }

    private static char[] BuildByteToChar()
    {
        var map = new char[256];
        var direct = new bool[256];
        for (int b = '!'; b <= '~'; b++)
            direct[b] = true;
        for (int b = 0xA1; b <= 0xAC; b++)
            direct[b] = true;
        for (int b = 0xAE; b <= 0xFF; b++)
            direct[b] = true;
        int shifted = 0;
        for (int b = 0; b < 256; b++)
            map[b] = direct[b] ? (char)b : (char)(256 + shifted++);
        return map;
    }

    private static short[] BuildCharToByte()
    {
        var map = new short[0x144];
        Array.Fill(map, (short)-1);
        for (int b = 0; b < 256; b++)
            map[ByteToChar[b]] = (short)b;
        return map;
    }

    private readonly record struct Bigram(int Left, int Right, int LeftSymbol, int RightSymbol, int Result);

    /// <summary>Per-thread buffers reused across calls, so that encoding allocates nothing per word.</summary>
    private sealed class Workspace
    {
        public int[] Codepoints = new int[256];
        public byte[] Bytes = new byte[256];
        public int[] Symbol = new int[64], Prev = new int[64], Next = new int[64], Length = new int[64];
        public readonly List<int> WordsA = [], WordsB = [];
        public readonly PriorityQueue<Bigram, (int Rank, int Left)> Queue = new();

        /// <summary>Code points of <paramref name="text"/>; unpaired surrogates become U+FFFD as in UTF-8 conversion.</summary>
        public int LoadCodepoints(ReadOnlySpan<char> text)
        {
            if (Codepoints.Length < text.Length)
                Codepoints = new int[Math.Max(text.Length, Codepoints.Length * 2)];
            int count = 0;
            while (!text.IsEmpty)
            {
                Rune.DecodeFromUtf16(text, out Rune rune, out int consumed);
                Codepoints[count++] = rune.Value;
                text = text[consumed..];
            }
            return count;
        }

        public int LoadUtf8(ReadOnlySpan<int> cps)
        {
            if (Bytes.Length < cps.Length * 4)
                Bytes = new byte[Math.Max(cps.Length * 4, Bytes.Length * 2)];
            int count = 0;
            foreach (int cp in cps)
                count += new Rune(cp).EncodeToUtf8(Bytes.AsSpan(count));
            return count;
        }

        public void EnsureSymbols(int n)
        {
            if (Symbol.Length >= n)
                return;
            int size = Math.Max(n, Symbol.Length * 2);
            Symbol = new int[size];
            Prev = new int[size];
            Next = new int[size];
            Length = new int[size];
        }
    }
}

/// <summary>Ordinal equality of byte strings, with span lookups.</summary>
internal sealed class ByteStringComparer : IEqualityComparer<byte[]>, IAlternateEqualityComparer<ReadOnlySpan<byte>, byte[]>
{
    public static readonly ByteStringComparer Instance = new();

    public bool Equals(byte[]? x, byte[]? y) => x is null ? y is null : y is not null && x.AsSpan().SequenceEqual(y);

    public int GetHashCode(byte[] obj) => GetHashCode((ReadOnlySpan<byte>)obj);

    public bool Equals(ReadOnlySpan<byte> alternate, byte[] other) => alternate.SequenceEqual(other);

    public int GetHashCode(ReadOnlySpan<byte> alternate)
    {
        var hash = new HashCode();
        hash.AddBytes(alternate);
        return hash.ToHashCode();
    }

    public byte[] Create(ReadOnlySpan<byte> alternate) => alternate.ToArray();
}
