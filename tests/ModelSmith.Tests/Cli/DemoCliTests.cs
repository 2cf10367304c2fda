using System.Text.Json;
using Xunit.Abstractions;

namespace ModelSmith.Tests.Cli;

/// <summary>
/// `smith demo --quick` end to end: pretrain, fine-tune (full and LoRA), quantize, evaluate, bench, pick and report,
/// each a real smith command. Asserts the shape of the result, not its speed (2 minutes on a quiet 2-core machine;
/// the limit here leaves room for a busy one).
/// </summary>
public class DemoCliTests(ITestOutputHelper output)
{
    [Fact]
    public void Quick_demo_fine_tunes_beat_the_base_on_the_domain_quantization_keeps_quality_and_picks_respect_their_limits()
    {
        using var workspace = new TempDirectory();
        SmithProcess.Result r = SmithProcess.Run(TimeSpan.FromMinutes(8), "demo", "--quick", "--json", "--workspace", workspace.Path);
        output.WriteLine(r.Output);
        Assert.True(r.ExitCode == 0, r.Error + r.Output);
        using JsonDocument doc = JsonDocument.Parse(r.Output);
        JsonElement root = doc.RootElement;
        output.WriteLine($"elapsed {root.GetProperty("elapsed_s").GetDouble()} s");

        var variants = root.GetProperty("variants").EnumerateArray().ToDictionary(v => v.GetProperty("name").GetString()!);
        Assert.Equal(9, variants.Count);
        double BaseDomain() => variants["base"].GetProperty("ppl_domain").GetDouble();
        Assert.True(variants["ft-full"].GetProperty("ppl_domain").GetDouble() < BaseDomain(), "full fine-tune must beat the base on the domain");
        Assert.True(variants["ft-lora"].GetProperty("ppl_domain").GetDouble() < BaseDomain(), "LoRA fine-tune must beat the base on the domain");

        foreach (string parent in new[] { "base", "ft-full" })
        {
            JsonElement p = variants[parent];
            JsonElement q8 = variants[parent + "-q8_0"];
            JsonElement q4km = variants[parent + "-q4_k_m"];
            Assert.Equal(p.GetProperty("id").GetString(), q8.GetProperty("parent").GetString());
            foreach (string metric in new[] { "ppl_general", "ppl_domain" })
            {
                double change = Math.Abs(q8.GetProperty(metric).GetDouble() / p.GetProperty(metric).GetDouble() - 1);
                Assert.True(change <= 0.01, $"{parent}-q8_0 {metric} moved {change:P2} from its parent");
            }
            Assert.True(q4km.GetProperty("file_bytes").GetInt64() < q8.GetProperty("file_bytes").GetInt64());
            Assert.True(q8.GetProperty("file_bytes").GetInt64() < p.GetProperty("file_bytes").GetInt64());
            Assert.True(q4km.GetProperty("decode_tps").GetDouble() > 0);
        }

        var picks = root.GetProperty("picks").EnumerateArray().ToList();
        Assert.Equal(["server", "laptop", "edge"], picks.Select(p => p.GetProperty("profile").GetString()));
        foreach (JsonElement p in picks)
        {
            string? choice = p.GetProperty("choice").GetString();
            Assert.NotNull(choice);
            Assert.True(p.GetProperty("choice_memory_bytes").GetInt64() <= p.GetProperty("memory_bytes").GetInt64());
            Assert.True(p.GetProperty("choice_tps").GetDouble() >= p.GetProperty("min_tps").GetDouble());
            Assert.NotEmpty(p.GetProperty("explanation").EnumerateArray());
        }
        // Only 4-bit variants fit the edge budget, and the domain profiles choose a fine-tuned lineage.
        Assert.Contains("q4", picks[2].GetProperty("choice").GetString()!, StringComparison.Ordinal);
        Assert.StartsWith("ft-", picks[1].GetProperty("choice").GetString()!, StringComparison.Ordinal);
        Assert.StartsWith("ft-", picks[2].GetProperty("choice").GetString()!, StringComparison.Ordinal);
        Assert.All(root.GetProperty("checks").EnumerateArray(), c => Assert.True(c.GetProperty("passed").GetBoolean(), c.GetProperty("check").GetString()));

        string report = File.ReadAllText(root.GetProperty("report").GetString()!);
        Assert.Contains("<h2>Lineage</h2>", report, StringComparison.Ordinal);
        Assert.Contains("<svg", report, StringComparison.Ordinal);
        Assert.Contains("ft-full-q4_k_m", report, StringComparison.Ordinal);

        SmithProcess.Result lineage = SmithProcess.Run("lineage", "--workspace", workspace.Path);
        Assert.Equal(0, lineage.ExitCode);
        Assert.Contains("ft-full-q4_k_m", lineage.Output, StringComparison.Ordinal);
    }
}
