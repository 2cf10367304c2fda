using System.Text;
using ModelSmith.Formats;
using ModelSmith.Tokenization;

namespace ModelSmith.Tests.Tokenization;

public sealed class PreTokenizerTests
{
    [Theory]
    [InlineData("Hello world", new[] { "Hello", " world" })]
    [InlineData("Hello  world", new[] { "Hello", " ", " world" })]
    [InlineData("a \n\n b", new[] { "a", " \n\n", " b" })]
    [InlineData("end   ", new[] { "end", "   " })]
    [InlineData("I'm don't we'll", new[] { "I", "'m", " don", "'t", " we", "'ll" })]
    [InlineData("x=1+22;", new[] { "x", "=", "1", "+", "22", ";" })]
    [InlineData("café 12€", new[] { "café", " 12", "€" })]
    [InlineData("🎉🚀 ok", new[] { "🎉🚀", " ok" })]
    public void Gpt2_splits_words_like_llama_cpp(string text, string[] words) =>
        Assert.Equal(words, Split(PreTokenizerKind.Gpt2, text));

    [Theory]
    [InlineData("12345 678", new[] { "123", "45", " ", "678" })]
    [InlineData("don't", new[] { "don", "'", "t" })]
    [InlineData("a~b`c", new[] { "a", "~", "b", "`", "c" })]
    [InlineData("x+=y;", new[] { "x", "+=", "y", ";" })]
    [InlineData("«¿qué?»", new[] { "«¿", "qué", "?»" })]
    public void Default_splits_punctuation_and_digit_triples_first(string text, string[] words) =>
        Assert.Equal(words, Split(PreTokenizerKind.Default, text));

    [Theory]
    [InlineData("12345", new[] { "123", "45" })]
    [InlineData("Hello WORLD's", new[] { "Hello", " WORLD", "'s" })]
    [InlineData("a\n\n  b", new[] { "a", "\n\n", " ", " b" })]
    [InlineData("x  \n", new[] { "x", "  \n" })]
    [InlineData("(foo)", new[] { "(foo", ")" })]
    public void Llama3_splits_words_like_llama_cpp(string text, string[] words) =>
        Assert.Equal(words, Split(PreTokenizerKind.Llama3, text));

    [Fact]
    public void Unicode_flags_follow_the_general_category_and_white_space()
    {
        Assert.Equal(CodepointFlags.Letter, Codepoints.Flags('a'));
        Assert.Equal(CodepointFlags.Letter, Codepoints.Flags(0x20000)); // CJK extension B, outside the BMP
        Assert.Equal(CodepointFlags.Number, Codepoints.Flags('٣'));
        Assert.Equal(CodepointFlags.Separator | CodepointFlags.Whitespace, Codepoints.Flags(0x3000));
        Assert.Equal(CodepointFlags.Control | CodepointFlags.Whitespace, Codepoints.Flags('\n'));
        Assert.Equal(CodepointFlags.Control | CodepointFlags.Whitespace, Codepoints.Flags(0x85));
        Assert.Equal(CodepointFlags.Control, Codepoints.Flags(0x200B)); // zero width space is Cf, not White_Space
        Assert.Equal(CodepointFlags.Symbol, Codepoints.Flags(0x1F680));
        Assert.Equal(CodepointFlags.Undefined, Codepoints.Flags(0x10FFFF));
    }

    [Fact]
    public void Gguf_tokenizer_metadata_round_trips_through_a_file()
    {
        TokenizerSpec spec = TestVocabularies.Llama with { Pre = "default", PaddingId = 0, AddEos = true };
        using var dir = new TempDirectory();
        string path = Path.Combine(dir.Path, "vocab.gguf");
        var writer = new GgufWriter();
        writer.Set("general.architecture", "llama");
        GgufTokenizer.WriteSpec(writer, spec);
        writer.Write(path);

        using GgufFile file = GgufFile.Open(path);
        TokenizerSpec read = GgufTokenizer.ReadSpec(file);
        Assert.Equal(spec.Model, read.Model);
        Assert.Equal(spec.Pre, read.Pre);
        Assert.Equal(spec.Tokens, read.Tokens);
        Assert.Equal(spec.Scores, read.Scores);
        Assert.Equal(spec.TokenTypes, read.TokenTypes);
        Assert.Null(read.Merges);
        Assert.Equal((1, 2, 0, 0), (read.BosId, read.EosId, read.UnknownId, read.PaddingId));
        Assert.Equal((true, true, true), (read.AddBos, read.AddEos, read.AddSpacePrefix));
        Tokenizer a = Tokenizer.Create(spec), b = GgufTokenizer.Load(file);
        Assert.Equal(a.Encode(TestVocabularies.Texts[4]), b.Encode(TestVocabularies.Texts[4]));
    }

    [Fact]
    public void Gguf_tokenizer_metadata_of_the_wrong_type_is_rejected_naming_the_key()
    {
        using var dir = new TempDirectory();
        string path = Path.Combine(dir.Path, "bad.gguf");
        var writer = new GgufWriter();
        writer.Set(GgufTokenizer.ModelKey, "llama");
        writer.Set(GgufTokenizer.TokensKey, GgufValue.FromArray(new[] { 1, 2, 3 }));
        writer.Write(path);
        using GgufFile file = GgufFile.Open(path);
        var e = Assert.Throws<ModelFormatException>(() => GgufTokenizer.ReadSpec(file));
        Assert.Contains(GgufTokenizer.TokensKey, e.Message);
        Assert.Contains("bad.gguf", e.Message);
    }

    [Fact]
    public void Stories260k_vocabulary_has_no_space_piece_so_text_becomes_byte_tokens()
    {
        // Its 253 pieces are placeholders ("▁t0" ...), and "▁" itself is no token: every byte of the escaped text,
        // the three bytes of U+2581 included, is a <0xXX> token (id 3 + byte), which then decodes to "▁".
        using GgufFile file = GgufFile.Open(RepoPaths.Stories260K);
        Tokenizer tokenizer = GgufTokenizer.Load(file);
        Assert.Equal(("llama", 512), (tokenizer.Model, tokenizer.VocabularySize));
        int[] expected = [1, .. Encoding.UTF8.GetBytes("\u2581Hello\u2581world").Select(b => 3 + b)];
        Assert.Equal(expected, tokenizer.Encode("Hello world"));
        Assert.Equal("\u2581Hello\u2581world", tokenizer.Decode(expected));
    }

    private static string[] Split(PreTokenizerKind kind, string text)
    {
        int[] cps = [.. text.EnumerateRunes().Select(r => r.Value)];
        List<int> words = PreTokenizer.Split(kind, cps, [], []);
        var result = new List<string>();
        int start = 0;
        foreach (int length in words)
        {
            var sb = new StringBuilder();
            for (int i = start; i < start + length; i++)
                sb.Append(char.ConvertFromUtf32(cps[i]));
            result.Add(sb.ToString());
            start += length;
        }
        return [.. result];
    }
}
