using ModelSmith.Evaluation;
using ModelSmith.Inference;
using ModelSmith.Models;

namespace ModelSmith.Tests.Evaluation;

public class KlDivergenceTests
{
    [Fact]
    public void A_model_against_itself_has_zero_divergence_and_full_top_1_agreement()
    {
        using LanguageModel model = LanguageModel.Load(EvaluationModels.Llama, threads: 2);
        using LanguageModel parent = LanguageModel.Load(EvaluationModels.Llama, threads: 2);
        int[] tokens = EvaluationModels.RandomTokens(4 * 32, model.Config.VocabSize, seed: 11);

        PerplexityResult result = Perplexity.Evaluate(model, tokens, new PerplexityOptions { ContextSize = 32, FirstToken = 1 }, parent);

        KlDivergenceResult kld = result.KlDivergence!;
        Assert.Equal(result.ScoredTokens, kld.Count);
        Assert.Equal(0.0, kld.MeanKld);
        Assert.Equal(0.0, kld.MaximumKld);
        Assert.Equal(0.0, kld.MinimumKld);
        Assert.Equal(1.0, kld.SameTop);
        Assert.Equal(0.0, kld.SameTopError);
        Assert.Equal(0.0, kld.RmsDeltaP);
        Assert.Equal(0.0, kld.LogPerplexityRatio, 1e-12);
        Assert.Equal(kld.Perplexity, kld.ParentPerplexity);
        Assert.Equal(result.Perplexity, kld.ParentPerplexity, 1e-6 * result.Perplexity);
        Assert.Equal(1.0, kld.PerplexityCorrelation, 1e-9);
    }

    [Fact]
    public void Divergence_from_another_model_equals_the_direct_sum_over_the_vocabulary()
    {
        const int n = 24;
        using LanguageModel model = LanguageModel.Load(EvaluationModels.Llama, threads: 2);
        using LanguageModel parent = LanguageModel.Load(EvaluationModels.LlamaSibling, threads: 2);
        int v = model.Config.VocabSize;
        int[] tokens = EvaluationModels.RandomTokens(2 * n, v, seed: 12);

        KlDivergenceResult kld = Perplexity.Evaluate(model, tokens, new PerplexityOptions { ContextSize = n, FirstToken = 1 }, parent).KlDivergence!;

        var values = new List<double>();
        int same = 0;
        var q = new float[n * v];
        var p = new float[n * v];
        for (int c = 0; c < 2; c++)
        {
            int[] input = tokens[(c * n)..((c + 1) * n)];
            input[0] = 1;
            model.Forward(input, model.CreateCache(n), q, allLogits: true);
            parent.Forward(input, parent.CreateCache(n), p, allLogits: true);
            for (int pos = n / 2; pos <= n - 2; pos++)
            {
                double[] logQ = LogProbabilities(q.AsSpan(pos * v, v));
                double[] logP = LogProbabilities(p.AsSpan(pos * v, v));
                double sum = 0;
                for (int i = 0; i < v; i++) sum += Math.Exp(logP[i]) * (logP[i] - logQ[i]);
                values.Add(sum);
                if (Array.IndexOf(logQ, logQ.Max()) == Array.IndexOf(logP, logP.Max())) same++;
            }
        }

        Assert.Equal(values.Count, kld.Count);
        Assert.True(kld.MeanKld > 1e-3, $"two random models should disagree; mean KLD {kld.MeanKld}");
        Assert.Equal(values.Average(), kld.MeanKld, 1e-9);
        Assert.Equal(values.Max(), kld.MaximumKld, 1e-9);
        Assert.Equal(values.Min(), kld.MinimumKld, 1e-9);
        Assert.Equal((double)same / values.Count, kld.SameTop);
        Assert.InRange(kld.MedianKld, kld.MinimumKld, kld.MaximumKld);
        Assert.True(kld.KldPercentile(0.99) >= kld.KldPercentile(0.90));
    }

    [Fact]
    public void A_parent_with_another_vocabulary_is_refused_with_both_sizes()
    {
        using LanguageModel model = LanguageModel.Load(EvaluationModels.Llama, threads: 1);
        using LanguageModel parent = LanguageModel.Load(EvaluationModels.LlamaWideVocabulary, threads: 1);
        int[] tokens = EvaluationModels.RandomTokens(64, 320, seed: 1);

        var e = Assert.Throws<ArgumentException>(() => Perplexity.Evaluate(model, tokens, new PerplexityOptions { ContextSize = 16 }, parent));
        Assert.Contains("320", e.Message, StringComparison.Ordinal);
        Assert.Contains("400", e.Message, StringComparison.Ordinal);
        Assert.Contains("vocabulary", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Models_with_the_same_vocabulary_are_accepted()
    {
        using LanguageModel model = LanguageModel.Load(EvaluationModels.Llama, threads: 1);
        using LanguageModel parent = LanguageModel.Load(EvaluationModels.LlamaSibling, threads: 1);
        Assert.Null(Perplexity.VocabularyMismatch(model, parent));
    }

    [Fact]
    public void Percentiles_interpolate_between_neighbours_as_llama_cpp()
    {
        double[] sorted = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        Assert.Equal(0.0, KlDivergenceResult.Percentile(sorted, 0));
        Assert.Equal(10.0, KlDivergenceResult.Percentile(sorted, 1));
        Assert.Equal(9.9, KlDivergenceResult.Percentile(sorted, 0.99), 1e-12);
        Assert.Equal(0.1, KlDivergenceResult.Percentile(sorted, 0.01), 1e-12);
        Assert.Equal(5.0, KlDivergenceResult.Percentile(sorted, 0.5), 1e-12);
    }

    [Fact]
    public void Uncertainty_is_zero_for_ten_values_or_fewer_as_llama_cpp()
    {
        Assert.Equal((0.5, 0.0), KlDivergenceResult.MeanAndUncertainty(5, 5, 10));
        var (mean, error) = KlDivergenceResult.MeanAndUncertainty(6, 6, 12);
        Assert.Equal(0.5, mean);
        Assert.Equal(Math.Sqrt(0.25 / 11), error, 1e-15);
    }

    private static double[] LogProbabilities(ReadOnlySpan<float> logits)
    {
        double max = double.NegativeInfinity;
        foreach (float x in logits) max = Math.Max(max, x);
        double z = 0;
        foreach (float x in logits) z += Math.Exp(x - max);
        double norm = max + Math.Log(z);
        var result = new double[logits.Length];
        for (int i = 0; i < logits.Length; i++) result[i] = logits[i] - norm;
        return result;
    }
}
