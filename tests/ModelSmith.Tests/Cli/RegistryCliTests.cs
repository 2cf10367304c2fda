using System.Text.Json;
using ModelSmith.Models;
using ModelSmith.Tests.Evaluation;

namespace ModelSmith.Tests.Cli;

/// <summary>smith add, list, show, lineage, and the recording done by quantize, eval and bench, on a temp workspace.</summary>
public sealed class RegistryCliTests : IDisposable
{
    private static readonly string s_humor = Path.Combine(RepoPaths.Root, "data", "brown", "humor.txt.gz");
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private string Workspace => _temp.File("ws");

    private SmithProcess.Result Smith(params string[] args) => SmithProcess.Run([.. args, "--workspace", Workspace]);

    private string Stories()
    {
        string path = _temp.File("stories.gguf");
        if (!File.Exists(path)) File.Copy(RepoPaths.Stories260K, path);
        return path;
    }

    private static JsonElement Json(SmithProcess.Result result)
    {
        Assert.True(result.ExitCode == 0, result.Error);
        return JsonDocument.Parse(result.Output).RootElement;
    }

    [Fact]
    public void Add_list_show_and_lineage_describe_a_registered_model()
    {
        string stories = Stories();
        JsonElement added = Json(Smith("add", stories, "--name", "stories", "--json"));
        string id = added.GetProperty("id").GetString()!;
        Assert.Equal(12, id.Length);
        Assert.Equal("base", added.GetProperty("kind").GetString());
        Assert.Equal("llama", added.GetProperty("architecture").GetString());

        JsonElement list = Json(Smith("list", "--json"));
        JsonElement only = Assert.Single(list.GetProperty("variants").EnumerateArray().ToList());
        Assert.Equal(id, only.GetProperty("id").GetString());
        Assert.Equal("present", only.GetProperty("status").GetString());

        var table = Smith("list");
        Assert.Equal(0, table.ExitCode);
        Assert.Contains(id, table.Output, StringComparison.Ordinal);
        Assert.Contains("stories", table.Output, StringComparison.Ordinal);

        JsonElement shown = Json(Smith("show", id[..6], "--json"));
        Assert.Equal(id, shown.GetProperty("id").GetString());
        Assert.Equal(0, shown.GetProperty("evals").GetArrayLength());

        var lineage = Smith("lineage");
        Assert.Equal(0, lineage.ExitCode);
        Assert.Contains($"stories ({id}, base, F32)", lineage.Output, StringComparison.Ordinal);
    }

    [Fact]
    public void Quantize_eval_and_bench_record_into_the_workspace()
    {
        string stories = Stories();
        string quantized = _temp.File("stories-q4_k_m.gguf");
        JsonElement q = Json(Smith("quantize", stories, "--type", "q4_k_m", "-o", quantized, "--json"));
        string qid = q.GetProperty("variant_id").GetString()!;
        string parent = q.GetProperty("parent_id").GetString()!;

        JsonElement e = Json(Smith("eval", quantized, "--data", s_humor, "--ctx", "64", "--chunks", "2", "--parent", stories, "--threads", "1", "--json"));
        Assert.Equal(qid, e.GetProperty("variant_id").GetString());
        Assert.Equal(0, Smith("eval", quantized, "--data", s_humor, "--ctx", "64", "--chunks", "2", "--threads", "1", "--no-record").ExitCode);
        Json(Smith("bench", quantized, "--pp", "16", "--tg", "4", "--reps", "1", "--threads", "1", "--json"));

        JsonElement shown = Json(Smith("show", qid, "--json"));
        Assert.Equal("quantized", shown.GetProperty("kind").GetString());
        Assert.Equal(parent, shown.GetProperty("parents")[0].GetString());
        Assert.Equal("quantize", shown.GetProperty("transformation").GetString());
        Assert.Equal("Q4_K_M", shown.GetProperty("transform_parameters").GetProperty("type").GetString());
        JsonElement eval = Assert.Single(shown.GetProperty("evals").EnumerateArray().ToList());
        Assert.Equal("humor.txt.gz", eval.GetProperty("data").GetProperty("name").GetString());
        Assert.True(eval.GetProperty("data").GetProperty("tokens").GetInt64() > 128);
        Assert.True(eval.GetProperty("perplexity").GetDouble() > 1);
        Assert.True(eval.GetProperty("mean_kld").GetDouble() >= 0);
        Assert.Equal(parent, eval.GetProperty("reference").GetString());
        Assert.Equal(Environment.ProcessorCount, eval.GetProperty("machine").GetProperty("cores").GetInt32());
        JsonElement bench = Assert.Single(shown.GetProperty("benches").EnumerateArray().ToList());
        Assert.True(bench.GetProperty("tg_tps").GetDouble() > 0);
        Assert.Equal(16, bench.GetProperty("n_prompt").GetInt32());

        var lineage = Smith("lineage", qid);
        Assert.Equal(0, lineage.ExitCode);
        Assert.Contains($"stories ({parent}, base, F32) ─→ stories-q4_k_m ({qid}, quantized, Q4_K_M)", lineage.Output, StringComparison.Ordinal);
    }

