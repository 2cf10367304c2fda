using System.Text.Json;
using ModelSmith.Evaluation;
using ModelSmith.Models;
using ModelSmith.Tests.Evaluation;
using ModelSmith.Tokenization;

namespace ModelSmith.Tests.Cli;

public class EvalCliTests
{
    private static readonly string s_humor = Path.Combine(RepoPaths.Root, "data", "brown", "humor.txt.gz");

    [Fact]
    public void Eval_as_json_reports_the_perplexity_the_library_computes()
    {
        var result = SmithProcess.Run("eval", RepoPaths.Stories260K, "--data", s_humor, "--ctx", "64", "--chunks", "3", "--threads", "1", "--json");

        Assert.Equal(0, result.ExitCode);
        using var json = JsonDocument.Parse(result.Output);
        JsonElement data = json.RootElement.GetProperty("data")[0];
        Assert.Equal(3, data.GetProperty("chunks").GetInt32());
        Assert.Equal(3 * (64 - 32 - 1), data.GetProperty("scored_tokens").GetInt32());
        using LanguageModel model = LanguageModel.Load(RepoPaths.Stories260K, threads: 1);
        Tokenizer tokenizer = GgufTokenizer.Load(model.File!);
        int[] tokens = Perplexity.Tokenize(tokenizer, Perplexity.ReadText(s_humor));
        PerplexityResult expected = Perplexity.Evaluate(model, tokens, new PerplexityOptions { ContextSize = 64, MaxChunks = 3, FirstToken = tokenizer.Bos });
        Assert.Equal(tokens.Length, data.GetProperty("tokens").GetInt32());
        Assert.Equal(expected.Perplexity, data.GetProperty("perplexity").GetDouble(), 1e-9 * expected.Perplexity);
        Assert.Equal(expected.PerplexityError, data.GetProperty("perplexity_error").GetDouble(), 1e-9 * expected.PerplexityError);
        Assert.False(data.TryGetProperty("kl_divergence", out _));
    }

    [Fact]
    public void Eval_against_itself_as_parent_shows_zero_divergence_in_the_table()
    {
        var result = SmithProcess.Run("eval", RepoPaths.Stories260K, "--data", s_humor, "--ctx", "64", "--chunks", "2", "--parent", RepoPaths.Stories260K);

        Assert.Equal(0, result.ExitCode);
        Assert.Contains("humor.txt.gz", result.Output, StringComparison.Ordinal);
        Assert.Contains("mean KLD", result.Output, StringComparison.Ordinal);
        Assert.Contains("0.000000 ± 0.000000", result.Output, StringComparison.Ordinal);
        Assert.Contains("100.000 ± 0.000 %", result.Output, StringComparison.Ordinal);
    }

    [Fact]
    public void Eval_runs_a_task_file_and_reports_both_accuracies()
    {
        using var dir = new TempDirectory();
        string task = dir.File("task.jsonl");
        File.WriteAllLines(task,
        [
            "{\"context\": \"Once upon a time\", \"choices\": [\"there\", \"qqq\"], \"answer\": 0}",
            "{\"context\": \"The dog\", \"choices\": [\"ran\", \"xz\", \"was\"], \"answer\": 2}",
        ]);

        var result = SmithProcess.Run("eval", RepoPaths.Stories260K, "--task", task, "--json");

        Assert.Equal(0, result.ExitCode);
        JsonElement t = JsonDocument.Parse(result.Output).RootElement.GetProperty("tasks")[0];
        Assert.Equal(2, t.GetProperty("items").GetInt32());
        Assert.InRange(t.GetProperty("acc").GetDouble(), 0, 1);
        Assert.InRange(t.GetProperty("acc_norm").GetDouble(), 0, 1);
        Assert.Equal((1.0 / 2 + 1.0 / 3) / 2, t.GetProperty("random_chance").GetDouble(), 1e-12);
    }

    [Fact]
    public void A_malformed_task_line_exits_with_code_1_naming_file_and_line()
    {
        using var dir = new TempDirectory();
        string task = dir.File("bad.jsonl");
        File.WriteAllLines(task, ["{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"answer\": 0}", "{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"answer\": 7}"]);

        var result = SmithProcess.Run("eval", RepoPaths.Stories260K, "--task", task);

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("bad.jsonl: line 2", result.Error, StringComparison.Ordinal);
        Assert.Contains("\"answer\" is 7", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Text_too_short_for_two_chunks_exits_with_code_1_and_the_token_count()
    {
        using var dir = new TempDirectory();
        string text = dir.File("short.txt");
        File.WriteAllText(text, "A few words only.");

        var result = SmithProcess.Run("eval", RepoPaths.Stories260K, "--data", text);

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("short.txt", result.Error, StringComparison.Ordinal);
        Assert.Contains("needs at least 1024", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_parent_with_another_vocabulary_exits_with_code_2_and_says_why()
    {
        var result = SmithProcess.Run("eval", RepoPaths.Stories260K, "--data", s_humor, "--ctx", "64", "--parent", EvaluationModels.Llama);

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("--parent", result.Error, StringComparison.Ordinal);
        Assert.Contains("512", result.Error, StringComparison.Ordinal);
        Assert.Contains("320", result.Error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("eval", "MODEL")]
    [InlineData("eval", "MODEL", "--data", "HUMOR", "--ctx", "2")]
    [InlineData("eval", "MODEL", "--data", "HUMOR", "--chunks", "0")]
    [InlineData("eval", "MODEL", "--task", "HUMOR", "--parent", "MODEL")]
    public void Impossible_eval_requests_exit_with_code_2(params string[] args)
    {
        var result = SmithProcess.Run(args.Select(a => a switch { "MODEL" => RepoPaths.Stories260K, "HUMOR" => s_humor, _ => a }).ToArray());
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("error:", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_missing_data_file_exits_with_code_1_naming_it()
    {
        var result = SmithProcess.Run("eval", RepoPaths.Stories260K, "--data", "no-such-text.txt");
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("no-such-text.txt", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Eval_help_shows_examples_and_the_task_format()
    {
        var result = SmithProcess.Run("eval", "--help");
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("Examples:", result.Output, StringComparison.Ordinal);
        Assert.Contains("\"choices\"", result.Output, StringComparison.Ordinal);
    }
}
