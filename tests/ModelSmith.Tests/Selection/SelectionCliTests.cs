using System.Text.Json;
using ModelSmith.Formats;
using ModelSmith.Models;
using ModelSmith.Quantization;
using ModelSmith.Registry;
using ModelSmith.Selection;
using ModelSmith.Tests.Cli;

namespace ModelSmith.Tests.Selection;

public class EstimateCliTests
{
    [Fact]
    public void Estimate_of_a_gguf_as_json_matches_the_library_and_reports_decode_speed()
    {
        using var dir = new TempDirectory();
        string machine = dir.File("machine.json");
        MachineProfile.Save(PickerTests.Machine, machine);
        var r = SmithProcess.Run("estimate", RepoPaths.Stories260K, "--ctx", "512", "--threads", "2", "--machine", machine, "--json");
        Assert.True(r.ExitCode == 0, r.Error);
        JsonElement root = JsonDocument.Parse(r.Output).RootElement;
        MemoryEstimate expected = ResourceEstimator.EstimateMemory(ModelShape.FromGguf(RepoPaths.Stories260K), 512, 2);
        Assert.Equal(expected.Total, root.GetProperty("memory").GetProperty("total").GetInt64());
        Assert.Equal(2L * 5 * 512 * 4 * 8 * 4, root.GetProperty("memory").GetProperty("kv_cache").GetInt64());
        Assert.True(root.GetProperty("exact_tensors").GetBoolean());
        Assert.True(root.GetProperty("decode").GetProperty("tokens_per_second").GetDouble() > 0);
    }

    [Fact]
    public void Estimate_measures_the_fixed_costs_of_a_cached_profile_again_unless_told_not_to()
    {
        using var dir = new TempDirectory();
        string machine = dir.File("machine.json");
        DateTime measured = new(2026, 1, 2, 3, 4, 5, DateTimeKind.Utc);
        MachineProfile cached = PickerTests.Machine with { Machine = MachineProfile.ThisMachine(), MeasuredUtc = measured };
        MachineProfile.Save(cached, machine);
        JsonElement Decode(params string[] extra)
        {
            var r = SmithProcess.Run(["estimate", RepoPaths.Stories260K, "--ctx", "512", "--threads", "2", "--machine", machine, "--json", .. extra]);
            Assert.True(r.ExitCode == 0, r.Error);
            return JsonDocument.Parse(r.Output).RootElement.GetProperty("decode");
        }

        JsonElement asCached = Decode("--no-refresh");
        Assert.Equal(measured, asCached.GetProperty("machine_measured_utc").GetDateTime().ToUniversalTime());
        Assert.Equal(cached.BandwidthBytesPerSecond, asCached.GetProperty("bandwidth_bytes_per_second").GetDouble());
        Assert.Equal(ResourceEstimator.FixedSeconds(ModelShape.FromGguf(RepoPaths.Stories260K), cached), asCached.GetProperty("overhead_seconds").GetDouble(), 12);

        JsonElement refreshed = Decode();
        Assert.InRange(DateTime.UtcNow - refreshed.GetProperty("machine_measured_utc").GetDateTime().ToUniversalTime(), TimeSpan.Zero, TimeSpan.FromMinutes(5));
        Assert.NotEqual(asCached.GetProperty("overhead_seconds").GetDouble(), refreshed.GetProperty("overhead_seconds").GetDouble());
        // The cache file itself is left as it was measured.
        Assert.Equal(measured, MachineProfile.TryLoad(machine)!.MeasuredUtc);
    }

    [Fact]
    public void Estimate_from_numbers_plans_the_q4_k_m_mix_and_sizes_the_kv_cache()
    {
        var r = SmithProcess.Run("estimate", "--params", "8B", "--type", "q4_k_m", "--ctx", "8192", "--layers", "32", "--kv-heads", "8",
            "--head-dim", "128", "--vocab", "128256", "--no-speed", "--json");
        Assert.True(r.ExitCode == 0, r.Error);
        JsonElement root = JsonDocument.Parse(r.Output).RootElement;
        Assert.InRange(root.GetProperty("bits_per_weight").GetDouble(), 4.7, 5.0);
        Assert.Equal(2L << 30, root.GetProperty("memory").GetProperty("kv_cache").GetInt64());
        Assert.Equal(4096, root.GetProperty("embedding").GetInt32());
        Assert.False(root.TryGetProperty("decode", out _));
    }

