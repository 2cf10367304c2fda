using ModelSmith.Tests.Tokenization;
using ModelSmith.Evaluation;
using ModelSmith.Formats;
using ModelSmith.Interop.Tests.Tokenization;
using ModelSmith.Models;
using ModelSmith.Tokenization;
using Xunit.Abstractions;

namespace ModelSmith.Interop.Tests.Evaluation;

/// <summary>
/// Our perplexity, end to end (our tokenizer, our engine, our chunking), against llama.cpp's perplexity tool's
/// method run on llama.cpp itself: its tokenization (llama_tokenize with add_special, as common_tokenize), chunks
/// of n_ctx tokens with BOS replacing the first when the vocabulary adds one, each chunk decoded in one batch from
/// an empty cache, the second half scored with its log_softmax (float max, Σ expf in double).
/// </summary>
public class PerplexityInteropTests(ITestOutputHelper output)
{
    /// <summary>The first <paramref name="characters"/> characters (cut at a line end) of a Brown corpus genre, read as `llama-perplexity -f` reads a file.</summary>
    private static string BrownText(string genre, int characters)
    {
        string text = Perplexity.ReadText(Path.Combine(RepoPaths.Root, "data", "brown", genre + ".txt.gz"));
        int end = text.LastIndexOf('\n', Math.Min(characters, text.Length - 1));
        return end > 0 ? text[..end] : text;
    }

    /// <summary>llama.cpp's perplexity() on llama.cpp's own tokens and logits.</summary>
    private static (double Ppl, double Error, int[] Tokens) LlamaCppPerplexity(string path, string text, int nCtx, int maxChunks)
    {
        using var llama = new LlamaCppModel(path, threads: 1, contextSize: nCtx);
        int[] tokens = llama.Tokenize(text, addSpecial: true, parseSpecial: false);
        int chunks = Math.Min(tokens.Length / nCtx, maxChunks);
        int first = nCtx / 2, vocab = llama.VocabSize;
        double nll = 0, nll2 = 0;
        long count = 0;
        for (int i = 0; i < chunks; i++)
        {
            int[] chunk = tokens[(i * nCtx)..((i + 1) * nCtx)];
            if (llama.AddsBos) chunk[0] = llama.Bos;
            float[] logits = llama.EvalAllLogits(chunk);
            for (int k = first; k < nCtx - 1; k++)
            {
                ReadOnlySpan<float> row = logits.AsSpan(k * vocab, vocab);
                float max = row[0];
                for (int j = 1; j < vocab; j++) max = Math.Max(max, row[j]);
                double sum = 0;
                for (int j = 0; j < vocab; j++) sum += MathF.Exp(row[j] - max);
                double v = -((row[tokens[i * nCtx + k + 1]] - max) - Math.Log(sum));
                nll += v;
                nll2 += v * v;
                count++;
            }
        }
        nll /= count;
        nll2 = nll2 / count - nll * nll;
        double ppl = Math.Exp(nll);
        return (ppl, ppl * Math.Sqrt(nll2 / (count - 1)), tokens);
    }

    private PerplexityResult Ours(string path, string text, int nCtx, int maxChunks, out int[] tokens)
    {
        using LanguageModel model = LanguageModel.Load(path, threads: 2);
        Tokenizer tokenizer = GgufTokenizer.Load(model.File!);
        tokens = Perplexity.Tokenize(tokenizer, text);
        return Perplexity.Evaluate(model, tokens, new PerplexityOptions { ContextSize = nCtx, MaxChunks = maxChunks, FirstToken = tokenizer.AddBos ? tokenizer.Bos : -1 });
    }

    private void Compare(string name, string path, string text, int nCtx, int maxChunks)
    {
        var (theirs, theirError, theirTokens) = LlamaCppPerplexity(path, text, nCtx, maxChunks);
        PerplexityResult ours = Ours(path, text, nCtx, maxChunks, out int[] ourTokens);
        double relative = Math.Abs(ours.Perplexity - theirs) / theirs;
        output.WriteLine($"{name}: {ours.Chunks} chunks of {nCtx}, {ours.ScoredTokens} scored tokens; PPL ours {ours.Perplexity:F6} ± {ours.PerplexityError:F6}, llama.cpp {theirs:F6} ± {theirError:F6}; relative difference {relative:E2}");

        Assert.Equal(theirTokens, ourTokens);
        Assert.True(ours.Chunks >= 3, $"{name}: only {ours.Chunks} chunks");
        Assert.True(relative < 0.005, $"{name}: our perplexity {ours.Perplexity} differs from llama.cpp's {theirs} by {relative:P3}");
        Assert.Equal(theirError, ours.PerplexityError, 0.01 * theirError);
    }

    [Fact]
    public void Perplexity_of_stories260K_on_brown_text_equals_llama_cpp()
    {
        Compare("stories260K", RepoPaths.Stories260K, BrownText("humor", 12_000), nCtx: 512, maxChunks: 4);
    }

    [Fact]
    public void Perplexity_of_a_gpt2_model_with_the_real_gpt2_vocabulary_equals_llama_cpp()
    {
        string path = Path.Combine(Path.GetTempPath(), $"smith-interop-ppl-gpt2-{Guid.NewGuid():N}.gguf");
        string raw = path + ".raw";
        try
        {
            var config = new ModelConfig
            {
                Architecture = ModelArchitecture.Gpt2,
                VocabSize = 50257,
                ContextLength = 256,
                EmbeddingLength = 64,
                BlockCount = 2,
                FeedForwardLength = 256,
                HeadCount = 4,
                KvHeadCount = 4,
                HeadDim = 16,
                NormEpsilon = 1e-5f,
                TiedOutput = true,
            };
            SyntheticModel.Write(raw, config, seed: 7);
            using (var file = GgufFile.Open(raw))
            {
                GgufWriter writer = GgufWriter.From(file);
                foreach (string key in writer.Keys.Where(k => k.StartsWith("tokenizer.", StringComparison.Ordinal)).ToArray())
                    writer.Remove(key);
                GgufTokenizer.WriteSpec(writer, TestVocabularies.Gpt2() with { BosId = 50256, EosId = 50256 });
                writer.Write(path);
            }
            Compare("gpt2 vocabulary", path, BrownText("press-reportage", 6_000), nCtx: 256, maxChunks: 3);
        }
        finally
        {
            File.Delete(raw);
            File.Delete(path);
        }
    }
}