    [Fact]
    public void Lineage_fans_out_children_below_their_parent()
    {
        var ids = new List<string>();
        for (int i = 0; i < 3; i++)
        {
            string path = _temp.File($"v{i}.gguf");
            SyntheticModel.Write(path, EvaluationModels.LlamaConfig(), seed: (ulong)(20 + i));
            string[] parent = i == 0 ? [] : ["--kind", "fine-tuned", "--parent", ids[0]];
            ids.Add(Json(Smith(["add", path, "--name", $"v{i}", "--json", .. parent])).GetProperty("id").GetString()!);
        }
        string[] lines = Smith("lineage").Output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        Assert.StartsWith($"v0 ({ids[0]}, base, F32) ─┬→ v1 ({ids[1]}, fine-tuned, F32)", lines[0], StringComparison.Ordinal);
        int fork = lines[0].IndexOf('┬', StringComparison.Ordinal);
        Assert.Equal(fork, lines[1].IndexOf('└', StringComparison.Ordinal));
        Assert.EndsWith($"└→ v2 ({ids[2]}, fine-tuned, F32)", lines[1], StringComparison.Ordinal);
    }

    [Fact]
    public void Several_smith_processes_register_into_one_workspace_at_once()
    {
        var files = new List<string>();
        for (int i = 0; i < 4; i++)
        {
            string path = _temp.File($"m{i}.gguf");
            SyntheticModel.Write(path, EvaluationModels.LlamaConfig(), seed: (ulong)(10 + i));
            files.Add(path);
        }
        SmithProcess.Result[] results = files.AsParallel().WithDegreeOfParallelism(4).Select(f => Smith("add", f)).ToArray();
        foreach (var r in results) Assert.True(r.ExitCode == 0, r.Error);
        Assert.Equal(4, Json(Smith("list", "--json")).GetProperty("variants").GetArrayLength());
    }

    [Fact]
    public void A_deleted_model_is_listed_as_missing()
    {
        string stories = Stories();
        Assert.Equal(0, Smith("add", stories).ExitCode);
        File.Delete(stories);
        var list = Smith("list");
        Assert.Equal(0, list.ExitCode);
        Assert.Contains("missing", list.Output, StringComparison.Ordinal);
        Assert.Contains("missing", Smith("lineage").Output, StringComparison.Ordinal);
    }

    [Fact]
    public void A_corrupt_registry_fails_naming_the_database_file()
    {
        Directory.CreateDirectory(Workspace);
        string db = Path.Combine(Workspace, "registry.db");
        File.WriteAllText(db, new string('x', 5000));
        var result = Smith("list");
        Assert.Equal(1, result.ExitCode);
        Assert.Contains(db, result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Unknown_ids_and_kinds_are_reported()
    {
        var show = Smith("show", "nosuchmodel");
        Assert.Equal(1, show.ExitCode);
        Assert.Contains("'nosuchmodel' is not a registered variant", show.Error, StringComparison.Ordinal);
        var kind = Smith("add", Stories(), "--kind", "distilled");
        Assert.Equal(2, kind.ExitCode);
        Assert.Contains("--kind 'distilled'", kind.Error, StringComparison.Ordinal);
        var parent = Smith("add", Stories(), "--kind", "fine-tuned", "--parent", "nosuch");
        Assert.Equal(1, parent.ExitCode);
        Assert.Contains("parent 'nosuch' is not registered", parent.Error, StringComparison.Ordinal);
    }
}
