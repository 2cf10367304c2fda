using ModelSmith.Tests.Tokenization;
using System.Text;
using ModelSmith.Formats;
using ModelSmith.Tokenization;
using Xunit.Abstractions;

namespace ModelSmith.Interop.Tests.Tokenization;

/// <summary>Our tokenizers against llama.cpp's on vocabulary-only GGUF files written with our GGUF writer.</summary>
[Trait("Category", "Interop")]
public sealed class TokenizerInteropTests(ITestOutputHelper output)
{
    /// <summary>
    /// The unit tests' texts, text containing special-token strings, real mail (spam and ham bodies from the
    /// bundled corpus: HTML, odd spacing, non-ASCII) and seeded random strings over a tricky alphabet.
    /// </summary>
    private static readonly string[] Texts =
    [
        .. TestVocabularies.Texts,
        "a<|endoftext|>b</s>c<s> d <unk>e<0x41>",
        "<s>Hello</s>",
        " <|endoftext|><|endoftext|> ",
        .. MailBodies("spam-2.jsonl", 25),
        .. MailBodies("easy-ham-1.jsonl", 15),
        .. RandomStrings(seed: 20240601, count: 300),
    ];

    private static List<string> MailBodies(string file, int count)
    {
        string path = Path.Combine(RepoPaths.Root, "data", "email", file + ".gz");
        using var gzip = new System.IO.Compression.GZipStream(File.OpenRead(path), System.IO.Compression.CompressionMode.Decompress);
        using var reader = new StreamReader(gzip);
        var bodies = new List<string>();
        for (string? line = reader.ReadLine(); line is not null && bodies.Count < count; line = reader.ReadLine())
        {
            using var json = System.Text.Json.JsonDocument.Parse(line);
            bodies.Add(json.RootElement.GetProperty("text").GetString()!);
        }
        return bodies;
    }

    private static IEnumerable<string> RandomStrings(int seed, int count)
    {
        string[] alphabet =
        [
            " ", " ", " ", "  ", "\n", "\n", "\r\n", "\t", "\u00A0", "\u3000", "\u2028", "\u200B", "\u0085",
            "a", "e", "s", "t", "d", "m", "l", "r", "v", "E", "S", "T", "Z", "é", "ß", "ø", "ı", "İ", "ſ",
            "0", "1", "7", "9", "٣", "½", "²", "Ⅻ",
            "'", "\"", "`", "~", "!", "?", ".", ",", "-", "_", "(", ")", "[", "]", "{", "}", "<", ">", "=", "+", "$", "^", "|", "#", "@", "&", "%", "*", "/", "\\", ":", ";",
            "«", "»", "—", "…", "¿", "€", "©", "°", "±",
            "日", "本", "한", "テ", "ー", "\u0301", "\u0308", "\u093F",
            "🎉", "🚀", "👩\u200D💻", "🇫🇷", "❤️", "𝕳", "𠀀",
            "'s", "'re", "'LL", "'d", "don't",
            "<|endoftext|>", "<s>", "</s>", "<unk>", "<0x0A>", "▁", "▁▁", "Ġ", "Ċ",
            "the", " the", "Hello", " world", "123", "4567", "ing", "tion",
        ];
        var random = new Random(seed);
        for (int i = 0; i < count; i++)
        {
            var sb = new StringBuilder();
            int pieces = random.Next(0, 24);
            for (int j = 0; j < pieces; j++)
                sb.Append(alphabet[random.Next(alphabet.Length)]);
            yield return sb.ToString();
        }
    }

    public static TheoryData<string> Gpt2PreTokenizers => ["gpt-2", "default", "llama3"];

    [Theory]
    [MemberData(nameof(Gpt2PreTokenizers))]
    public void Gpt2_vocabulary_ids_equal_llama_cpp_ids(string pre)
    {
        TokenizerSpec spec = TestVocabularies.Gpt2(pre) with { BosId = 50256, EosId = 50256 };
        AssertSameAsLlamaCpp(spec, $"gpt2-{pre}");
    }

    [Fact]
    public void Gpt2_vocabulary_that_adds_bos_and_eos_gives_llama_cpp_ids()
    {
        TokenizerSpec spec = TestVocabularies.Gpt2("gpt-2") with { BosId = 50256, EosId = 50256, AddBos = true, AddEos = true };
        AssertSameAsLlamaCpp(spec, "gpt2-bos-eos");
    }

