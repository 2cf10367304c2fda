using System.Text.Json;
using ModelSmith.Formats;
using ModelSmith.Models;

namespace ModelSmith.Tests.Cli;

public class CliTests
{
    [Fact]
    public void Help_lists_every_command_and_exits_zero()
    {
        var result = SmithProcess.Run("--help");
        Assert.Equal(0, result.ExitCode);
        foreach (string command in new[] { "info", "generate", "quantize", "imatrix" })
            Assert.Contains(command, result.Output, StringComparison.Ordinal);
    }

    [Fact]
    public void Command_help_shows_examples_even_without_arguments()
    {
        var result = SmithProcess.Run("generate", "--help");
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("Examples:", result.Output, StringComparison.Ordinal);
    }

    [Fact]
    public void Info_as_json_describes_stories260K()
    {
        var result = SmithProcess.Run("info", RepoPaths.Stories260K, "--json");
        Assert.Equal(0, result.ExitCode);
        using var json = JsonDocument.Parse(result.Output);
        Assert.Equal("llama", json.RootElement.GetProperty("architecture").GetString());
        Assert.Equal(5, json.RootElement.GetProperty("config").GetProperty("block_count").GetInt32());
        Assert.Equal(4, json.RootElement.GetProperty("config").GetProperty("head_count_kv").GetInt32());
        Assert.True(json.RootElement.GetProperty("tensors").GetArrayLength() > 40);
    }

    [Fact]
    public void Greedy_generation_from_token_ids_prints_the_ids_llama_cpp_produces()
    {
        var result = SmithProcess.Run("generate", RepoPaths.Stories260K, "--ids", "1", "-n", "21", "--temperature", "0", "--threads", "1");
        Assert.Equal(0, result.ExitCode);
        Assert.Equal("1,461,461,401,401,401,461,378,455,473,456,435,299,362,409,283,264,283,452,288,13,431", result.Output.Trim());
        Assert.Contains("tokens/s", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void The_same_seed_gives_the_same_sampled_text()
    {
        string[] args = ["generate", RepoPaths.Stories260K, "--ids", "1", "-n", "16", "--temperature", "1", "--seed", "7"];
        Assert.Equal(SmithProcess.Run(args).Output, SmithProcess.Run(args).Output);
    }

    [Fact]
    public void Generation_as_json_reports_tokens_and_speeds()
    {
        var result = SmithProcess.Run("generate", RepoPaths.Stories260K, "--ids", "1", "-n", "4", "--temperature", "0", "--json");
        Assert.Equal(0, result.ExitCode);
        using var json = JsonDocument.Parse(result.Output);
        Assert.Equal(5, json.RootElement.GetProperty("tokens").GetArrayLength());
        Assert.True(json.RootElement.GetProperty("decode_tokens_per_second").GetDouble() > 0);
    }

    [Theory]
    [InlineData("generate", "MODEL", "--ids", "1,9999")]
    [InlineData("generate", "MODEL", "--ids", "1,x")]
    [InlineData("generate", "MODEL")]
    [InlineData("generate", "MODEL", "--ids", "1", "-n", "5000")]
    [InlineData("generate", "MODEL", "--ids", "1", "--top-p", "0")]
    [InlineData("info")]
    [InlineData("no-such-command")]
    public void Impossible_requests_exit_with_code_2_and_say_why(params string[] args)
    {
        string[] resolved = args.Select(a => a == "MODEL" ? RepoPaths.Stories260K : a).ToArray();
        var result = SmithProcess.Run(resolved);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("error:", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_missing_model_file_exits_with_code_1_naming_the_file()
    {
        var result = SmithProcess.Run("info", "no-such-model.gguf");
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("no-such-model.gguf", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_truncated_model_exits_with_code_1_naming_the_byte_offset()
    {
        using var temp = new TempDirectory();
        string path = temp.File("cut.gguf");
        byte[] bytes = File.ReadAllBytes(RepoPaths.Stories260K);
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        var result = SmithProcess.Run("info", path);
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("cut.gguf", result.Error, StringComparison.Ordinal);
        Assert.Contains("byte", result.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("Unhandled", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Quantize_writes_a_q8_0_model_and_refuses_an_unknown_type()
    {
        using var temp = new TempDirectory();
        string input = temp.File("f32.gguf"), output = temp.File("q8_0.gguf");
        SyntheticModel.Write(input, new ModelConfig
        {
            Architecture = ModelArchitecture.Llama, VocabSize = 320, ContextLength = 64, EmbeddingLength = 64,
            BlockCount = 2, FeedForwardLength = 128, HeadCount = 4, KvHeadCount = 2, HeadDim = 16, RopeDims = 16,
            NormEpsilon = 1e-5f,
        });
        var result = SmithProcess.Run("quantize", input, "--type", "q8_0", "-o", output, "--json");
        Assert.Equal(0, result.ExitCode);
        using (var file = GgufFile.Open(output))
            Assert.Equal(GgmlType.Q8_0, file.RequireTensor("blk.0.attn_q.weight").Type);
        var bad = SmithProcess.Run("quantize", input, "--type", "q9_9", "-o", output);
        Assert.Equal(2, bad.ExitCode);
    }
}
