using ModelSmith.Evaluation;
using ModelSmith.Inference;
using ModelSmith.Models;
using ModelSmith.Tokenization;

namespace ModelSmith.Tests.Evaluation;

public class PerplexityTests
{
    /// <summary>
    /// The definition, written out: chunk c is tokens[c·n, (c+1)·n) with its first token replaced by
    /// <paramref name="firstToken"/> (when ≥ 0), run from an empty cache; the logits at positions n/2 … n−2
    /// are scored against the next token of the text; PPL = exp(mean NLL) and the error is llama.cpp's.
    /// </summary>
    private static (double Ppl, double Error, long Count) ByHand(LanguageModel model, int[] tokens, int n, int chunks, int firstToken)
    {
        int v = model.Config.VocabSize;
        var logits = new float[n * v];
        double sum = 0, sum2 = 0;
        long count = 0;
        for (int c = 0; c < chunks; c++)
        {
            int[] input = tokens[(c * n)..((c + 1) * n)];
            if (firstToken >= 0) input[0] = firstToken;
            KvCache cache = model.CreateCache(n);
            model.Forward(input, cache, logits, allLogits: true);
            for (int pos = n / 2; pos <= n - 2; pos++)
            {
                ReadOnlySpan<float> row = logits.AsSpan(pos * v, v);
                double max = double.NegativeInfinity;
                foreach (float x in row) max = Math.Max(max, x);
                double z = 0;
                foreach (float x in row) z += Math.Exp(x - max);
                double nll = max + Math.Log(z) - row[tokens[c * n + pos + 1]];
                sum += nll;
                sum2 += nll * nll;
                count++;
            }
        }
        double mean = sum / count;
        double ppl = Math.Exp(mean);
        return (ppl, ppl * Math.Sqrt((sum2 / count - mean * mean) / (count - 1)), count);
    }

    [Theory]
    [InlineData(16, 1)]
    [InlineData(17, 1)]
    [InlineData(16, -1)]
    [InlineData(32, 1)]
    public void Perplexity_equals_the_direct_computation_over_the_second_half_of_each_chunk(int n, int firstToken)
    {
        using LanguageModel model = LanguageModel.Load(EvaluationModels.Llama, threads: 2);
        int[] tokens = EvaluationModels.RandomTokens(3 * n + n / 3, model.Config.VocabSize, seed: n);

        PerplexityResult result = Perplexity.Evaluate(model, tokens, new PerplexityOptions { ContextSize = n, FirstToken = firstToken });

        var (ppl, error, count) = ByHand(model, tokens, n, 3, firstToken);
        Assert.Equal(3, result.Chunks);
        Assert.Equal(tokens.Length, result.Tokens);
        Assert.Equal(3L * (n - n / 2 - 1), result.ScoredTokens);
        Assert.Equal(count, result.ScoredTokens);
        Assert.Equal(ppl, result.Perplexity, ppl * 1e-6);
        Assert.Equal(error, result.PerplexityError, error * 1e-6);
        Assert.Equal(Math.Log(result.Perplexity), result.MeanNll, 1e-12);
        Assert.Null(result.KlDivergence);
    }

    [Fact]
    public void The_chunk_limit_evaluates_only_the_first_chunks()
    {
        using LanguageModel model = LanguageModel.Load(EvaluationModels.Llama, threads: 1);
        int[] tokens = EvaluationModels.RandomTokens(5 * 16, model.Config.VocabSize, seed: 5);

        PerplexityResult result = Perplexity.Evaluate(model, tokens, new PerplexityOptions { ContextSize = 16, MaxChunks = 2, FirstToken = 1 });

        Assert.Equal(2, result.Chunks);
        Assert.Equal(ByHand(model, tokens, 16, 2, 1).Ppl, result.Perplexity, 1e-6 * result.Perplexity);
    }

    [Fact]
    public void Results_do_not_depend_on_the_thread_count()
    {
        int[] tokens = EvaluationModels.RandomTokens(4 * 24, 320, seed: 9);
        var options = new PerplexityOptions { ContextSize = 24, FirstToken = 1 };
        using LanguageModel one = LanguageModel.Load(EvaluationModels.Llama, threads: 1);
        using LanguageModel two = LanguageModel.Load(EvaluationModels.Llama, threads: 2);
        using LanguageModel parentOne = LanguageModel.Load(EvaluationModels.LlamaSibling, threads: 1);
        using LanguageModel parentTwo = LanguageModel.Load(EvaluationModels.LlamaSibling, threads: 2);

        PerplexityResult a = Perplexity.Evaluate(one, tokens, options, parentOne);
        PerplexityResult b = Perplexity.Evaluate(two, tokens, options, parentTwo);

        Assert.Equal(a.Perplexity, b.Perplexity);
        Assert.Equal(a.KlDivergence!.MeanKld, b.KlDivergence!.MeanKld);
    }

    [Fact]
    public void Progress_reports_every_chunk_with_the_running_perplexity()
    {
        using LanguageModel model = LanguageModel.Load(EvaluationModels.Llama, threads: 1);
        int[] tokens = EvaluationModels.RandomTokens(3 * 16, model.Config.VocabSize, seed: 3);
        var reports = new List<PerplexityProgress>();

        PerplexityResult result = Perplexity.Evaluate(model, tokens, new PerplexityOptions { ContextSize = 16, FirstToken = 1 }, progress: new Collect<PerplexityProgress>(reports));

        Assert.Equal([1, 2, 3], reports.Select(r => r.Chunk));
        Assert.All(reports, r => Assert.Equal(3, r.Chunks));
        Assert.Equal(result.Perplexity, reports[^1].Perplexity, 1e-12);
    }

    [Fact]
    public void Text_shorter_than_two_chunks_is_refused_with_the_token_count()
    {
        using LanguageModel model = LanguageModel.Load(EvaluationModels.Llama, threads: 1);
        int[] tokens = EvaluationModels.RandomTokens(31, model.Config.VocabSize, seed: 1);

        var e = Assert.Throws<ArgumentException>(() => Perplexity.Evaluate(model, tokens, new PerplexityOptions { ContextSize = 16 }));
        Assert.Contains("31 tokens", e.Message, StringComparison.Ordinal);
        Assert.Contains("32", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Tokenization_adds_bos_as_llama_cpp_and_reading_drops_one_final_newline()
    {
        using LanguageModel model = LanguageModel.Load(RepoPaths.Stories260K, threads: 1);
        Tokenizer tokenizer = GgufTokenizer.Load(model.File!);
        using var dir = new TempDirectory();
        string file = dir.File("a.txt");
        File.WriteAllText(file, "Once upon a time.\n\n");

        string text = Perplexity.ReadText(file);
        int[] tokens = Perplexity.Tokenize(tokenizer, text);

        Assert.Equal("Once upon a time.\n", text);
        Assert.Equal(tokenizer.Bos, tokens[0]);
        Assert.Equal(tokenizer.Encode(text, addSpecial: true), tokens);
    }

    private sealed class Collect<T>(List<T> items) : IProgress<T>
    {
        public void Report(T value) => items.Add(value);
    }
}
