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

    [Theory]
    [InlineData(SpeedTestKind.Prompt, 12)]
    [InlineData(SpeedTestKind.Generation, 5)]
    public void Any_engine_is_driven_from_an_empty_cache_with_the_first_token_first_in_every_run(SpeedTestKind kind, int tokens)
    {
        var engine = new RecordingEngine(vocab: 50);

        SpeedTestResult result = SpeedBenchmark.Run(engine, kind, tokens, repetitions: 2, firstToken: 7);

        Assert.Equal(2, result.Samples.Count);
        // At least one warm-up run, then the two timed ones; each run clears the cache, then decodes `tokens` ids,
        // in one batch (prompt) or one call per token (generation).
        Assert.True(engine.RunCount >= 3, $"{engine.RunCount} runs");
        foreach (List<int[]> run in engine.Runs)
        {
            Assert.Equal(kind == SpeedTestKind.Prompt ? 1 : tokens, run.Count);
            int[] ids = [.. run.SelectMany(batch => batch)];
            Assert.Equal(tokens, ids.Length);
            Assert.Equal(7, ids[0]);
            Assert.All(ids, id => Assert.InRange(id, 0, 49));
        }
    }

    private sealed class Collect(List<int> items) : IProgress<int>
    {
        public void Report(int value) => items.Add(value);
    }

    /// <summary>An engine that counts its runs (a run starts at ClearCache) and records the batches of the last three
    /// (warm-up repeats a fast engine many times).</summary>
    private sealed class RecordingEngine(int vocab) : ISpeedTestEngine
    {
        public int RunCount { get; private set; }

        public List<List<int[]>> Runs { get; } = [];

        public int VocabSize => vocab;

        public void ClearCache()
        {
            RunCount++;
            Runs.Add([]);
            if (Runs.Count > 3) Runs.RemoveAt(0);
        }

        public void Decode(ReadOnlySpan<int> tokens) => Runs[^1].Add(tokens.ToArray());
    }
}
