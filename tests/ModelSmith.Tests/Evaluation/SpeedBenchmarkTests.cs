using ModelSmith.Evaluation;
using ModelSmith.Models;

namespace ModelSmith.Tests.Evaluation;

public class SpeedBenchmarkTests
{
    [Theory]
    [InlineData(SpeedTestKind.Prompt, 40, "pp40")]
    [InlineData(SpeedTestKind.Generation, 8, "tg8")]
    public void A_test_times_every_repetition_and_is_named_as_llama_bench_names_it(SpeedTestKind kind, int tokens, string name)
    {
        using LanguageModel model = LanguageModel.Load(EvaluationModels.Llama, threads: 1);
        var done = new List<int>();

        SpeedTestResult result = SpeedBenchmark.Run(model, kind, tokens, repetitions: 3, firstToken: 1, progress: new Collect(done));

        Assert.Equal(name, result.Name);
        Assert.Equal(3, result.Samples.Count);
        Assert.Equal([1, 2, 3], done);
        Assert.All(result.Samples, t => Assert.True(t > TimeSpan.Zero));
        Assert.True(result.MeanTokensPerSecond > 0);
        Assert.True(result.StdDevTokensPerSecond >= 0);
    }

    [Fact]
    public void Mean_and_deviation_are_over_the_rates_of_the_repetitions()
    {
        var result = new SpeedTestResult(SpeedTestKind.Prompt, 100, [TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(0.5), TimeSpan.FromSeconds(0.25)]);
        Assert.Equal((100 + 200 + 400) / 3.0, result.MeanTokensPerSecond, 1e-9);
        double mean = 700 / 3.0;
        double sd = Math.Sqrt(((100 - mean) * (100 - mean) + (200 - mean) * (200 - mean) + (400 - mean) * (400 - mean)) / 2);
        Assert.Equal(sd, result.StdDevTokensPerSecond, 1e-9);
        Assert.Equal(0, new SpeedTestResult(SpeedTestKind.Generation, 1, [TimeSpan.FromSeconds(1)]).StdDevTokensPerSecond);
    }

    [Fact]
    public void Peak_resident_memory_is_at_least_the_current_working_set()
    {
        using var self = System.Diagnostics.Process.GetCurrentProcess();
        long current = self.WorkingSet64;
        Assert.True(SpeedBenchmark.PeakResidentBytes() >= current);
    }

    private sealed class Collect(List<int> items) : IProgress<int>
    {
        public void Report(int value) => items.Add(value);
    }
}
