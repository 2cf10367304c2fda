using System.Runtime.InteropServices;
using System.Text;

namespace ModelSmith.Tokenization;

/// <summary>
/// Learns a byte-level BPE vocabulary (GGUF <c>gpt2</c> model) from text, so that <see cref="Tokenizer.Create"/>
/// and llama.cpp tokenize with it exactly as training segmented the words.
/// <para>
/// Words are what the vocabulary's own pre-tokenizer (<see cref="PreTokenizer"/>, llama.cpp's splitter) makes of
/// the text, after cutting the text at each special token. Each distinct word is stored once with its count, as a
/// sequence of symbols, starting from one symbol per UTF-8 byte. Then, until the vocabulary is full: take the
/// adjacent symbol pair with the largest count (summed over words, weighted by word count), record the merge
/// "left right", give the concatenation a token id (or reuse the id of a token with that text), and replace every
/// occurrence of the pair in every word holding it, leftmost first (so "a a a" with merge "a a" gives "aa a",
/// which is also what the tokenizer's leftmost rule does).
/// </para>
/// <para>
/// Ties: of pairs with equal counts, the one with the smaller left token id wins, then the smaller right id. Ids
/// are assigned in a fixed order (bytes in GPT-2's alphabet order, then merges in order), so the result depends
/// only on the texts (as a multiset of words) and the options: never on hashing, timing or thread count.
/// </para>
/// <para>
/// Cost: words are counted once; pair counts are then kept up to date incrementally. A merge visits only the
/// words that hold its pair (an index from pair to word ids, appended to as merges create pairs), and changes
/// only the counts of the pairs around each occurrence. The best pair comes from a max-heap keyed by (count,
/// pair) with lazy updates: counts of queued pairs only ever fall, or the pair gets pushed again with its new
/// count, so an entry whose stored count is still current when it reaches the top is the true maximum, and a
/// stale one is pushed back with its current count.
/// </para>
/// </summary>
public static class BpeTrainer
{
    /// <summary>
    /// The vocabulary learned from <paramref name="texts"/>: 256 byte tokens (GPT-2's byte-to-unicode alphabet, in
    /// the order of their characters, which is GPT-2's), then one token per learned merge result in the order
    /// learned, then <see cref="BpeTrainerOptions.SpecialTokens"/> as control tokens. BOS = EOS = the first special
    /// token; neither is added by Encode (<c>add_bos_token</c> = <c>add_eos_token</c> = false).
    /// </summary>
    public static TokenizerSpec Train(IEnumerable<string> texts, BpeTrainerOptions options,
        Action<BpeTrainerProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(texts);
        ArgumentNullException.ThrowIfNull(options);
        PreTokenizerKind kind = Validate(options);

        var counter = new WordCounter(kind, options.SpecialTokens);
        long read = 0;
        foreach (string text in texts)
        {
            ArgumentNullException.ThrowIfNull(text, nameof(texts));
            counter.Add(text);
            if ((++read & 255) == 0)
            {
                cancellationToken.ThrowIfCancellationRequested();
                progress?.Invoke(new BpeTrainerProgress(BpeTrainerStage.CountingWords, read, -1, counter.Count));
            }
        }
        progress?.Invoke(new BpeTrainerProgress(BpeTrainerStage.CountingWords, read, -1, counter.Count));

        var merger = new Merger(counter);
        int target = options.VocabSize - options.SpecialTokens.Count;
        merger.Run(target, options.MinFrequency, progress, cancellationToken);

        var tokens = new List<string>(merger.Texts.Count + options.SpecialTokens.Count);
        var types = new List<TokenType>(tokens.Capacity);
        foreach (string text in merger.Texts)
        {
            tokens.Add(text);
            types.Add(TokenType.Normal);
        }
        foreach (string special in options.SpecialTokens)
        {
            if (merger.Ids.ContainsKey(special))
                throw new ArgumentException($"special token '{special}' is also a learned token; choose a special token text that cannot occur as a word (e.g. '<|name|>').", nameof(options));
            tokens.Add(special);
            types.Add(TokenType.Control);
        }
        int? endOfText = options.SpecialTokens.Count > 0 ? merger.Texts.Count : null;
        return new TokenizerSpec
        {
            Model = "gpt2",
            Pre = options.PreTokenizer,
            Tokens = tokens,
            TokenTypes = types,
            Merges = merger.Merges,
            BosId = endOfText,
            EosId = endOfText,
            AddBos = false,
            AddEos = false,
        };
    }

