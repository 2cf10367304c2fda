using System.Text.Json;
using ModelSmith.Formats;

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
    public void Bench_vs_llama_cpp_reports_both_engines_and_the_ratio_of_their_speeds()
    {
        var result = SmithProcess.Run("bench", RepoPaths.Stories260K, "--vs-llama-cpp", "--json", "--pp", "32", "--tg", "16", "--reps", "2", "--no-record");

        Assert.True(result.ExitCode == 0, result.Error);
        JsonElement root = JsonDocument.Parse(result.Output).RootElement;
        JsonElement ours = root.GetProperty("tests");
        JsonElement llama = root.GetProperty("llama_cpp");
        Assert.Equal("F16", llama.GetProperty("kv_type").GetString());
        Assert.Equal("auto", llama.GetProperty("flash_attn").GetString());
        Assert.StartsWith("libllama ", llama.GetProperty("native_library").GetString(), StringComparison.Ordinal);
        Assert.True(llama.GetProperty("load_seconds").GetDouble() > 0);
        JsonElement theirs = llama.GetProperty("tests");
        Assert.Equal(2, theirs.GetArrayLength());
        for (int i = 0; i < 2; i++)
        {
            Assert.Equal(ours[i].GetProperty("name").GetString(), theirs[i].GetProperty("name").GetString());
            Assert.Equal(2, theirs[i].GetProperty("samples_ns").GetArrayLength());
            double ourSpeed = ours[i].GetProperty("avg_ts").GetDouble(), theirSpeed = theirs[i].GetProperty("avg_ts").GetDouble();
            Assert.True(ourSpeed > 0 && theirSpeed > 0, $"{ourSpeed} and {theirSpeed} tokens/s");
            Assert.Equal(ourSpeed / theirSpeed, theirs[i].GetProperty("ratio").GetDouble(), 12);
        }
    }

    [Fact]
    public void Bench_vs_llama_cpp_keeps_our_numbers_and_exits_1_when_llama_cpp_refuses_the_file()
    {
        // Without a vocabulary smith still runs the model (on random ids); llama.cpp cannot load it.
        using var dir = new TempDirectory();
        string path = dir.File("no-vocab.gguf");
        using (GgufFile file = GgufFile.Open(RepoPaths.Stories260K))
        {
            GgufWriter writer = GgufWriter.From(file);
            foreach (string key in file.MetadataKeys)
            {
                if (key.StartsWith("tokenizer.", StringComparison.Ordinal)) writer.Remove(key);
            }
            writer.Write(path);
        }

        var result = SmithProcess.Run("bench", path, "--vs-llama-cpp", "--json", "--pp", "16", "--tg", "4", "--reps", "1", "--no-record");

        Assert.Equal(1, result.ExitCode);
        Assert.Contains(path, result.Error, StringComparison.Ordinal);
        Assert.Contains("stand", result.Error, StringComparison.Ordinal);
        JsonElement root = JsonDocument.Parse(result.Output).RootElement;
        Assert.True(root.GetProperty("tests")[0].GetProperty("avg_ts").GetDouble() > 0);
        Assert.Contains(path, root.GetProperty("llama_cpp").GetProperty("error").GetString(), StringComparison.Ordinal);
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
