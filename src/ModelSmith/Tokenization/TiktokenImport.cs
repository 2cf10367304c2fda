using System.Globalization;

namespace ModelSmith.Tokenization;

/// <summary>
/// Turns a tiktoken vocabulary (byte strings with ranks, the format OpenAI publishes and Microsoft.ML.Tokenizers'
/// data packages embed) into GGUF <c>gpt2</c> tokenizer metadata: token id = rank, token text = its bytes in GPT-2's
/// byte alphabet, and the merge list that tiktoken leaves implicit.
/// </summary>
public static class TiktokenImport
{
    /// <summary>
    /// Reads tiktoken ranks: one token per line as base64, optionally followed by a space and its rank (otherwise
    /// the rank is the line's position), after an optional "Capacity: N" header line.
    /// </summary>
    public static Dictionary<byte[], int> ReadRanks(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var ranks = new Dictionary<byte[], int>(ByteStringComparer.Instance);
        using var reader = new StreamReader(stream, leaveOpen: true);
        int lineNumber = 0, next = 0;
        for (string? line = reader.ReadLine(); line is not null; line = reader.ReadLine())
        {
            lineNumber++;
            if (line.Length == 0 || (lineNumber == 1 && line.StartsWith("Capacity:", StringComparison.Ordinal)))
                continue;
            int space = line.IndexOf(' ', StringComparison.Ordinal);
            byte[] bytes;
            int rank = next;
            try
            {
                bytes = Convert.FromBase64String(space < 0 ? line : line[..space]);
                if (space >= 0)
                    rank = int.Parse(line.AsSpan(space + 1), NumberStyles.None, CultureInfo.InvariantCulture);
            }
            catch (FormatException e)
            {
                throw new FormatException($"tiktoken line {lineNumber} ('{line}') is not 'base64 [rank]'.", e);
            }
            if (!ranks.TryAdd(bytes, rank))
                throw new FormatException($"tiktoken line {lineNumber} repeats the token of rank {ranks[bytes]}.");
            next = rank + 1;
        }
        return ranks;
    }

    /// <summary>
    /// The <c>gpt2</c> spec of tiktoken <paramref name="ranks"/> plus <paramref name="specialTokens"/>. Each
    /// multi-byte token's merge is recovered the way its rank implies: byte-pair merging of its bytes with only
    /// lower-ranked tokens ends in exactly two parts, the merge "left right", whose rank is the token's. Special
    /// tokens become control tokens; the lowest-numbered one is BOS and EOS (for GPT-2, &lt;|endoftext|&gt;).
    /// </summary>
    public static TokenizerSpec ToSpec(IReadOnlyDictionary<byte[], int> ranks, IReadOnlyDictionary<string, int>? specialTokens, string pre = "gpt-2")
    {
        ArgumentNullException.ThrowIfNull(ranks);
        IReadOnlyDictionary<string, int> specials = specialTokens ?? new Dictionary<string, int>();
        int n = ranks.Count + specials.Count;

        var tokens = new string?[n];
        var types = new TokenType[n];
        var byRank = new byte[]?[n];
        foreach ((byte[] bytes, int rank) in ranks)
        {
            if (rank < 0 || rank >= n || tokens[rank] is not null)
                throw new ArgumentException($"tiktoken rank {rank} is out of range or repeated; ranks must be 0..{n - 1} with the special tokens.", nameof(ranks));
            tokens[rank] = ToAlphabet(bytes);
            types[rank] = TokenType.Normal;
            byRank[rank] = bytes;
        }
        int firstSpecial = -1;
        foreach ((string text, int id) in specials.OrderBy(s => s.Value))
        {
            if (id < 0 || id >= n || tokens[id] is not null)
                throw new ArgumentException($"special token '{text}' has id {id}, which is out of range or taken by a ranked token.", nameof(specialTokens));
            tokens[id] = text;
            types[id] = TokenType.Control;
            if (firstSpecial < 0)
                firstSpecial = id;
        }

        var byBytes = new Dictionary<byte[], int>(ranks, ByteStringComparer.Instance);
        var lookup = byBytes.GetAlternateLookup<ReadOnlySpan<byte>>();
        var merges = new List<string>(n);
        var parts = new List<int>();
        for (int rank = 0; rank < n; rank++)
        {
            byte[]? bytes = byRank[rank];
            if (bytes is null || bytes.Length < 2)
                continue;
            int split = SplitByLowerRanks(bytes, rank, lookup, parts);
            if (split > 0)
                merges.Add(ToAlphabet(bytes.AsSpan(0, split)) + " " + ToAlphabet(bytes.AsSpan(split)));
        }

        return new TokenizerSpec
        {
            Model = "gpt2",
            Pre = pre,
            Tokens = tokens!,
            TokenTypes = types,
            Merges = [.. merges],
            BosId = firstSpecial >= 0 ? firstSpecial : null,
            EosId = firstSpecial >= 0 ? firstSpecial : null,
            AddBos = false,
            AddEos = false,
        };
    }

    /// <summary>Text of <paramref name="bytes"/> in GPT-2's byte alphabet.</summary>
    public static string ToAlphabet(ReadOnlySpan<byte> bytes)
    {
        var chars = new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++)
            chars[i] = ByteLevelBpeTokenizer.ByteToChar[bytes[i]];
        return new string(chars);
    }

    /// <summary>
    /// Merges the bytes of a token (L) pairwise, always the adjacent pair whose concatenation has the lowest rank
    /// below <paramref name="rank"/>; returns the length of the left part when two parts remain, else 0.
    /// </summary>
    private static int SplitByLowerRanks(byte[] bytes, int rank, Dictionary<byte[], int>.AlternateLookup<ReadOnlySpan<byte>> lookup, List<int> parts)
    {
        // parts holds the start offset of each part; part i spans [parts[i], parts[i + 1]).
        parts.Clear();
        for (int i = 0; i < bytes.Length; i++)
            parts.Add(i);
        while (parts.Count > 2)
        {
            int best = -1, bestRank = rank;
            for (int i = 0; i + 1 < parts.Count; i++)
            {
                int end = i + 2 < parts.Count ? parts[i + 2] : bytes.Length;
                if (lookup.TryGetValue(bytes.AsSpan(parts[i], end - parts[i]), out int r) && r < bestRank)
                {
                    best = i;
                    bestRank = r;
                }
            }
            if (best < 0)
                return 0;
            parts.RemoveAt(best + 1);
        }
        return parts.Count == 2 ? parts[1] : 0;
    }
}
