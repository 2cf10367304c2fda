using System.Text.Json;
using ModelSmith.Formats;
using ModelSmith.Tests.Training;
using ModelSmith.Training;

namespace ModelSmith.Tests.Cli;

public class MergeCliTests
{
    [Fact]
    public void Merge_as_json_writes_the_model_the_library_merges_and_reports_its_lineage()
    {
        LoraParameters lora = LoraMergeTests.StoriesAdapter(new LoraOptions { Rank = 2, Alpha = 4, RankStabilized = true, Modules = ["attn_k", "ffn_gate"] }, 7);
        using var dir = new TempDirectory();
        PeftAdapter.Write(lora, dir.File("peft"), "stories260K");

        var result = SmithProcess.Run("merge", RepoPaths.Stories260K, dir.File("peft"), "--out", dir.File("merged.gguf"), "--scale", "0.5", "--json");

        Assert.Equal(0, result.ExitCode);
        using var json = JsonDocument.Parse(result.Output);
        JsonElement r = json.RootElement;
        Assert.Equal(dir.File("merged.gguf"), r.GetProperty("output").GetString());
        Assert.Equal(RepoPaths.Stories260K, r.GetProperty("parent").GetString());
        Assert.Equal(dir.File("peft"), r.GetProperty("adapter").GetString());
        Assert.Equal("peft", r.GetProperty("adapter_format").GetString());
        Assert.Equal(2, r.GetProperty("rank").GetInt32());
        Assert.True(r.GetProperty("rslora").GetBoolean());
        Assert.Equal(["attn_k", "ffn_gate"], r.GetProperty("modules").EnumerateArray().Select(e => e.GetString()!));
        Assert.Equal(0.5 * 4 / Math.Sqrt(2), r.GetProperty("scale").GetDouble(), 1e-6);
        Assert.Equal(10, r.GetProperty("merged_tensors").GetInt32());

        LoraMerge.Merge(RepoPaths.Stories260K, dir.File("peft"), dir.File("library.gguf"), 0.5f);
        Assert.Equal(File.ReadAllBytes(dir.File("library.gguf")), File.ReadAllBytes(dir.File("merged.gguf")));
    }

    [Fact]
    public void Merge_shows_a_summary_table_without_json()
    {
        LoraParameters lora = LoraMergeTests.StoriesAdapter(new LoraOptions { Rank = 2, Alpha = 4, Modules = ["attn_v"] }, 8);
        using var dir = new TempDirectory();
        TrainingGguf.ExportAdapter(lora, dir.File("adapter.gguf"));

        var result = SmithProcess.Run("merge", RepoPaths.Stories260K, dir.File("adapter.gguf"), "-o", dir.File("merged.gguf"));

        Assert.Equal(0, result.ExitCode);
        Assert.Contains("5 tensors", result.Output, StringComparison.Ordinal);
        Assert.Contains("1 × 2 = 2", result.Output, StringComparison.Ordinal);
        Assert.Contains("merged.gguf", result.Output, StringComparison.Ordinal);
        using GgufFile merged = GgufFile.Open(dir.File("merged.gguf"));
        Assert.Equal("llama", merged.GetString("general.architecture"));
    }

    [Fact]
    public void Merge_refuses_bad_usage_with_2_and_bad_files_with_1_leaving_no_output()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("junk.gguf"), "not a gguf file at all");
        Directory.CreateDirectory(dir.File("empty"));

        var noOut = SmithProcess.Run("merge", RepoPaths.Stories260K, dir.File("junk.gguf"));
        Assert.Equal(2, noOut.ExitCode);
        var badScale = SmithProcess.Run("merge", RepoPaths.Stories260K, dir.File("junk.gguf"), "-o", dir.File("out.gguf"), "--scale", "NaN");
        Assert.Equal(2, badScale.ExitCode);
        Assert.Contains("--scale", badScale.Error, StringComparison.Ordinal);
        var overwrite = SmithProcess.Run("merge", RepoPaths.Stories260K, dir.File("junk.gguf"), "-o", RepoPaths.Stories260K);
        Assert.Equal(2, overwrite.ExitCode);

        var junk = SmithProcess.Run("merge", RepoPaths.Stories260K, dir.File("junk.gguf"), "-o", dir.File("out.gguf"));
        Assert.Equal(1, junk.ExitCode);
        Assert.Contains("junk.gguf", junk.Error, StringComparison.Ordinal);
        var empty = SmithProcess.Run("merge", RepoPaths.Stories260K, dir.File("empty"), "-o", dir.File("out.gguf"));
        Assert.Equal(1, empty.ExitCode);
        Assert.Contains("adapter_config.json", empty.Error, StringComparison.Ordinal);
        var missing = SmithProcess.Run("merge", RepoPaths.Stories260K, dir.File("nothing"), "-o", dir.File("out.gguf"));
        Assert.Equal(1, missing.ExitCode);
        Assert.False(File.Exists(dir.File("out.gguf")));
        Assert.Equal(["empty", "junk.gguf"], Directory.GetFileSystemEntries(dir.Path).Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }
}
