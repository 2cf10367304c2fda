using System.Text.Json;

namespace ModelSmith.Tests.Cli;

public class BenchCliTests
{
    [Fact]
    public void Bench_as_json_reports_both_tests_load_time_size_and_peak_memory()
    {
        var result = SmithProcess.Run("bench", RepoPaths.Stories260K, "--pp", "64", "--tg", "8", "--reps", "2", "--threads", "1", "--json");

        Assert.Equal(0, result.ExitCode);
        JsonElement root = JsonDocument.Parse(result.Output).RootElement;
        Assert.Equal(new FileInfo(RepoPaths.Stories260K).Length, root.GetProperty("file_size").GetInt64());
        Assert.True(root.GetProperty("load_seconds").GetDouble() > 0);
        Assert.True(root.GetProperty("peak_resident_bytes").GetInt64() > 1 << 20);
        JsonElement tests = root.GetProperty("tests");
        Assert.Equal(2, tests.GetArrayLength());
        Assert.Equal("pp64", tests[0].GetProperty("name").GetString());
        Assert.Equal("tg8", tests[1].GetProperty("name").GetString());
        foreach (JsonElement test in tests.EnumerateArray())
        {
            Assert.Equal(2, test.GetProperty("samples_ns").GetArrayLength());
            Assert.True(test.GetProperty("avg_ts").GetDouble() > 0);
        }
    }

    [Fact]
    public void Bench_prints_a_table_with_tokens_per_second()
    {
        var result = SmithProcess.Run("bench", RepoPaths.Stories260K, "--pp", "32", "--tg", "0", "--reps", "1");
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("pp32", result.Output, StringComparison.Ordinal);
        Assert.Contains("t/s", result.Output, StringComparison.Ordinal);
        Assert.Contains("peak resident memory", result.Output, StringComparison.Ordinal);
    }

    [Fact]
    public void The_llama_cpp_comparison_points_to_the_benchmark_project()
    {
        var result = SmithProcess.Run("bench", RepoPaths.Stories260K, "--vs-llama-cpp");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("bench/ModelSmith.Bench", result.Error, StringComparison.Ordinal);
        Assert.Contains("-- llama", result.Error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--pp", "0", "--tg", "0")]
    [InlineData("--reps", "0")]
    [InlineData("--tg", "-1")]
    public void Impossible_bench_requests_exit_with_code_2(params string[] options)
    {
        var result = SmithProcess.Run(["bench", RepoPaths.Stories260K, .. options]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("error:", result.Error, StringComparison.Ordinal);
    }
}
