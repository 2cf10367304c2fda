using System.Text;
using ModelSmith.Tokenization;

namespace ModelSmith.Tests.Tokenization;

public sealed class ByteLevelBpeTests
{
    public static TheoryData<string> PreTokenizers => ["gpt-2", "default", "llama3"];

    [Theory]
    [MemberData(nameof(PreTokenizers))]
    public void Decode_of_encode_gives_back_every_text(string pre)
    {
        Tokenizer tokenizer = Tokenizer.Create(TestVocabularies.Gpt2(pre));
        foreach (string text in TestVocabularies.Texts)
            Assert.Equal(text, tokenizer.Decode(tokenizer.Encode(text)));
    }

    [Fact]
    public void Gpt2_ids_match_microsoft_ml_tokenizers_tiktoken_gpt2()
    {
        // Same vocabulary, same GPT-2 regex (run by .NET's regex engine there), merges recovered from the ranks.
        Tokenizer tokenizer = Tokenizer.Create(TestVocabularies.Gpt2("gpt-2"));
        foreach (string text in TestVocabularies.Texts)
        {
            int[] expected = [.. TestVocabularies.Tiktoken.EncodeToIds(text)];
            Assert.Equal(expected, tokenizer.Encode(text, addSpecial: false));
        }
    }

    [Fact]
    public void Gpt2_vocabulary_has_the_known_size_merges_and_end_of_text()
    {
        TokenizerSpec spec = TestVocabularies.Gpt2();
        Tokenizer tokenizer = Tokenizer.Create(spec);
        Assert.Equal(50257, tokenizer.VocabularySize);
        Assert.Equal(50000, spec.Merges!.Count);
        Assert.Equal("Ġ t", spec.Merges[0]);
        Assert.Equal(50256, tokenizer.Eos);
        Assert.True(tokenizer.IsEndOfGeneration(50256));
        Assert.False(tokenizer.IsEndOfGeneration(11));
        Assert.False(tokenizer.AddBos);
        Assert.Equal([15496, 995], tokenizer.Encode("Hello world")); // GPT-2's well-known ids
    }

    [Fact]
    public void End_of_text_is_one_token_only_when_special_text_is_parsed()
    {
        Tokenizer tokenizer = Tokenizer.Create(TestVocabularies.Gpt2());
        int[] parsed = tokenizer.Encode("a<|endoftext|>b", parseSpecial: true);
        Assert.Equal([64, 50256, 65], parsed);
        int[] literal = tokenizer.Encode("a<|endoftext|>b", parseSpecial: false);
        Assert.DoesNotContain(50256, literal);
        Assert.Equal("a<|endoftext|>b", tokenizer.Decode(literal));
        Assert.Equal("ab", tokenizer.Decode(parsed));
        Assert.Equal("a<|endoftext|>b", tokenizer.Decode(parsed, renderSpecial: true));
    }

    [Fact]
    public void Lower_ranked_merges_apply_first_and_ties_go_leftmost()
    {
        // "abc": with "b c" ranked before "a b" the word becomes a + bc; the other way round ab + c, then abc.
        Assert.Equal(["a", "bc"], Pieces(Tiny(["b c", "a b", "ab c"]), "abc"));
        Assert.Equal(["abc"], Pieces(Tiny(["a b", "b c", "ab c"]), "abc"));
        // "aaaa" with the single merge "a a": leftmost pairs first, giving aa + aa (not a + aa + a).
        Assert.Equal(["aa", "aa"], Pieces(Tiny(["a a"]), "aaaa"));
        Assert.Equal(["aa", "aa", "a"], Pieces(Tiny(["a a"]), "aaaaa"));
    }

    [Fact]
    public void A_merged_symbol_missing_from_the_vocabulary_falls_back_to_its_bytes()
    {
        // merge "c d" makes "cd", which is no token: llama.cpp emits the one-byte tokens "c" and "d".
        Assert.Equal(["c", "d"], Pieces(Tiny(["c d"]), "cd"));
        // a byte with no token at all is dropped
        Tokenizer tokenizer = Tokenizer.Create(Tiny([]));
        Assert.Equal(tokenizer.Encode("ab"), tokenizer.Encode("aéb"));
    }

