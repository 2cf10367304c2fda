using ModelSmith.Tests.Tokenization;
using System.IO.Compression;
using System.Text;
using System.Text.Json;
using ModelSmith.Formats;
using ModelSmith.Tokenization;
using Xunit.Abstractions;

namespace ModelSmith.Interop.Tests.Tokenization;

/// <summary>Vocabularies trained by <see cref="BpeTrainer"/>, stored in GGUF, tokenized by llama.cpp and by us.</summary>
[Trait("Category", "Interop")]
public sealed class BpeTrainerInteropTests(ITestOutputHelper output)
{
    private static readonly string[] Specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

    public static TheoryData<string> PreTokenizers => ["gpt-2", "default"];

    [Theory]
    [MemberData(nameof(PreTokenizers))]
    public void Llama_cpp_gives_our_ids_for_held_out_text_with_a_trained_vocabulary(string pre)
    {
        var training = new List<string>();
        foreach (string genre in (string[])["press-reportage", "humor", "fiction-science", "religion"])
            training.AddRange(Paragraphs(genre));
        TokenizerSpec spec = BpeTrainer.Train(training, new BpeTrainerOptions { VocabSize = 3000, SpecialTokens = Specials, PreTokenizer = pre });

        List<string> heldOut =
        [
            .. Paragraphs("learned").Take(300),
            .. MailBodies("easy-ham-2.jsonl", 40),
            .. MailBodies("spam-1.jsonl", 40),
            .. TestVocabularies.Texts,
            "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n<|endoftext|>",
            "<|endoftext|><|endoftext|> <|im_end|>x<|im_start|><|im_start|",
            "a<|endoftext|>b <|im_start|>\n\n",
        ];

        string dir = Path.Combine(Path.GetTempPath(), "smith-bpe-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string path = Path.Combine(dir, "trained.gguf");
            WriteVocabularyOnlyGguf(spec, path);
            Tokenizer ours = Tokenizer.Create(spec);
            using var theirs = new LlamaCppVocabulary(path);
            Assert.Equal(theirs.Count, ours.VocabularySize);
            Assert.Equal(theirs.Bos, ours.Bos);
            Assert.Equal(theirs.Eos, ours.Eos);
            Assert.Equal(spec.Tokens.Count - 3, theirs.Eos);
            Assert.False(theirs.AddsBos);

            long tokens = 0, chars = 0;
            foreach (string text in heldOut)
            {
                foreach (bool addSpecial in new[] { false, true })
                {
                    foreach (bool parseSpecial in new[] { false, true })
                    {
                        int[] expected = theirs.Tokenize(text, addSpecial, parseSpecial);
                        int[] actual = ours.Encode(text, addSpecial, parseSpecial);
                        if (!expected.AsSpan().SequenceEqual(actual))
                            Assert.Fail($"{pre}: ids differ for {Quote(text)} (addSpecial {addSpecial}, parseSpecial {parseSpecial})\n" +
                                $"llama.cpp: [{string.Join(", ", expected)}]\nours:      [{string.Join(", ", actual)}]");
                    }
                }
                tokens += ours.Encode(text, addSpecial: false).Length;
                chars += text.Length;
            }

            int[] chat = theirs.Tokenize("<|im_start|>user\nhi<|im_end|><|endoftext|>", addSpecial: false, parseSpecial: true);
            Assert.Equal(spec.Tokens.Count - 2, chat[0]);
            Assert.Equal([spec.Tokens.Count - 1, spec.Tokens.Count - 3], chat[^2..]);
            for (int id = 0; id < ours.VocabularySize; id++)
            {
                foreach (bool special in new[] { false, true })
                    Assert.True(theirs.Piece(id, special).AsSpan().SequenceEqual(ours.TokenToPiece(id, special)), $"piece of token {id} ('{ours.TokenText(id)}', special {special})");
                Assert.Equal(theirs.IsEndOfGeneration(id), ours.IsEndOfGeneration(id));
            }
            output.WriteLine($"{pre}: {heldOut.Count} held-out texts x 4 modes equal llama.cpp's ids; {(double)tokens / chars:F4} tokens/char over {chars} chars");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static IEnumerable<string> Paragraphs(string genre)
    {
        string path = Path.Combine(RepoPaths.Root, "data", "brown", genre + ".txt.gz");
        using var gzip = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
        using var reader = new StreamReader(gzip);
        for (string? line = reader.ReadLine(); line is not null; line = reader.ReadLine())
            if (line.Length > 0)
                yield return line;
    }

    private static IEnumerable<string> MailBodies(string file, int count)
    {
        string path = Path.Combine(RepoPaths.Root, "data", "email", file + ".gz");
        using var gzip = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
        using var reader = new StreamReader(gzip);
        int n = 0;
        for (string? line = reader.ReadLine(); line is not null && n < count; line = reader.ReadLine(), n++)
        {
            using var json = JsonDocument.Parse(line);
            yield return json.RootElement.GetProperty("text").GetString()!;
        }
    }

    /// <summary>The tokenizer keys plus the llama hyperparameters llama.cpp reads before it would look at tensors.</summary>
    private static void WriteVocabularyOnlyGguf(TokenizerSpec spec, string path)
    {
        var writer = new GgufWriter();
        writer.Set("general.architecture", "llama");
        writer.Set("general.name", "trained vocabulary");
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
