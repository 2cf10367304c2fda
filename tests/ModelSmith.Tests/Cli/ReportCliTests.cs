using System.Text.RegularExpressions;
using ModelSmith.Formats;
using ModelSmith.Models;
using ModelSmith.Registry;
using ModelSmith.Tests.Evaluation;

namespace ModelSmith.Tests.Cli;

/// <summary>smith report on a workspace of synthetic models with recorded results.</summary>
public sealed class ReportCliTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    /// <summary>
    /// base (F32) → tuned (F32, trained on legal.txt) → tuned-f16, and base → base-f16; perplexities on a general
    /// and a domain data set, and decode speeds, recorded as the eval and bench commands record them.
    /// </summary>
    private (Workspace Workspace, ModelVariant[] Variants) Lab()
    {
        var ws = Workspace.Open(_temp.File("ws"));
        string Model(string name, ulong seed, GgmlType type)
        {
            string path = _temp.File(name);
            SyntheticModel.Write(path, EvaluationModels.LlamaConfig(), type, seed);
            return path;
        }
        string legal = _temp.File("legal.txt");
        File.WriteAllText(legal, "The party of the first part shall indemnify the party of the second part.");
        var domainData = DataFingerprint.OfFile(legal, 17);
        var general = new DataFingerprint("wiki.txt", new string('1', 64), 5000);

        ModelVariant b = ws.Register(new ModelRegistration { Path = Model("base.gguf", 1, GgmlType.F32), Name = "base" });
        ModelVariant t = ws.Register(new ModelRegistration
        {
            Path = Model("tuned.gguf", 2, GgmlType.F32), Name = "tuned", Kind = VariantKind.FineTuned, Parents = [b.Id],
            Transformation = "finetune", TransformParameters = """{"method":"full"}""", Data = [domainData],
        });
        ModelVariant tq = ws.Register(new ModelRegistration { Path = Model("tuned-f16.gguf", 3, GgmlType.F16), Name = "tuned-f16", Kind = VariantKind.Quantized, Parents = [t.Id], Transformation = "quantize" });
        ModelVariant bq = ws.Register(new ModelRegistration { Path = Model("base-f16.gguf", 4, GgmlType.F16), Name = "base-f16", Kind = VariantKind.Quantized, Parents = [b.Id], Transformation = "quantize" });

        void Measure(ModelVariant v, double generalPpl, double domainPpl, double tps)
        {
            ws.RecordEval(v.Id, new EvalResult { Data = general, Context = 64, Perplexity = generalPpl, PerplexityError = 0.2, ScoredTokens = 2000 });
            ws.RecordEval(v.Id, new EvalResult { Data = domainData, Context = 64, Perplexity = domainPpl, PerplexityError = 0.3, ScoredTokens = 300 });
            ws.RecordBench(v.Id, new BenchResult { PromptTokens = 64, PrefillTokensPerSecond = 10 * tps, GeneratedTokens = 16, DecodeTokensPerSecond = tps, DecodeStdDev = 1, PeakResidentBytes = 40 << 20, Threads = 2, Repetitions = 2 });
        }
        Measure(b, 20.0, 30.0, 100);
        Measure(t, 21.0, 12.0, 100);
        Measure(tq, 21.2, 12.1, 160);
        Measure(bq, 20.1, 30.2, 160);
        return (ws, [b, t, tq, bq]);
    }

    [Fact]
    public void Report_is_one_html_file_with_the_lineage_the_table_the_plots_and_three_recommendations()
    {
        var (ws, variants) = Lab();
        string output = _temp.File("out/report.html");
        var result = SmithProcess.Run("report", "--out", output, "--workspace", ws.Root);
        Assert.True(result.ExitCode == 0, result.Error);
        Assert.Contains("wrote", result.Output, StringComparison.Ordinal);
        string html = File.ReadAllText(output);

        Assert.StartsWith("<!DOCTYPE html>", html, StringComparison.Ordinal);
        Assert.Contains("<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"lineage\"", html, StringComparison.Ordinal);
        Assert.Contains("<table class=\"variants\">", html, StringComparison.Ordinal);
        foreach (ModelVariant v in variants) Assert.Contains(v.Id, html, StringComparison.Ordinal);
        // The lineage graph has one arrow per parent link.
        string lineage = Regex.Match(html, "<svg[^>]*class=\"lineage\".*?</svg>", RegexOptions.Singleline).Value;
        Assert.Equal(3, Regex.Count(lineage, "marker-end"));
        // General and domain data sets are told apart (the domain one is the fine-tuned variant's training data).
        Assert.Contains("PPL wiki.txt<br><small>general</small>", html, StringComparison.Ordinal);
        Assert.Contains("PPL legal.txt<br><small>domain</small>", html, StringComparison.Ordinal);
        // Lineage plus two plots (size and speed), each with frontiers for both data sets.
        Assert.Equal(3, Regex.Count(html, "<svg"));
        Assert.Contains("Perplexity against file size", html, StringComparison.Ordinal);
        Assert.Contains("Perplexity against decode speed", html, StringComparison.Ordinal);
        Assert.Contains("domain text (legal.txt): Pareto frontier", html, StringComparison.Ordinal);
        // Three recommendations, each naming a choice.
        foreach (string profile in new[] { "server", "laptop", "edge" })
            Assert.Matches($"<h3>{profile} <small>.*?</small></h3>\\n<p class=\"choice\">→ <b>", html);
        Assert.Contains("ModelSmith.Selection.Picker", html, StringComparison.Ordinal);
        // Self-contained: nothing is fetched.
        Assert.DoesNotMatch("(src|href)=\"(https?:)?//", html);
        Assert.DoesNotContain("<script src", html, StringComparison.Ordinal);
        Assert.Equal(["report.html"], Directory.GetFiles(_temp.File("out")).Select(f => Path.GetFileName(f)).ToArray());
    }

    [Fact]
    public void Report_on_an_empty_workspace_says_what_to_do()
    {
        string output = _temp.File("empty.html");
        var result = SmithProcess.Run("report", "--out", output, "--workspace", _temp.File("empty-ws"));
        Assert.True(result.ExitCode == 0, result.Error);
        string html = File.ReadAllText(output);
        Assert.Contains("No variants are registered", html, StringComparison.Ordinal);
        Assert.Contains("nothing fits", html, StringComparison.Ordinal);
    }
}
