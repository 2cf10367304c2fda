using System.Text;

namespace ModelSmith.Tokenization;

/// <summary>
/// SentencePiece-style BPE of <c>llama</c> vocabularies, as llama.cpp's llm_tokenizer_spm_session: spaces become
/// U+2581 ("▁"), a space is prefixed at the start and after each special token when the vocabulary says so, and
/// from one symbol per character the adjacent pair whose concatenation is the highest-scoring token is merged
/// (ties: leftmost) until no adjacent pair forms a token. A final symbol that is no token (always a single
/// character) becomes its UTF-8 bytes as "&lt;0xXX&gt;" tokens, or as one-character tokens for ASCII bytes without
/// one; where neither exists llama.cpp fails (an unhandled lookup), and this tokenizer uses the unknown token.
/// <para>
/// Works on UTF-16 text: for valid text the characters, the token lookups and the merge order are those of
/// llama.cpp's UTF-8 bytes, and a queued pair is stale exactly when its total length has changed.
/// </para>
/// </summary>
internal sealed class SentencePieceBpeTokenizer : Tokenizer
{
    private const char Escape = '\u2581';
    private readonly float[] _scores;
    private readonly int[] _byteTokens = new int[256];

    [ThreadStatic]
    private static Workspace? t_workspace;

    public SentencePieceBpeTokenizer(TokenizerSpec spec)
        : base(spec, defaultBos: 1, defaultEos: 2, defaultUnknown: 0, defaultAddBos: true, defaultAddSpacePrefix: true)
    {
        int n = Texts.Length;
        _scores = new float[n];
        if (spec.Scores is { } scores)
        {
            if (scores.Count < n)
                throw new ArgumentException($"tokenizer.ggml.scores has {scores.Count} entries for {n} tokens; it needs one per token.", nameof(spec));
            for (int i = 0; i < n; i++)
                _scores[i] = scores[i];
        }
        for (int b = 0; b < 256; b++)
        {
            if (TryGetTokenId($"<0x{b:X2}>", out int id) || (b < 0x80 && TryGetTokenId(((char)b).ToString(), out id)))
                _byteTokens[b] = id;
            else
                _byteTokens[b] = -1;
        }
    }

    private protected override bool StripsPrefixSpace => AddSpacePrefix;

    private protected override byte[] NormalPiece(string text) => Encoding.UTF8.GetBytes(text.Replace(Escape, ' '));

    private protected override void EncodeText(ReadOnlySpan<char> text, bool afterSpecial, List<int> output)
    {
        Workspace ws = t_workspace ??= new Workspace();
        bool prefix = AddSpacePrefix && afterSpecial;
        int length = text.Length + (prefix ? 1 : 0);
        ws.EnsureText(length);
        Span<char> buffer = ws.Text.AsSpan(0, length);
        if (prefix)
            buffer[0] = Escape;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (char.IsSurrogate(c) && !IsPaired(text, i))
                c = '\uFFFD'; // what UTF-8 conversion makes of an unpaired surrogate
            buffer[i + (prefix ? 1 : 0)] = c == ' ' ? Escape : c;
        }

        // one symbol per character (a surrogate pair is one character)
        int count = 0;
        for (int at = 0; at < length;)
        {
            int size = char.IsHighSurrogate(buffer[at]) && at + 1 < length && char.IsLowSurrogate(buffer[at + 1]) ? 2 : 1;
            ws.EnsureSymbols(count + 1);
            ws.Start[count] = at;
            ws.Length[count] = size;
            ws.Prev[count] = count - 1;
            at += size;
            ws.Next[count] = at == length ? -1 : count + 1;
            count++;
        }
        if (count == 0)
            return;
        int[] start = ws.Start, len = ws.Length, prev = ws.Prev, next = ws.Next;

        PriorityQueue<Bigram, Bigram> queue = ws.Queue;
        queue.Clear();
        for (int i = 1; i < count; i++)
            TryAddBigram(queue, buffer, start, len, i - 1, i);

        while (queue.TryDequeue(out Bigram bigram, out _))
        {
            int left = bigram.Left, right = bigram.Right;
            if (len[left] == 0 || len[right] == 0 || len[left] + len[right] != bigram.Size)
                continue; // one side was merged away or has grown since the pair was queued
            len[left] += len[right];
            len[right] = 0;
            next[left] = next[right];
            if (next[right] >= 0)
                prev[next[right]] = left;
            TryAddBigram(queue, buffer, start, len, prev[left], left);
            TryAddBigram(queue, buffer, start, len, left, next[left]);
        }

        Span<byte> utf8 = stackalloc byte[8];
        for (int i = 0; i != -1; i = next[i])
        {
            ReadOnlySpan<char> piece = buffer.Slice(start[i], len[i]);
            if (IdsBySpan.TryGetValue(piece, out int id))
            {
                output.Add(id);
                continue;
            }
            int bytes = Encoding.UTF8.GetBytes(piece, utf8);
            for (int j = 0; j < bytes; j++)
                output.Add(ByteToken(utf8[j]));
        }
    }

    private static bool IsPaired(ReadOnlySpan<char> text, int i) => char.IsHighSurrogate(text[i])
        ? i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])
        : i > 0 && char.IsHighSurrogate(text[i - 1]);

    /// <summary>The token of byte <paramref name="b"/>; a llama vocabulary always has an unknown token in range to stand in.</summary>
    private int ByteToken(byte b) => _byteTokens[b] >= 0 ? _byteTokens[b] : Unknown;

    private void TryAddBigram(PriorityQueue<Bigram, Bigram> queue, ReadOnlySpan<char> buffer, int[] start, int[] len, int left, int right)
    {
        if (left == -1 || right == -1)
            return;
        int size = len[left] + len[right];
        if (!IdsBySpan.TryGetValue(buffer.Slice(start[left], size), out int id))
            return;
        var bigram = new Bigram(left, right, _scores[id], size);
        queue.Enqueue(bigram, bigram);
    }

    /// <summary>A candidate merge of adjacent symbols; <see cref="Size"/> is the pair's length in UTF-16 units.</summary>
    private readonly record struct Bigram(int Left, int Right, float Score, int Size);

    /// <summary>llama.cpp's llm_bigram_spm::comparator as a min-queue order: higher score first, then leftmost.</summary>
    private sealed class BigramOrder : IComparer<Bigram>
    {
        public static readonly BigramOrder Instance = new();

        public int Compare(Bigram x, Bigram y)
        {
            if (x.Score > y.Score)
                return -1;
            if (x.Score < y.Score)
                return 1;
            return x.Left.CompareTo(y.Left);
        }
    }

    /// <summary>Per-thread buffers reused across calls.</summary>
    private sealed class Workspace
    {
        public char[] Text = new char[256];
        public int[] Start = new int[256], Length = new int[256], Prev = new int[256], Next = new int[256];
        public readonly PriorityQueue<Bigram, Bigram> Queue = new(BigramOrder.Instance);

        public void EnsureText(int n)
        {
            if (Text.Length < n)
                Text = new char[Math.Max(n, Text.Length * 2)];
        }

        public void EnsureSymbols(int n)
        {
            if (Start.Length >= n)
                return;
            int size = Math.Max(n, Start.Length * 2);
            Array.Resize(ref Start, size);
            Array.Resize(ref Length, size);
            Array.Resize(ref Prev, size);
            Array.Resize(ref Next, size);
        }
    }
}