    [Fact]
    public void Llama_vocabulary_ids_equal_llama_cpp_ids()
    {
        AssertSameAsLlamaCpp(TestVocabularies.Llama, "llama");
    }

    [Fact]
    public void Llama_vocabulary_without_space_prefix_gives_llama_cpp_ids()
    {
        AssertSameAsLlamaCpp(TestVocabularies.Llama with { AddSpacePrefix = false, AddEos = true }, "llama-no-prefix");
    }

    [Fact]
    public void Stories260k_ids_equal_llama_cpp_ids()
    {
        using GgufFile file = GgufFile.Open(RepoPaths.Stories260K);
        Tokenizer ours = GgufTokenizer.Load(file);
        using var theirs = new LlamaCppVocabulary(RepoPaths.Stories260K);
        AssertSame(ours, theirs, "stories260K");
    }

    private void AssertSameAsLlamaCpp(TokenizerSpec spec, string name)
    {
        string dir = Path.Combine(Path.GetTempPath(), "smith-tok-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string path = Path.Combine(dir, name + ".gguf");
            WriteVocabularyOnlyGguf(spec, path);
            Tokenizer ours = Tokenizer.Create(spec);
            using var theirs = new LlamaCppVocabulary(path);
            AssertSame(ours, theirs, name);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private void AssertSame(Tokenizer ours, LlamaCppVocabulary theirs, string name)
    {
        Assert.Equal(theirs.Count, ours.VocabularySize);
        Assert.Equal(theirs.Bos, ours.Bos);
        Assert.Equal(theirs.Eos, ours.Eos);
        Assert.Equal(theirs.AddsBos, ours.AddBos);

        int checkedTexts = 0;
        foreach (string text in Texts)
        {
            foreach (bool addSpecial in new[] { false, true })
            {
                foreach (bool parseSpecial in new[] { false, true })
                {
                    int[] expected = theirs.Tokenize(text, addSpecial, parseSpecial);
                    int[] actual = ours.Encode(text, addSpecial, parseSpecial);
                    if (!expected.AsSpan().SequenceEqual(actual))
                    {
                        Assert.Fail($"{name}: ids differ for {Quote(text)} (addSpecial {addSpecial}, parseSpecial {parseSpecial})\n" +
                            $"llama.cpp: [{string.Join(", ", expected)}]\nours:      [{string.Join(", ", actual)}]");
                    }
                    checkedTexts++;
                }
            }
        }

        for (int id = 0; id < ours.VocabularySize; id++)
        {
            foreach (bool special in new[] { false, true })
            {
                byte[] expected = theirs.Piece(id, special);
                if (!expected.AsSpan().SequenceEqual(ours.TokenToPiece(id, special)))
                    Assert.Fail($"{name}: piece of token {id} ('{ours.TokenText(id)}', special {special}) differs: llama.cpp {Convert.ToHexString(expected)}, ours {Convert.ToHexString(ours.TokenToPiece(id, special))}");
            }
            Assert.True(theirs.IsEndOfGeneration(id) == ours.IsEndOfGeneration(id), $"{name}: end of generation differs for token {id} ('{ours.TokenText(id)}')");
        }
        output.WriteLine($"{name}: {checkedTexts} encodings and {ours.VocabularySize} token pieces equal llama.cpp's");
    }

    /// <summary>
    /// A GGUF that llama.cpp loads with vocab_only: the tokenizer keys plus the architecture and the llama
    /// hyperparameters its loader reads before it would look at tensors.
    /// </summary>
    private static void WriteVocabularyOnlyGguf(TokenizerSpec spec, string path)
    {
        var writer = new GgufWriter();
        writer.Set("general.architecture", "llama");
        writer.Set("general.name", "vocabulary only");
        writer.Set("llama.context_length", 512u);
        writer.Set("llama.embedding_length", 64u);
        writer.Set("llama.block_count", 1u);
        writer.Set("llama.feed_forward_length", 128u);
        writer.Set("llama.rope.dimension_count", 8u);
        writer.Set("llama.attention.head_count", 8u);
        writer.Set("llama.attention.head_count_kv", 8u);
        writer.Set("llama.attention.layer_norm_rms_epsilon", 1e-5f);
        GgufTokenizer.WriteSpec(writer, spec);
        writer.Write(path);
    }

    private static string Quote(string text)
    {
        var sb = new StringBuilder("\"");
        foreach (char c in text)
            sb.Append(c switch { '\n' => "\\n", '\r' => "\\r", '\t' => "\\t", _ => c.ToString() });
        return sb.Append('"').ToString();
    }
}
