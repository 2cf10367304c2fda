using Microsoft.Data.Sqlite;
using ModelSmith.Formats;
using ModelSmith.Models;
using ModelSmith.Registry;
using ModelSmith.Tests.Evaluation;

namespace ModelSmith.Tests.Registry;

public sealed class WorkspaceTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private string Model(string name, ulong seed, GgmlType type = GgmlType.F32)
    {
        string path = _temp.File(name);
        SyntheticModel.Write(path, EvaluationModels.LlamaConfig(), type, seed);
        return path;
    }

    private static EvalResult Ppl(string data, double ppl) => new()
    {
        Data = new DataFingerprint(data, new string('a', 64), 1000),
        Context = 64,
        Perplexity = ppl,
        PerplexityError = 0.1,
        ScoredTokens = 480,
    };

    [Fact]
    public void A_registered_file_has_a_short_id_its_hash_and_its_gguf_summary()
    {
        var ws = Workspace.Open(_temp.File("ws"));
        string path = Model("a.gguf", 1);
        ModelVariant v = ws.Register(new ModelRegistration { Path = path });

        Assert.Equal(12, v.Id.Length);
        Assert.Equal(FileHash.Sha256(path)[..12], v.Id);
        Assert.Equal("a", v.Name);
        Assert.Equal(VariantKind.Base, v.Kind);
        Assert.Equal(new FileInfo(path).Length, v.Size);
        Assert.Equal("llama", v.Architecture);
        Assert.Equal("F32", v.TypeSummary);
        Assert.True(v.ParameterCount > 0);
        Assert.Equal(VariantStatus.Present, v.Status);
        Assert.Equal("{}", v.TransformParameters);
        Assert.True(File.Exists(ws.DatabasePath));
    }

    [Fact]
    public void Registering_the_same_bytes_twice_returns_the_first_variant()
    {
        var ws = Workspace.Open(_temp.File("ws"));
        string path = Model("a.gguf", 1);
        ModelVariant first = ws.Register(new ModelRegistration { Path = path });
        string copy = _temp.File("copy.gguf");
        File.Copy(path, copy);
        ModelVariant second = ws.Register(new ModelRegistration { Path = copy });
        Assert.Equal(first.Id, second.Id);
        Assert.Single(ws.List());
    }

    [Fact]
    public void Find_accepts_an_id_a_prefix_a_name_or_a_path()
    {
        var ws = Workspace.Open(_temp.File("ws"));
        string path = Model("alpha.gguf", 1);
        ModelVariant v = ws.Register(new ModelRegistration { Path = path, Name = "alpha" });
        ws.Register(new ModelRegistration { Path = Model("beta.gguf", 2) });

        Assert.Equal(v.Id, ws.Find(v.Id)!.Id);
        Assert.Equal(v.Id, ws.Find(v.Id[..6].ToUpperInvariant())!.Id);
        Assert.Equal(v.Id, ws.Find("alpha")!.Id);
        Assert.Equal(v.Id, ws.Find(path)!.Id);
        Assert.Null(ws.Find("gamma"));
        var e = Assert.Throws<RegistryException>(() => ws.Get("gamma"));
        Assert.Contains("smith list", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Lineage_links_base_fine_tuned_and_quantized_variants()
    {
        var ws = Workspace.Open(_temp.File("ws"));
        ModelVariant b = ws.Register(new ModelRegistration { Path = Model("base.gguf", 1) });
        ModelVariant ft = ws.Register(new ModelRegistration
        {
            Path = Model("ft.gguf", 2),
            Kind = VariantKind.FineTuned,
            Parents = [b.Id],
            Transformation = "finetune",
            TransformParameters = """{"method":"lora","rank":8}""",
            Data = [new DataFingerprint("domain.txt", new string('b', 64), 12345)],
        });
        ModelVariant q = ws.Register(new ModelRegistration { Path = Model("ft-q8.gguf", 3, GgmlType.F16), Kind = VariantKind.Quantized, Parents = ["ft"], Transformation = "quantize" });
        ModelVariant bq = ws.Register(new ModelRegistration { Path = Model("base-q8.gguf", 4, GgmlType.F16), Kind = VariantKind.Quantized, Parents = [b.Id] });
        ModelVariant other = ws.Register(new ModelRegistration { Path = Model("other.gguf", 5) });

        Assert.Equal([ft.Id], q.Parents);
        Assert.Equal("F16", q.TypeSummary);
        Assert.Equal(12345, ft.Data[0].Tokens);
        Assert.Contains("\"rank\":8", ws.Get(ft.Id).TransformParameters, StringComparison.Ordinal);
        Assert.Equal([ft.Id, bq.Id], ws.Children(b.Id).Select(c => c.Id).ToArray());

        IReadOnlyList<LineageNode> all = ws.Lineage();
        Assert.Equal([b.Id, other.Id], all.Select(n => n.Variant.Id).ToArray());
        Assert.Equal(2, all[0].Children.Count);

        IReadOnlyList<LineageNode> ofQ = ws.Lineage(q.Id);
        LineageNode root = Assert.Single(ofQ);
        Assert.Equal(b.Id, root.Variant.Id);
        LineageNode mid = Assert.Single(root.Children);
        Assert.Equal(ft.Id, mid.Variant.Id);
        Assert.Equal(q.Id, Assert.Single(mid.Children).Variant.Id);
    }

    [Fact]
    public void Registering_again_with_parents_fills_in_the_lineage_of_a_variant_registered_without()
    {
        var ws = Workspace.Open(_temp.File("ws"));
        ModelVariant b = ws.Register(new ModelRegistration { Path = Model("base.gguf", 1) });
        string path = Model("q.gguf", 2, GgmlType.F16);
        ModelVariant unknown = ws.Register(new ModelRegistration { Path = path });
        Assert.Equal(VariantKind.Base, unknown.Kind);

        ModelVariant linked = ws.Register(new ModelRegistration { Path = path, Kind = VariantKind.Quantized, Parents = [b.Id], Transformation = "quantize" });
        Assert.Equal(unknown.Id, linked.Id);
        Assert.Equal(VariantKind.Quantized, linked.Kind);
        Assert.Equal([b.Id], linked.Parents);
        Assert.Equal("quantize", linked.Transformation);
        Assert.Single(ws.Lineage());
    }

    [Fact]
    public void An_unknown_parent_is_refused_with_a_clear_message()
    {
        var ws = Workspace.Open(_temp.File("ws"));
        var e = Assert.Throws<RegistryException>(() => ws.Register(new ModelRegistration { Path = Model("a.gguf", 1), Parents = ["nosuch"] }));
        Assert.Contains("nosuch", e.Message, StringComparison.Ordinal);
        Assert.Empty(ws.List());
    }

    [Fact]
    public void Evals_and_benches_are_recorded_with_the_machine()
    {
        var ws = Workspace.Open(_temp.File("ws"));
        ModelVariant b = ws.Register(new ModelRegistration { Path = Model("base.gguf", 1) });
        ModelVariant q = ws.Register(new ModelRegistration { Path = Model("q.gguf", 2, GgmlType.F16), Kind = VariantKind.Quantized, Parents = [b.Id] });

        ws.RecordEval(b.Id, Ppl("wiki.txt", 12.5));
        EvalResult stored = ws.RecordEval(q.Id, Ppl("wiki.txt", 12.9) with { MeanKld = 0.01, SameTop1 = 0.97, ReferenceId = b.Id });
        ws.RecordEval(q.Id, new EvalResult { Data = new DataFingerprint("quiz.jsonl", new string('c', 64), 0), ScoredTokens = 20, Accuracy = 0.6, AccuracyNorm = 0.55 });
        ws.RecordBench(q.Id, new BenchResult
        {
            PromptTokens = 64, PrefillTokensPerSecond = 900, PrefillStdDev = 10,
            GeneratedTokens = 32, DecodeTokensPerSecond = 300, DecodeStdDev = 5,
            LoadSeconds = 0.02, PeakResidentBytes = 50_000_000, Threads = 2, Repetitions = 3,
        });

        Assert.True(stored.Id > 0);
        Assert.Equal(MachineInfo.Current(), stored.Machine);
        IReadOnlyList<EvalResult> evals = ws.Evals(q.Id);
        Assert.Equal(2, evals.Count);
        Assert.Equal(12.9, evals[0].Perplexity);
        Assert.Equal(b.Id, evals[0].ReferenceId);
        Assert.Equal(0.97, evals[0].SameTop1);
        Assert.Null(evals[1].Perplexity);
        Assert.Equal(0.6, evals[1].Accuracy);
        Assert.Single(ws.Evals(b.Id));
        Assert.Equal(3, ws.Evals().Count);
        BenchResult bench = Assert.Single(ws.Benches(q.Id));
        Assert.Equal(300, bench.DecodeTokensPerSecond);
        Assert.Equal(50_000_000, bench.PeakResidentBytes);
        Assert.Empty(ws.Benches(b.Id));
    }

    [Fact]
    public void A_deleted_model_file_is_reported_missing_and_its_results_remain()
    {
        var ws = Workspace.Open(_temp.File("ws"));
        string path = Model("a.gguf", 1);
        ModelVariant v = ws.Register(new ModelRegistration { Path = path });
        ws.RecordEval(v.Id, Ppl("wiki.txt", 10));
        File.Delete(path);

        Assert.Equal(VariantStatus.Missing, Assert.Single(ws.List()).Status);
        Assert.Equal(VariantStatus.Missing, ws.Get(v.Id).Status);
        Assert.Single(ws.Evals(v.Id));
        Assert.Single(ws.Lineage());
    }

    [Fact]
    public void A_file_overwritten_by_another_registered_model_marks_the_first_changed()
    {
        var ws = Workspace.Open(_temp.File("ws"));
        string path = _temp.File("out.gguf");
        SyntheticModel.Write(path, EvaluationModels.LlamaConfig(), GgmlType.F32, 1);
        ModelVariant first = ws.Register(new ModelRegistration { Path = path });
        SyntheticModel.Write(path, EvaluationModels.LlamaConfig(), GgmlType.F32, 2);
        ModelVariant second = ws.Register(new ModelRegistration { Path = path });

        Assert.NotEqual(first.Id, second.Id);
        Assert.Equal(second.Id, ws.Find(path)!.Id);
        Assert.Equal(VariantStatus.Changed, ws.Get(first.Id).Status);
        Assert.Equal(VariantStatus.Present, ws.Get(second.Id).Status);
    }

    [Fact]
    public void Copy_puts_the_file_in_the_workspace_and_the_workspace_can_move()
    {
        string root = _temp.File("ws");
        var ws = Workspace.Open(root);
        ModelVariant v = ws.Register(new ModelRegistration { Path = Model("a.gguf", 1), Copy = true });
        Assert.Equal(Path.Combine(ws.ModelsDirectory, "a.gguf"), v.Path);
        Assert.True(File.Exists(v.Path));

        string moved = _temp.File("moved");
        Directory.Move(root, moved);
        ModelVariant again = Workspace.Open(moved).Get(v.Id);
        Assert.Equal(VariantStatus.Present, again.Status);
        Assert.StartsWith(moved, again.Path, StringComparison.Ordinal);
    }

    [Fact]
    public void The_workspace_comes_from_the_environment_when_no_path_is_given()
    {
        string previous = Environment.GetEnvironmentVariable(Workspace.EnvironmentVariable) ?? "";
        try
        {
            Environment.SetEnvironmentVariable(Workspace.EnvironmentVariable, _temp.File("env-ws"));
            Assert.Equal(_temp.File("env-ws"), Workspace.ResolveRoot(null));
            Assert.Equal(_temp.File("given"), Workspace.ResolveRoot(_temp.File("given")));
        }
        finally
        {
            Environment.SetEnvironmentVariable(Workspace.EnvironmentVariable, previous.Length == 0 ? null : previous);
        }
    }

    [Fact]
    public void A_corrupt_database_is_reported_with_its_file_name()
    {
        string root = _temp.File("ws");
        Directory.CreateDirectory(root);
        string db = Path.Combine(root, "registry.db");
        File.WriteAllBytes(db, [.. Enumerable.Range(0, 4096).Select(i => (byte)(i * 7))]);
        var e = Assert.Throws<RegistryException>(() => Workspace.Open(root));
        Assert.Contains(db, e.Message, StringComparison.Ordinal);
        Assert.Contains("not a readable registry", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Another_programs_sqlite_database_is_not_taken_over()
    {
        string root = _temp.File("ws");
        Directory.CreateDirectory(root);
        string db = Path.Combine(root, "registry.db");
        using (var connection = new SqliteConnection($"Data Source={db};Pooling=False"))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "CREATE TABLE invoices (id INTEGER PRIMARY KEY)";
            command.ExecuteNonQuery();
        }
        var e = Assert.Throws<RegistryException>(() => Workspace.Open(root));
        Assert.Contains("not a ModelSmith registry", e.Message, StringComparison.Ordinal);
        Assert.Contains(db, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_database_from_a_newer_schema_is_refused()
    {
        string root = _temp.File("ws");
        Workspace.Open(root);
        using (var connection = new SqliteConnection($"Data Source={Path.Combine(root, "registry.db")};Pooling=False"))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "UPDATE schema_version SET version = 99";
            command.ExecuteNonQuery();
        }
        var e = Assert.Throws<RegistryException>(() => Workspace.Open(root));
        Assert.Contains("schema version 99", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Concurrent_writers_on_separate_connections_lose_nothing()
    {
        string root = _temp.File("ws");
        const int writers = 6;
        string[] files = Enumerable.Range(0, writers).Select(i => Model($"m{i}.gguf", (ulong)(i + 1))).ToArray();
        Exception? failure = null;
        var threads = new Thread[writers];
        using var start = new ManualResetEventSlim();
        for (int i = 0; i < writers; i++)
        {
            int w = i;
            threads[i] = new Thread(() =>
            {
                try
                {
                    start.Wait();
                    var ws = Workspace.Open(root);
                    ModelVariant v = ws.Register(new ModelRegistration { Path = files[w] });
                    ModelVariant shared = ws.Register(new ModelRegistration { Path = files[0] });
                    for (int r = 0; r < 10; r++)
                    {
                        ws.RecordEval(v.Id, Ppl("wiki.txt", 10 + r));
                        ws.RecordBench(shared.Id, new BenchResult { Threads = w + 1, DecodeTokensPerSecond = r, GeneratedTokens = 8 });
                    }
                }
                catch (Exception e)
                {
                    Interlocked.CompareExchange(ref failure, e, null);
                }
            });
            threads[i].Start();
        }
        start.Set();
        foreach (Thread t in threads) t.Join();
        Assert.Null(failure);

        var check = Workspace.Open(root);
        Assert.Equal(writers, check.List().Count);
        Assert.Equal(writers * 10, check.Evals().Count);
        Assert.Equal(writers * 10, check.Benches(files[0]).Count);
    }
}