    [Fact]
    public void Estimate_reads_a_hugging_face_config_and_prints_a_table()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("config.json"), """
            { "model_type": "llama", "hidden_size": 2048, "num_hidden_layers": 22, "num_attention_heads": 32,
              "num_key_value_heads": 4, "intermediate_size": 5632, "rms_norm_eps": 1e-5, "vocab_size": 32000,
              "max_position_embeddings": 2048, "tie_word_embeddings": false, "torch_dtype": "bfloat16" }
            """);
        var r = SmithProcess.Run("estimate", dir.Path, "--no-speed");
        Assert.True(r.ExitCode == 0, r.Error);
        Assert.Contains("1.10B", r.Output, StringComparison.Ordinal);
        Assert.Contains("BF16", r.Output, StringComparison.Ordinal);
        Assert.Contains("peak memory", r.Output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--params", "8B")]
    [InlineData("--params", "lots", "--layers", "2", "--kv-heads", "2", "--head-dim", "64")]
    [InlineData("--params", "1B", "--layers", "2", "--kv-heads", "2", "--head-dim", "64", "--type", "q9_z")]
    [InlineData("--params", "1B", "--layers", "2", "--kv-heads", "2", "--head-dim", "64", "--ctx", "0")]
    public void Impossible_estimates_exit_with_code_2_and_say_what_to_give(params string[] options)
    {
        var r = SmithProcess.Run(["estimate", .. options, "--no-speed"]);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("error:", r.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_missing_model_file_exits_with_code_1_naming_it()
    {
        var r = SmithProcess.Run("estimate", "no-such-model.gguf", "--no-speed");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("no-such-model.gguf", r.Error, StringComparison.Ordinal);
    }
}

public class PickCliTests
{
    private static readonly ModelConfig Config = new()
    {
        Architecture = ModelArchitecture.Llama,
        VocabSize = 512,
        ContextLength = 256,
        EmbeddingLength = 256,
        BlockCount = 2,
        FeedForwardLength = 768,
        HeadCount = 4,
        KvHeadCount = 2,
        HeadDim = 64,
        NormEpsilon = 1e-5f,
        RopeDims = 64,
        TiedOutput = true,
    };

    /// <summary>A workspace with base, fine-tuned and their Q4_K_M variants, perplexities on wiki and legal, one bench.</summary>
    private static (string Workspace, string Machine) Prepare(TempDirectory dir)
    {
        string Write(string name, ulong seed)
        {
            string path = dir.File(name + ".gguf");
            SyntheticModel.Write(path, Config, GgmlType.F32, seed);
            return path;
        }
        string Quantize(string input, string name)
        {
            string path = dir.File(name + ".gguf");
            ModelQuantizer.Quantize(input, path, new QuantizeOptions { FileType = QuantFileType.Q4_K_M, Threads = 1 });
            return path;
        }
        string basePath = Write("base", 1), ftPath = Write("ft", 2);
        string baseQ4 = Quantize(basePath, "base-q4"), ftQ4 = Quantize(ftPath, "ft-q4");
        Workspace ws = Workspace.Open(dir.File("ws"));
        ModelVariant b = ws.Register(new ModelRegistration { Path = basePath, Name = "base" });
        ModelVariant ft = ws.Register(new ModelRegistration { Path = ftPath, Name = "ft", Kind = VariantKind.FineTuned, Parents = [b.Id] });
        ModelVariant bq = ws.Register(new ModelRegistration { Path = baseQ4, Name = "base-q4", Kind = VariantKind.Quantized, Parents = [b.Id] });
        ModelVariant fq = ws.Register(new ModelRegistration { Path = ftQ4, Name = "ft-q4", Kind = VariantKind.Quantized, Parents = [ft.Id] });
        void Eval(ModelVariant v, string data, double ppl) =>
            ws.RecordEval(v.Id, new EvalResult { Data = new DataFingerprint(data, new string('0', 64), 1000), Context = 128, Perplexity = ppl });
        Eval(b, "wiki.txt.gz", 10); Eval(b, "legal.txt.gz", 20);
        Eval(ft, "wiki.txt.gz", 11); Eval(ft, "legal.txt.gz", 12);
        Eval(bq, "wiki.txt.gz", 10.5); Eval(bq, "legal.txt.gz", 21);
        Eval(fq, "wiki.txt.gz", 11.5); Eval(fq, "legal.txt.gz", 12.5);
        ws.RecordBench(b.Id, new BenchResult { GeneratedTokens = 128, DecodeTokensPerSecond = 5, PeakResidentBytes = 60 << 20, Threads = 2, Repetitions = 1 });
        string machine = dir.File("machine.json");
        MachineProfile.Save(PickerTests.Machine, machine);
        return (dir.File("ws"), machine);
    }

    [Fact]
    public void Pick_chooses_by_domain_respects_the_limits_and_explains_itself()
    {
        using var dir = new TempDirectory();
        var (ws, machine) = Prepare(dir);

        var roomy = SmithProcess.Run("pick", "--memory", "1GiB", "--domain", "legal", "--workspace", ws, "--machine", machine, "--json");
        Assert.True(roomy.ExitCode == 0, roomy.Error);
        JsonElement root = JsonDocument.Parse(roomy.Output).RootElement;
        JsonElement chosen = Choice(root);
        Assert.Equal("ft", chosen.GetProperty("name").GetString());
        Assert.Equal("legal.txt.gz", root.GetProperty("dataset").GetString());
        Assert.Contains(root.GetProperty("explanation").EnumerateArray(), l => l.GetString()!.StartsWith("Fine-tuned for the domain", StringComparison.Ordinal));

        // The base's measured 5 tok/s is under the floor; the rest are estimated, and flagged as such.
        var floor = SmithProcess.Run("pick", "--memory", "1GiB", "--min-tps", "10", "--domain", "wiki.txt.gz", "--workspace", ws, "--machine", machine, "--json");
        Assert.True(floor.ExitCode == 0, floor.Error);
        root = JsonDocument.Parse(floor.Output).RootElement;
        JsonElement baseModel = root.GetProperty("candidates").EnumerateArray().Single(c => c.GetProperty("name").GetString() == "base");
        Assert.False(baseModel.GetProperty("feasible").GetBoolean());
        Assert.True(baseModel.GetProperty("speed_measured").GetBoolean());
        chosen = Choice(root);
        Assert.Equal("base-q4", chosen.GetProperty("name").GetString());
        Assert.False(chosen.GetProperty("speed_measured").GetBoolean());

        // Memory for the quantized variants only: the fine-tuned one, quantized.
        long limit = ResourceEstimator.EstimateMemory(ModelShape.FromGguf(dir.File("ft-q4.gguf")), 2048, 2).Total + (256 << 10);
        var tight = SmithProcess.Run("pick", "--memory", limit.ToString(System.Globalization.CultureInfo.InvariantCulture), "--domain", "legal.txt.gz", "--workspace", ws, "--machine", machine);
        Assert.True(tight.ExitCode == 0, tight.Error);
        string text = string.Join(' ', tight.Output.Split((char[])[' ', '\n', '\r'], StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("Pick ft-q4 (fine-tuned, then quantized", text, StringComparison.Ordinal);
    }

    [Fact]
    public void When_nothing_fits_pick_exits_1_and_says_what_would()
    {
        using var dir = new TempDirectory();
        var (ws, machine) = Prepare(dir);
        var r = SmithProcess.Run("pick", "--memory", "20MiB", "--workspace", ws, "--machine", machine, "--json");
        Assert.Equal(1, r.ExitCode);
        JsonElement root = JsonDocument.Parse(r.Output).RootElement;
        Assert.Equal(JsonValueKind.Null, root.GetProperty("choice").ValueKind);
        Assert.Contains(root.GetProperty("suggestions").EnumerateArray(), s => s.GetString()!.StartsWith("More memory", StringComparison.Ordinal));
    }

    [Fact]
    public void Without_variants_pick_advises_a_type_from_the_estimator_alone()
    {
        using var dir = new TempDirectory();
        string machine = dir.File("machine.json");
        MachineProfile.Save(PickerTests.Machine, machine);
        var none = SmithProcess.Run("pick", "--memory", "1GiB", "--workspace", dir.File("empty"), "--machine", machine);
        Assert.Equal(1, none.ExitCode);
        Assert.Contains("no variants are registered", none.Error, StringComparison.Ordinal);

        var advice = SmithProcess.Run("pick", "--memory", "1GiB", "--workspace", dir.File("empty"), "--machine", machine, "--model", RepoPaths.Stories260K, "--json");
        Assert.True(advice.ExitCode == 0, advice.Error);
        Assert.Equal("F32", JsonDocument.Parse(advice.Output).RootElement.GetProperty("recommended_type").GetString());
    }

    [Theory]
    [InlineData("--memory", "lots")]
    [InlineData("--memory", "1GiB", "--max-loss", "much")]
    [InlineData("--memory", "1GiB", "--min-tps", "-3")]
    [InlineData("--memory", "1GiB", "--ctx", "0")]
    public void Impossible_picks_exit_with_code_2(params string[] options)
    {
        using var dir = new TempDirectory();
        var r = SmithProcess.Run(["pick", .. options, "--workspace", dir.File("ws")]);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("error:", r.Error, StringComparison.Ordinal);
    }

    private static JsonElement Choice(JsonElement root)
    {
        string id = root.GetProperty("choice").GetString()!;
        return root.GetProperty("candidates").EnumerateArray().Single(c => c.GetProperty("id").GetString() == id);
    }
}