    [Fact]
    public void User_defined_tokens_are_split_out_even_without_parsing_special_text()
    {
        TokenizerSpec spec = Tiny(["a b"]);
        var tokens = spec.Tokens.ToList();
        var types = spec.TokenTypes!.ToList();
        tokens.Add("<sep>");
        types.Add(TokenType.UserDefined);
        Tokenizer tokenizer = Tokenizer.Create(spec with { Tokens = tokens, TokenTypes = types });
        int sep = tokens.Count - 1;
        int[] ids = tokenizer.Encode("ab<sep>ab", parseSpecial: false);
        Assert.Equal(3, ids.Length);
        Assert.Equal(sep, ids[1]);
        Assert.Equal("ab<sep>ab", tokenizer.Decode(ids));
    }

    [Fact]
    public void Stream_decoder_holds_back_incomplete_utf8_until_the_character_is_complete()
    {
        Tokenizer tokenizer = Tokenizer.Create(TestVocabularies.Gpt2());
        const string text = "go 🚀 now 日本";
        int[] ids = tokenizer.Encode(text);
        TokenStreamDecoder decoder = tokenizer.CreateStreamDecoder();
        var pieces = new List<string>();
        foreach (int id in ids)
            pieces.Add(decoder.Append(id));
        pieces.Add(decoder.Flush());
        Assert.Equal(text, string.Concat(pieces));
        Assert.All(pieces, p => Assert.DoesNotContain('\uFFFD', p));
        // the rocket is several byte-level tokens: some of them produce no text on their own
        Assert.Contains(pieces, p => p.Length == 0);
    }

    [Fact]
    public void Token_pieces_are_the_raw_bytes_of_the_byte_alphabet()
    {
        Tokenizer tokenizer = Tokenizer.Create(TestVocabularies.Gpt2());
        Assert.Equal(" world"u8.ToArray(), tokenizer.TokenToPiece(995).ToArray());
        Assert.Equal("Ġworld", tokenizer.TokenText(995));
        Assert.Equal(0, tokenizer.TokenToPiece(50256).Length);
        Assert.Equal("<|endoftext|>"u8.ToArray(), tokenizer.TokenToPiece(50256, renderSpecial: true).ToArray());
        Assert.Equal(TokenType.Control, tokenizer.GetTokenType(50256));
    }

    [Fact]
    public void Llama3_pre_tokenizer_adds_bos_by_default_and_keeps_whole_word_tokens()
    {
        TokenizerSpec spec = TestVocabularies.Gpt2("llama3") with { AddBos = null, BosId = 50256 };
        Tokenizer tokenizer = Tokenizer.Create(spec);
        Assert.True(tokenizer.AddBos);
        Assert.Equal(50256, tokenizer.Encode("x")[0]);
    }

    [Fact]
    public void Unknown_pre_tokenizer_and_missing_merges_are_rejected_with_the_key_named()
    {
        var e = Assert.Throws<NotSupportedException>(() => Tokenizer.Create(Tiny([]) with { Pre = "no-such-pre" }));
        Assert.Contains("tokenizer.ggml.pre", e.Message);
        var m = Assert.Throws<ArgumentException>(() => Tokenizer.Create(Tiny([]) with { Merges = null }));
        Assert.Contains("tokenizer.ggml.merges", m.Message);
        var d = Assert.Throws<ArgumentException>(() => Tokenizer.Create(Tiny([]) with { Tokens = ["a", "b", "a"], TokenTypes = null }));
        Assert.Contains("duplicate token", d.Message);
    }

    /// <summary>A gpt2 vocabulary of "a".."d" and every two- and three-letter string of them, with the given merges.</summary>
    private static TokenizerSpec Tiny(string[] merges)
    {
        var tokens = new List<string> { "a", "b", "c", "d" };
        foreach (string x in new[] { "aa", "ab", "bc", "abc" })
            tokens.Add(x);
        return new TokenizerSpec
        {
            Model = "gpt2",
            Pre = "gpt-2",
            Tokens = tokens,
            TokenTypes = [.. tokens.Select(_ => TokenType.Normal)],
            Merges = merges,
        };
    }

    private static string[] Pieces(TokenizerSpec spec, string text)
    {
        Tokenizer tokenizer = Tokenizer.Create(spec);
        return [.. tokenizer.Encode(text).Select(tokenizer.TokenText)];
    }
}