    private static PreTokenizerKind Validate(BpeTrainerOptions options)
    {
        if (string.IsNullOrEmpty(options.PreTokenizer))
            throw new ArgumentException("PreTokenizer is empty; use 'gpt-2' or 'default'.", nameof(options));
        PreTokenizerKind kind = PreTokenizer.Parse(options.PreTokenizer);
        if (kind is not (PreTokenizerKind.Gpt2 or PreTokenizerKind.Default))
            throw new ArgumentException($"PreTokenizer '{options.PreTokenizer}' cannot be trained for: its vocabularies bypass merges for whole words; use 'gpt-2' or 'default'.", nameof(options));
        ArgumentNullException.ThrowIfNull(options.SpecialTokens, nameof(options));
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (string special in options.SpecialTokens)
        {
            if (string.IsNullOrEmpty(special))
                throw new ArgumentException("a special token is empty; special tokens need text such as '<|endoftext|>'.", nameof(options));
            if (special.Contains('\0', StringComparison.Ordinal))
                throw new ArgumentException($"special token '{special.Replace("\0", "\\0", StringComparison.Ordinal)}' contains NUL, which GGUF readers take as the end of the text.", nameof(options));
            if (!seen.Add(special))
                throw new ArgumentException($"special token '{special}' is listed twice.", nameof(options));
        }
        int minimum = 256 + options.SpecialTokens.Count;
        if (options.VocabSize < minimum)
            throw new ArgumentOutOfRangeException(nameof(options), options.VocabSize,
                $"VocabSize {options.VocabSize} is too small: the 256 byte tokens and {options.SpecialTokens.Count} special tokens need at least {minimum}.");
        if (options.MinFrequency < 1)
            throw new ArgumentOutOfRangeException(nameof(options), options.MinFrequency, "MinFrequency must be at least 1.");
        return kind;
    }

    /// <summary>Distinct words (UTF-8 bytes) of the texts with their counts, in order of first occurrence.</summary>
    internal sealed class WordCounter
    {
        private readonly PreTokenizerKind _kind;
        private readonly string[] _specials;
        private readonly int[] _nextSpecial;
        private readonly Dictionary<byte[], long> _counts = new(ByteStringComparer.Instance);
        private readonly Dictionary<byte[], long>.AlternateLookup<ReadOnlySpan<byte>> _countsBySpan;
        private readonly List<int> _wordsA = [], _wordsB = [];
        private int[] _codepoints = new int[1024];
        private byte[] _bytes = new byte[256];

        public WordCounter(PreTokenizerKind kind, IReadOnlyList<string> specials)
        {
            _kind = kind;
            _specials = [.. specials];
            _nextSpecial = new int[_specials.Length];
            _countsBySpan = _counts.GetAlternateLookup<ReadOnlySpan<byte>>();
        }

        public int Count => _counts.Count;

        public Dictionary<byte[], long> Counts => _counts;

        /// <summary>Counts the words of <paramref name="text"/>, skipping special-token texts in it (leftmost, then longest).</summary>
        public void Add(string text)
        {
            if (_specials.Length == 0)
            {
                AddSegment(text);
                return;
            }
            Array.Fill(_nextSpecial, -2); // -2: not searched yet; -1: no further occurrence
            int pos = 0;
            while (pos < text.Length)
            {
                int best = -1, bestLength = 0;
                for (int k = 0; k < _specials.Length; k++)
                {
                    if (_nextSpecial[k] == -2 || (_nextSpecial[k] >= 0 && _nextSpecial[k] < pos))
                        _nextSpecial[k] = text.IndexOf(_specials[k], pos, StringComparison.Ordinal);
                    int at = _nextSpecial[k];
                    if (at >= 0 && (best < 0 || at < best || (at == best && _specials[k].Length > bestLength)))
                    {
                        best = at;
                        bestLength = _specials[k].Length;
                    }
                }
                if (best < 0)
                {
                    AddSegment(text.AsSpan(pos));
                    return;
                }
                AddSegment(text.AsSpan(pos, best - pos));
                pos = best + bestLength;
            }
        }

        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
        private void AddSegment(ReadOnlySpan<char> text)
        {
            if (text.IsEmpty)
                return;
            if (_codepoints.Length < text.Length)
                _codepoints = new int[Math.Max(text.Length, _codepoints.Length * 2)];
            int n = 0;
            // Unpaired surrogates become U+FFFD, as in the tokenizer's UTF-8 conversion.
            while (!text.IsEmpty)
            {
                Rune.DecodeFromUtf16(text, out Rune rune, out int consumed);
                _codepoints[n++] = rune.Value;
                text = text[consumed..];
            }
            ReadOnlySpan<int> cps = _codepoints.AsSpan(0, n); // (N)
            List<int> words = PreTokenizer.Split(_kind, cps, _wordsA, _wordsB);
            int start = 0;
            foreach (int length in words)
            {
                ReadOnlySpan<int> word = cps.Slice(start, length);
                start += length;
                if (_bytes.Length < length * 4)
                    _bytes = new byte[Math.Max(length * 4, _bytes.Length * 2)];
                int count = 0;
                foreach (int cp in word)
                    count += new Rune(cp).EncodeToUtf8(_bytes.AsSpan(count));
                ref long slot = ref CollectionsMarshal.GetValueRefOrAddDefault(_countsBySpan, _bytes.AsSpan(0, count), out _);
                slot++;
            }
        }
    }

