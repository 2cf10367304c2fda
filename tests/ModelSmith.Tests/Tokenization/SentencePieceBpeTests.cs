using System.Text;
using ModelSmith.Tokenization;

namespace ModelSmith.Tests.Tokenization;

public sealed class SentencePieceBpeTests
{
    [Fact]
    public void Decode_of_encode_gives_back_every_text()
    {
        Tokenizer tokenizer = Tokenizer.Create(TestVocabularies.Llama);
        foreach (string text in TestVocabularies.Texts)
        {
            int[] ids = tokenizer.Encode(text);
            Assert.Equal(tokenizer.Bos, ids[0]);
            Assert.Equal(text, tokenizer.Decode(ids));
            Assert.Equal(text, tokenizer.Decode(tokenizer.Encode(text, addSpecial: false)));
        }
    }

    [Fact]
    public void Spaces_are_escaped_and_a_space_is_prefixed()
    {
        Tokenizer tokenizer = Tokenizer.Create(TestVocabularies.Llama);
        string[] pieces = [.. tokenizer.Encode("Hello world", addSpecial: false).Select(tokenizer.TokenText)];
        Assert.Equal(["▁Hello", "▁world"], pieces);
        Assert.Equal([tokenizer.Bos], tokenizer.Encode(""));
        Assert.Empty(tokenizer.Encode("", addSpecial: false));
    }

    [Fact]
    public void Highest_score_merges_first_and_ties_go_leftmost()
    {
        // ▁ a b c: "ab" and "bc" tie at -1, so "ab" (leftmost) merges, then "abc" (-3) beats "▁ab" (-4).
        Assert.Equal(["▁", "abc"], Pieces(Tiny(("ab", -1), ("bc", -1), ("abc", -3), ("▁ab", -4), ("▁a", -5)), "abc"));
        // raising "bc" above "ab" changes the first merge: ▁a + bc, and "▁abc" is not a token.
        Assert.Equal(["▁a", "bc"], Pieces(Tiny(("ab", -2), ("bc", -1), ("abc", -9), ("▁a", -5)), "abc"));
    }

    [Fact]
    public void Characters_missing_from_the_vocabulary_fall_back_to_byte_tokens()
    {
        Tokenizer tokenizer = Tokenizer.Create(Tiny(("ab", -1)));
        string[] pieces = [.. tokenizer.Encode("aé", addSpecial: false).Select(tokenizer.TokenText)];
        Assert.Equal(["▁", "a", "<0xC3>", "<0xA9>"], pieces);
        Assert.Equal("aé", tokenizer.Decode(tokenizer.Encode("aé")));
    }

    [Fact]
    public void Without_byte_tokens_the_unknown_token_stands_in_for_each_byte()
    {
        TokenizerSpec noBytes = new()
        {
            Model = "llama",
            Tokens = ["<unk>", "<s>", "</s>", "▁", "a"],
            TokenTypes = [TokenType.Unknown, TokenType.Control, TokenType.Control, TokenType.Normal, TokenType.Normal],
            Scores = [0, 0, 0, -1, -2],
        };
        Tokenizer tokenizer = Tokenizer.Create(noBytes);
        Assert.Equal([1, 3, 4, 0, 0], tokenizer.Encode("aé"));
        // an out-of-range unknown id keeps llama.cpp's default (0), as llama.cpp does
        Assert.Equal(0, Tokenizer.Create(noBytes with { UnknownId = 99 }).Unknown);
    }

    [Fact]
    public void Parsed_special_tokens_split_the_text_and_restart_the_space_prefix()
    {
        Tokenizer tokenizer = Tokenizer.Create(TestVocabularies.Llama);
        int[] ids = tokenizer.Encode("Hi</s>there", addSpecial: false, parseSpecial: true);
        string[] pieces = [.. ids.Select(tokenizer.TokenText)];
        Assert.Equal(["▁Hi", "</s>", "▁there"], pieces);
        Assert.Equal("Hi</s>there", tokenizer.Decode(ids, renderSpecial: true));
        Assert.Equal("Hithere", tokenizer.Decode(ids));
        Assert.True(tokenizer.IsEndOfGeneration(tokenizer.Eos));
    }

    [Fact]
    public void Byte_tokens_stream_into_whole_characters()
    {
        Tokenizer tokenizer = Tokenizer.Create(TestVocabularies.Llama);
        const string text = "雨 🌧 rain";
        int[] ids = tokenizer.Encode(text);
        Assert.Contains(ids, id => tokenizer.GetTokenType(id) == TokenType.Byte);
        TokenStreamDecoder decoder = tokenizer.CreateStreamDecoder();
        var sb = new StringBuilder();
        foreach (int id in ids)
        {
            string part = decoder.Append(id);
            Assert.DoesNotContain('\uFFFD', part);
            sb.Append(part);
        }
        sb.Append(decoder.Flush());
        Assert.Equal(text, sb.ToString());
        Assert.Equal(new byte[] { 0xE9 }, tokenizer.TokenToPiece(3 + 0xE9).ToArray());
    }

    [Fact]
    public void Defaults_follow_llama_cpp_when_keys_are_absent()
    {
        TokenizerSpec bare = TestVocabularies.Llama with { BosId = null, EosId = null, UnknownId = null, AddBos = null, AddEos = null, AddSpacePrefix = null };
        Tokenizer tokenizer = Tokenizer.Create(bare);
        Assert.Equal((1, 2, 0), (tokenizer.Bos, tokenizer.Eos, tokenizer.Unknown));
        Assert.True(tokenizer.AddBos);
        Assert.False(tokenizer.AddEos);
        Assert.True(tokenizer.AddSpacePrefix);
        Tokenizer noPrefix = Tokenizer.Create(bare with { AddSpacePrefix = false, AddEos = true });
        string[] pieces = [.. noPrefix.Encode("Hello").Select(noPrefix.TokenText)];
        Assert.Equal(["<s>", "Hello", "</s>"], pieces);
    }

    private static TokenizerSpec Tiny(params (string Text, float Score)[] pieces)
    {
        var tokens = new List<string> { "<unk>", "<s>", "</s>" };
        var types = new List<TokenType> { TokenType.Unknown, TokenType.Control, TokenType.Control };
        var scores = new List<float> { 0, 0, 0 };
        for (int b = 0; b < 256; b++)
        {
            tokens.Add($"<0x{b:X2}>");
            types.Add(TokenType.Byte);
            scores.Add(0);
        }
        foreach (string single in new[] { "▁", "a", "b", "c" })
        {
            tokens.Add(single);
            types.Add(TokenType.Normal);
            scores.Add(-100);
        }
        foreach ((string text, float score) in pieces)
        {
            tokens.Add(text);
            types.Add(TokenType.Normal);
            scores.Add(score);
        }
        return new TokenizerSpec { Model = "llama", Tokens = tokens, TokenTypes = types, Scores = scores };
    }

    private static string[] Pieces(TokenizerSpec spec, string text)
    {
        Tokenizer tokenizer = Tokenizer.Create(spec);
        return [.. tokenizer.Encode(text, addSpecial: false).Select(tokenizer.TokenText)];
    }
}
