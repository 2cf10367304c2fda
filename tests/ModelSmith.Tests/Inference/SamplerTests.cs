using ModelSmith.Inference;

namespace ModelSmith.Tests.Inference;

public class SamplerTests
{
    private static readonly float[] s_logits = [0.1f, 2.5f, -1f, 2.4f, 0.3f, 1.9f, -3f, 0f];

    [Fact]
    public void Greedy_sampling_returns_the_argmax_and_the_first_index_on_ties()
    {
        var greedy = new Sampler(SamplingOptions.Greedy, s_logits.Length);
        Assert.Equal(1, greedy.Sample(s_logits));
        Assert.Equal(0, Sampler.ArgMax([5f, 5f, 1f]));
    }

    [Fact]
    public void The_same_seed_gives_the_same_draws_and_another_seed_differs()
    {
        var options = new SamplingOptions { Temperature = 1.5f, TopK = 0, TopP = 1, Seed = 9 };
        int[] Draw(SamplingOptions o)
        {
            var sampler = new Sampler(o, s_logits.Length);
            var draws = new int[64];
            for (int i = 0; i < draws.Length; i++) draws[i] = sampler.Sample(s_logits);
            return draws;
        }
        Assert.Equal(Draw(options), Draw(options));
        Assert.NotEqual(Draw(options), Draw(options with { Seed = 10 }));
    }

    [Fact]
    public void Top_k_restricts_draws_to_the_k_most_likely_tokens()
    {
        var sampler = new Sampler(new SamplingOptions { Temperature = 5, TopK = 2, TopP = 1, Seed = 1 }, s_logits.Length);
        for (int i = 0; i < 500; i++) Assert.Contains(sampler.Sample(s_logits), new[] { 1, 3 });
    }

    [Fact]
    public void Top_p_keeps_the_smallest_nucleus_reaching_p()
    {
        // Probabilities at temperature 1: token 1 ≈ 0.37, token 3 ≈ 0.34, token 5 ≈ 0.18 ...
        var sampler = new Sampler(new SamplingOptions { Temperature = 1, TopK = 0, TopP = 0.6f, Seed = 3 }, s_logits.Length);
        var seen = new HashSet<int>();
        for (int i = 0; i < 500; i++) seen.Add(sampler.Sample(s_logits));
        Assert.Equal(new HashSet<int> { 1, 3 }, seen);
    }

    [Fact]
    public void Draw_frequencies_follow_the_softmax_at_the_given_temperature()
    {
        float[] logits = [0f, MathF.Log(3f)]; // probabilities 1/4 and 3/4
        var sampler = new Sampler(new SamplingOptions { Temperature = 1, TopK = 0, TopP = 1, Seed = 5 }, 2);
        int ones = 0;
        const int n = 20000;
        for (int i = 0; i < n; i++) ones += sampler.Sample(logits);
        Assert.InRange(ones / (double)n, 0.73, 0.77);
    }

    [Theory]
    [InlineData(-1f, 40, 0.9f)]
    [InlineData(1f, -1, 0.9f)]
    [InlineData(1f, 40, 0f)]
    [InlineData(1f, 40, 1.5f)]
    public void Impossible_options_are_rejected_with_a_reason(float temperature, int topK, float topP)
    {
        var options = new SamplingOptions { Temperature = temperature, TopK = topK, TopP = topP };
        Assert.NotNull(options.Validate());
        Assert.Throws<ArgumentException>(() => new Sampler(options, 8));
    }
}