    /// <summary>The merge loop over counted words; see the class comment for the method.</summary>
    internal sealed class Merger
    {
        private readonly int[] _symbols;      // every word's symbols, word w at [_start[w], _start[w] + _length[w])
        private readonly int[] _start;
        private readonly int[] _length;
        private readonly long[] _count;
        private readonly int[] _visited;      // merge step that last visited each word (a word is listed once per pair creation)
        private readonly Dictionary<long, long> _pairCounts = [];
        private readonly Dictionary<long, List<int>> _wordsOfPair = [];
        private readonly PriorityQueue<long, (long NegativeCount, long Pair)> _queue;
        private readonly HashSet<long> _merged = [];
        private readonly HashSet<long> _created = [];

        public Merger(WordCounter counter)
        {
            // Byte b is token id = the rank of its alphabet character, which is GPT-2's order.
            char[] alphabet = [.. ByteLevelBpeTokenizer.ByteToChar];
            Array.Sort(alphabet);
            var byteToken = new int[256];
            for (int id = 0; id < 256; id++)
            {
                string text = alphabet[id].ToString();
                Texts.Add(text);
                Ids.Add(text, id);
            }
            for (int b = 0; b < 256; b++)
                byteToken[b] = Ids[ByteLevelBpeTokenizer.ByteToChar[b].ToString()];

            int words = counter.Count;
            long total = 0;
            foreach (byte[] word in counter.Counts.Keys)
                total += word.Length;
            if (total > Array.MaxLength)
                throw new InvalidOperationException($"the texts hold {total} bytes of distinct words, more than one array can index ({Array.MaxLength}); train on a sample.");
            _symbols = new int[total];
            _start = new int[words];
            _length = new int[words];
            _count = new long[words];
            _visited = new int[words];
            int w = 0, at = 0;
            foreach ((byte[] word, long count) in counter.Counts)
            {
                _start[w] = at;
                _length[w] = word.Length;
                _count[w] = count;
                for (int i = 0; i < word.Length; i++)
                    _symbols[at + i] = byteToken[word[i]];
                for (int i = 0; i + 1 < word.Length; i++)
                {
                    long pair = Pair(_symbols[at + i], _symbols[at + i + 1]);
                    CollectionsMarshal.GetValueRefOrAddDefault(_pairCounts, pair, out _) += count;
                    AddWord(pair, w);
                }
                at += word.Length;
                w++;
            }
            var initial = new List<(long, (long, long))>(_pairCounts.Count);
            foreach ((long pair, long count) in _pairCounts)
                initial.Add((pair, (-count, pair)));
            _queue = new PriorityQueue<long, (long, long)>(initial);
        }

        /// <summary>Token texts by id (GPT-2 byte alphabet).</summary>
        public List<string> Texts { get; } = new(8192);

        /// <summary>Token ids by text.</summary>
        public Dictionary<string, int> Ids { get; } = new(StringComparer.Ordinal);

        /// <summary>Merges in the order learned, "left right".</summary>
        public List<string> Merges { get; } = [];

        /// <summary>Merges until there are <paramref name="target"/> tokens or no pair occurs <paramref name="minFrequency"/> times.</summary>
        public void Run(int target, int minFrequency, Action<BpeTrainerProgress>? progress, CancellationToken cancellationToken)
        {
            int toLearn = Math.Max(0, target - Texts.Count);
            int step = 0;
            while (Texts.Count < target && _queue.TryDequeue(out long pair, out (long NegativeCount, long Pair) key))
            {
                long count = _pairCounts.GetValueOrDefault(pair);
                if (count != -key.NegativeCount)
                {
                    if (count > 0)
                        _queue.Enqueue(pair, (-count, pair));
                    continue;
                }
                if (count < minFrequency)
                    break;

                int left = (int)(pair >> 32), right = (int)pair;
                string text = Texts[left] + Texts[right];
                if (!Ids.TryGetValue(text, out int result))
                {
                    result = Texts.Count;
                    Texts.Add(text);
                    Ids.Add(text, result);
                    if (progress is not null && ((Texts.Count - 256) % 64 == 0 || Texts.Count == target))
                        progress(new BpeTrainerProgress(BpeTrainerStage.Merging, Texts.Count - 256, toLearn, _count.Length));
                }
                // A pair merged before can meet again when a later merge recreates one of its symbols (two merges
                // with the same result text); its rank is the first one, so the merge is applied but not listed again.
                if (_merged.Add(pair))
                    Merges.Add(Texts[left] + " " + Texts[right]);

                step++;
                if ((step & 63) == 0)
                    cancellationToken.ThrowIfCancellationRequested();
                Apply(pair, left, right, result, step);
            }
            progress?.Invoke(new BpeTrainerProgress(BpeTrainerStage.Merging, Texts.Count - 256, toLearn, _count.Length));
        }

        /// <summary>Replaces (left, right) by result in every word holding it, updating pair counts and the index.</summary>
        private void Apply(long pair, int left, int right, int result, int step)
        {
            if (!_wordsOfPair.Remove(pair, out List<int>? words))
                return;
            _created.Clear();
            foreach (int w in words)
            {
                if (_visited[w] == step)
                    continue;
                _visited[w] = step;
                MergeWord(w, left, right, result);
            }
            _pairCounts.Remove(pair);
            foreach (long created in _created)
                if (_pairCounts.TryGetValue(created, out long count) && count > 0)
                    _queue.Enqueue(created, (-count, created));
        }

        /// <summary>
        /// One word, in place, left to right: at each occurrence of (a, b) the pairs (prev, a) and (b, next) lose
        /// the word's count and (prev, c), (c, next) gain it, where prev is the symbol already written (itself a c
        /// when two occurrences touch) and next the one not yet read.
        /// </summary>
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
        private void MergeWord(int w, int a, int b, int c)
        {
            Span<int> s = _symbols.AsSpan(_start[w], _length[w]); // (n) symbols
            long count = _count[w];
            int n = s.Length, i = 0, j = 0;
            while (i < n)
            {
                if (i + 1 < n && s[i] == a && s[i + 1] == b)
                {
                    if (j > 0)
                    {
                        Add(Pair(s[j - 1], a), -count);
                        Created(Pair(s[j - 1], c), count, w);
                    }
                    if (i + 2 < n)
                    {
                        Add(Pair(b, s[i + 2]), -count);
                        Created(Pair(c, s[i + 2]), count, w);
                    }
                    s[j++] = c;
                    i += 2;
                }
                else
                {
                    s[j++] = s[i++];
                }
            }
            _length[w] = j;
        }

        private void Add(long pair, long delta)
        {
            ref long slot = ref CollectionsMarshal.GetValueRefOrNullRef(_pairCounts, pair);
            if (System.Runtime.CompilerServices.Unsafe.IsNullRef(ref slot))
                return;
            slot += delta;
            if (slot <= 0)
                _pairCounts.Remove(pair);
        }

        private void Created(long pair, long count, int w)
        {
            CollectionsMarshal.GetValueRefOrAddDefault(_pairCounts, pair, out _) += count;
            AddWord(pair, w);
            _created.Add(pair);
        }

        private void AddWord(long pair, int w)
        {
            ref List<int>? list = ref CollectionsMarshal.GetValueRefOrAddDefault(_wordsOfPair, pair, out _);
            list ??= [];
            if (list.Count == 0 || list[^1] != w)
                list.Add(w);
        }

        private static long Pair(int left, int right) => ((long)left << 32) | (uint)right;
    }
}
