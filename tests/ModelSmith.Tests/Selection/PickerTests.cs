using ModelSmith.Formats;
using ModelSmith.Models;
using ModelSmith.Quantization;
using ModelSmith.Registry;
using ModelSmith.Selection;

namespace ModelSmith.Tests.Selection;

public class PickerTests
{
    /// <summary>A fixed machine: 20 GB/s, every kernel as fast as memory at every working set, 0.1 ms + 0.01 ms/layer per token, 2 µs more per Q8_0 matmul and 3 µs per Q6_K one.</summary>
    internal static MachineProfile Machine { get; } = new()
    {
        Machine = "test",
        Threads = 2,
        BandwidthBytesPerSecond = 20e9,
        DecodeBytesPerSecond = MachineProfile.KernelTypes.ToDictionary(t => t, _ => (IReadOnlyList<double>)MachineProfile.RateSizes.Select(_ => 20e9).ToArray()),
        TokenOverheadSeconds = 1e-4,
        LayerOverheadSeconds = 1e-5,
        MatmulOverheadSeconds = new Dictionary<GgmlType, double> { [GgmlType.F32] = 0, [GgmlType.Q8_0] = 2e-6, [GgmlType.Q6_K] = 3e-6 },
    };

    // A 1B Llama: F16 ≈ 2 GiB, Q8_0 ≈ 1.1 GiB, Q4_K_M ≈ 0.65 GiB of weights.
    private static readonly ModelShape BaseShape = ModelShape.FromNumbers(1_000_000_000, 16, 8, 64, 32000, 2048, GgmlType.F16);

    private static Candidate Make(string id, VariantKind kind, ModelShape shape, double? tps = null, bool fineTunedAncestor = false,
        string[]? parents = null, params (string Dataset, double Ppl)[] quality) =>
        new(id, id, kind, parents ?? [], fineTunedAncestor, shape, tps, null, quality.Select(q => new QualityScore(q.Dataset, null, q.Ppl)).ToList());

    /// <summary>base, fine-tuned, both quantized to Q8_0 and Q4_K_M; general text "wiki" and domain "legal".</summary>
    private static List<Candidate> Lineage() =>
    [
        Make("base", VariantKind.Base, BaseShape, null, false, null, ("wiki.txt", 10.0), ("legal.txt", 20.0)),
        Make("base-q8", VariantKind.Quantized, BaseShape.Quantized(QuantFileType.Q8_0), null, false, ["base"], ("wiki.txt", 10.05), ("legal.txt", 20.1)),
        Make("base-q4", VariantKind.Quantized, BaseShape.Quantized(QuantFileType.Q4_K_M), null, false, ["base"], ("wiki.txt", 10.6), ("legal.txt", 21.0)),
        Make("ft", VariantKind.FineTuned, BaseShape, null, false, ["base"], ("wiki.txt", 11.0), ("legal.txt", 12.0)),
        Make("ft-q8", VariantKind.Quantized, BaseShape.Quantized(QuantFileType.Q8_0), null, true, ["ft"], ("wiki.txt", 11.05), ("legal.txt", 12.06)),
        Make("ft-q4", VariantKind.Quantized, BaseShape.Quantized(QuantFileType.Q4_K_M), null, true, ["ft"], ("wiki.txt", 11.6), ("legal.txt", 12.7)),
    ];

    [Fact]
    public void Every_pick_respects_its_memory_limit_and_speed_floor()
    {
        List<Candidate> candidates = Lineage();
        foreach (long memory in new[] { 256L << 20, 1L << 30, 3L << 29, 2L << 30, 4L << 30, 64L << 30 })
        {
            foreach (double floor in new[] { 0.0, 5, 10, 20, 40, 1000 })
            {
                foreach (string? domain in new[] { null, "legal.txt" })
                {
                    var request = new PickRequest(memory, floor, domain is null ? null : new DatasetKey(domain, null), 0, 2048);
                    PickResult r = Picker.Pick(candidates, request, Machine);
                    if (r.Choice is Judged c)
                    {
                        Assert.True(c.Memory.Total <= memory, $"{c.Candidate.Id} needs {c.Memory.Total} > {memory}");
                        Assert.True(floor == 0 || c.TokensPerSecond >= floor, $"{c.Candidate.Id} decodes {c.TokensPerSecond} < {floor}");
                        Assert.All(r.Candidates.Where(j => j.Feasible), j => Assert.True(j.Perplexity >= c.Perplexity));
                        Assert.Empty(r.Suggestions);
                    }
                    else
                    {
                        Assert.DoesNotContain(r.Candidates, j => j.Feasible);
                        Assert.NotEmpty(r.Suggestions);
                    }
                }
            }
        }
    }

    [Fact]
    public void A_domain_picks_the_fine_tuned_variant_and_general_text_picks_the_base()
    {
        List<Candidate> candidates = Lineage();
        PickResult general = Picker.Pick(candidates, new PickRequest(64L << 30, Domain: new DatasetKey("wiki.txt", null)), Machine);
        Assert.Equal("base", general.Choice!.Candidate.Id);
        Assert.Contains(general.Explanation, l => l.Contains("general ability", StringComparison.Ordinal) || l.Contains("base model", StringComparison.Ordinal));

        PickResult domain = Picker.Pick(candidates, new PickRequest(64L << 30, Domain: new DatasetKey("legal", null)), Machine);
        Assert.Equal("ft", domain.Choice!.Candidate.Id);
        Assert.Equal("legal.txt", domain.Dataset);
        Assert.Contains(domain.Explanation, l => l.StartsWith("Fine-tuned for the domain", StringComparison.Ordinal));
    }

    [Fact]
    public void Without_a_domain_the_yardstick_is_general_text_not_the_fine_tuning_data()
    {
        List<Candidate> candidates = Lineage();
        // "legal.txt" sorts first and every variant is measured on it, but the fine-tuned variant was trained on it.
        candidates[3] = candidates[3] with { TrainedOn = [new DatasetKey("legal.txt", null)] };
        PickResult r = Picker.Pick(candidates, new PickRequest(64L << 30), Machine);
        Assert.Equal("wiki.txt", r.Dataset);
        Assert.Equal("base", r.Choice!.Candidate.Id);
    }

    [Fact]
    public void Tight_memory_with_a_domain_picks_the_fine_tuned_then_quantized_variant()
    {
        PickResult r = Picker.Pick(Lineage(), new PickRequest(1L << 30, Domain: new DatasetKey("legal.txt", null)), Machine);
        Assert.Equal("ft-q4", r.Choice!.Candidate.Id);
        Assert.Equal("fine-tuned, then quantized", r.Choice.Candidate.Role);
        Assert.Contains(r.Explanation, l => l.StartsWith("Fine-tuned, then quantized", StringComparison.Ordinal));
    }

    [Fact]
    public void Tight_memory_without_a_domain_picks_a_quantized_base_and_says_why()
    {
        PickResult r = Picker.Pick(Lineage(), new PickRequest(3L << 29, Domain: new DatasetKey("wiki.txt", null)), Machine);
        Assert.Equal("base-q8", r.Choice!.Candidate.Id);
        Assert.Contains(r.Explanation, l => l.StartsWith("Quantized because its unquantized parent base needs", StringComparison.Ordinal));
    }

    [Fact]
    public void Max_loss_trades_a_little_perplexity_for_the_smallest_variant_within_it()
    {
        List<Candidate> candidates = Lineage();
        var legal = new DatasetKey("legal.txt", null);
        Assert.Equal("ft", Picker.Pick(candidates, new PickRequest(64L << 30, Domain: legal), Machine).Choice!.Candidate.Id);
        PickResult onePercent = Picker.Pick(candidates, new PickRequest(64L << 30, Domain: legal, MaxLoss: 0.01), Machine);
        Assert.Equal("ft-q8", onePercent.Choice!.Candidate.Id);
        Assert.Equal(0.005, onePercent.Choice.Loss!.Value, 1e-9);
        PickResult tenPercent = Picker.Pick(candidates, new PickRequest(64L << 30, Domain: legal, MaxLoss: 0.10), Machine);
        Assert.Equal("ft-q4", tenPercent.Choice!.Candidate.Id);
        Assert.Contains(tenPercent.Explanation, l => l.Contains("--max-loss 10%", StringComparison.Ordinal));
    }

    [Fact]
    public void Ties_in_perplexity_go_to_more_bits_unless_a_loss_is_allowed_then_the_faster_then_the_id()
    {
        ModelShape q8 = BaseShape.Quantized(QuantFileType.Q8_0);
        List<Candidate> tie =
        [
            Make("b-big", VariantKind.Base, BaseShape, null, false, null, ("wiki.txt", 10.0)),
            Make("a-small", VariantKind.Quantized, q8, null, false, null, ("wiki.txt", 10.0)),
        ];
        Assert.Equal("b-big", Picker.Pick(tie, new PickRequest(64L << 30), Machine).Choice!.Candidate.Id);
        Assert.Equal("a-small", Picker.Pick(tie, new PickRequest(64L << 30, MaxLoss: 0.01), Machine).Choice!.Candidate.Id);

        // A quantized copy measuring a hair better than its parent is noise: the parent stays the pick.
        List<Candidate> noise =
        [
            Make("parent", VariantKind.Base, BaseShape, null, false, null, ("wiki.txt", 10.0)),
            Make("copy", VariantKind.Quantized, q8, null, false, ["parent"], ("wiki.txt", 9.995)),
        ];
        Assert.Equal("parent", Picker.Pick(noise, new PickRequest(64L << 30), Machine).Choice!.Candidate.Id);

        List<Candidate> same =
        [
            Make("b", VariantKind.Quantized, q8, 30, false, null, ("wiki.txt", 10.0)),
            Make("c", VariantKind.Quantized, q8, 50, false, null, ("wiki.txt", 10.0)),
            Make("a", VariantKind.Quantized, q8, 30, false, null, ("wiki.txt", 10.0)),
        ];
        Assert.Equal("c", Picker.Pick(same, new PickRequest(64L << 30), Machine).Choice!.Candidate.Id);
        same[1] = same[1] with { MeasuredTokensPerSecond = 30 };
        Assert.Equal("a", Picker.Pick(same, new PickRequest(64L << 30), Machine).Choice!.Candidate.Id);
    }

    [Fact]
    public void Measured_speed_decides_the_floor_and_estimated_speed_is_flagged()
    {
        List<Candidate> candidates =
        [
            Make("slow", VariantKind.Base, BaseShape, 3, false, null, ("wiki.txt", 10.0)),
            Make("unmeasured", VariantKind.Quantized, BaseShape.Quantized(QuantFileType.Q4_K_M), null, false, null, ("wiki.txt", 11.0)),
        ];
        PickResult r = Picker.Pick(candidates, new PickRequest(64L << 30, 5), Machine);
        Judged slow = r.Candidates.Single(j => j.Candidate.Id == "slow");
        Assert.True(slow.SpeedMeasured);
        Assert.Contains("measured", slow.Rejection, StringComparison.Ordinal);
        Assert.Equal("unmeasured", r.Choice!.Candidate.Id);
        Assert.False(r.Choice.SpeedMeasured);
        Assert.Contains(r.Explanation, l => l.Contains("estimated, not yet benchmarked", StringComparison.Ordinal));
    }

    [Fact]
    public void When_nothing_fits_the_suggestions_name_a_smaller_type_a_shorter_context_and_more_memory()
    {
        List<Candidate> onlyBase = [Make("base", VariantKind.Base, BaseShape, null, false, null, ("wiki.txt", 10.0))];
        PickResult r = Picker.Pick(onlyBase, new PickRequest(1L << 30, Context: 2048), Machine);
        Assert.Null(r.Choice);
        Assert.Contains(r.Suggestions, s => s.StartsWith("A smaller type: `smith quantize base --type q", StringComparison.Ordinal));
        Assert.Contains(r.Suggestions, s => s.StartsWith("More memory: the smallest variant, base, needs", StringComparison.Ordinal));

        // Weights fit but the context does not: the longest context that fits is suggested, and it really fits.
        long limit = ResourceEstimator.EstimateMemory(BaseShape, 1024, Machine.Threads).Total;
        PickResult longContext = Picker.Pick(onlyBase, new PickRequest(limit, Context: 65536), Machine);
        Assert.Null(longContext.Choice);
        string shorter = Assert.Single(longContext.Suggestions, s => s.StartsWith("A shorter context", StringComparison.Ordinal));
        int longest = Picker.LongestContext(BaseShape, limit, Machine);
        Assert.InRange(longest, 1024, 1100);
        Assert.Contains($"up to {longest} positions", shorter, StringComparison.Ordinal);

        // A floor nothing meets: the fastest that fits and the floor that would accept it.
        PickResult fast = Picker.Pick(onlyBase, new PickRequest(64L << 30, 10_000), Machine);
        Assert.Contains(fast.Suggestions, s => s.StartsWith("A lower speed floor", StringComparison.Ordinal));
    }

    [Fact]
    public void A_gpt2_cannot_be_picked_for_a_context_past_its_learned_positions()
    {
        var config = new ModelSmith.Models.ModelConfig
        {
            Architecture = ModelSmith.Models.ModelArchitecture.Gpt2, VocabSize = 1024, ContextLength = 512, EmbeddingLength = 256, BlockCount = 2,
            FeedForwardLength = 1024, HeadCount = 4, KvHeadCount = 4, HeadDim = 64, NormEpsilon = 1e-5f, TiedOutput = true,
        };
        List<Candidate> gpt2 = [Make("gpt2", VariantKind.Base, ModelShape.FromConfig(config, GgmlType.F32, "gpt2"))];
        Assert.NotNull(Picker.Pick(gpt2, new PickRequest(1L << 30, Context: 512), Machine).Choice);
        PickResult r = Picker.Pick(gpt2, new PickRequest(1L << 30, Context: 1024), Machine);
        Assert.Null(r.Choice);
        Assert.Contains("learned positions for 512 tokens", r.Candidates[0].Rejection, StringComparison.Ordinal);
    }

    [Fact]
    public void No_variants_gives_an_empty_pick_with_a_reason()
    {
        PickResult r = Picker.Pick([], new PickRequest(1L << 30), Machine);
        Assert.Null(r.Choice);
        Assert.Contains("No variants are registered", r.Explanation[0], StringComparison.Ordinal);
    }

    [Fact]
    public void Without_perplexities_variants_are_ranked_by_bits_per_weight_and_the_explanation_says_so()
    {
        List<Candidate> candidates =
        [
            Make("q4", VariantKind.Quantized, BaseShape.Quantized(QuantFileType.Q4_K_M)),
            Make("q8", VariantKind.Quantized, BaseShape.Quantized(QuantFileType.Q8_0)),
        ];
        PickResult r = Picker.Pick(candidates, new PickRequest(64L << 30), Machine);
        Assert.Equal("q8", r.Choice!.Candidate.Id);
        Assert.Null(r.Dataset);
        Assert.Contains(r.Explanation, l => l.Contains("bits per weight", StringComparison.Ordinal));
    }

    [Fact]
    public void The_pareto_frontiers_leave_out_dominated_variants()
    {
        List<Candidate> candidates = Lineage();
        PickResult r = Picker.Pick(candidates, new PickRequest(64L << 30, Domain: new DatasetKey("legal.txt", null)), Machine);
        string[] memory = r.MemoryFrontier.Select(j => j.Candidate.Id).ToArray();
        Assert.Equal(["ft-q4", "ft-q8", "ft"], memory);
        Assert.DoesNotContain(r.SpeedFrontier, j => j.Candidate.Id.StartsWith("base", StringComparison.Ordinal));
    }

    [Fact]
    public void Three_profiles_give_three_picks_from_one_call()
    {
        var picks = Picker.PickForProfiles(Lineage(), Machine, new DatasetKey("legal.txt", null));
        Assert.Equal(["server", "laptop", "edge"], picks.Select(p => p.Profile.Name).ToArray());
        Assert.Equal("ft", picks[0].Result.Choice!.Candidate.Id);
        Assert.Equal("ft", picks[1].Result.Choice!.Candidate.Id);
        Judged edge = picks[2].Result.Choice!;
        Assert.Equal("ft-q4", edge.Candidate.Id);
        Assert.True(edge.TokensPerSecond >= DeploymentProfile.Edge.MinTokensPerSecond);
    }

    [Fact]
    public void Advice_from_the_estimator_alone_picks_the_most_bits_that_fit()
    {
        var (options, best) = Picker.AdviseTypes(BaseShape, new PickRequest(1L << 30, Context: 512), Machine);
        Assert.Equal(QuantFileType.Q6_K, best);
        foreach (var (type, estimate, fits) in options)
            Assert.Equal(estimate.Memory.Total <= 1L << 30, fits);
        Assert.True(options.First(o => o.Type == QuantFileType.Q8_0).Estimate.Memory.Total > 1L << 30);
    }
}

public class EstimatorTests
{
    [Fact]
    public void Numbers_for_llama_3_8b_recover_its_width_and_a_q4_k_m_size_near_llama_cpp_s()
    {
        ModelShape shape = ModelShape.FromNumbers(8_030_000_000, 32, 8, 128, 128256, 8192, GgmlType.F16);
        Assert.Equal(4096, shape.Config.EmbeddingLength);
        Assert.Equal(14336, shape.Config.FeedForwardLength);
        Assert.InRange(shape.ParameterCount, 7_990_000_000, 8_070_000_000);
        // llama.cpp's Meta-Llama-3-8B Q4_K_M file holds 4.92e9 bytes (4.89 bits per weight).
        ModelShape q4 = shape.Quantized(QuantFileType.Q4_K_M);
        Assert.InRange(q4.TensorBytes, 4.80e9, 5.00e9);
        // KV cache at 8192 positions: 2 · 32 · 8192 · 8 · 128 · 4 bytes = 2 GiB in the engine's F32.
        Assert.Equal(2L << 30, ResourceEstimator.KvCacheBytes(shape.Config, 8192));
    }

    [Fact]
    public void A_gguf_shape_has_the_file_s_exact_size_and_its_planned_quantization_follows_the_mix()
    {
        ModelShape shape = ModelShape.FromGguf(RepoPaths.Stories260K);
        Assert.True(shape.Exact);
        Assert.Equal(new FileInfo(RepoPaths.Stories260K).Length, shape.FileBytes);
        Assert.Equal(shape.Config.ParameterCount, shape.ParameterCount);
        ModelShape f16 = shape.Quantized(QuantFileType.F16);
        Assert.False(f16.Exact);
        Assert.Equal(GgmlType.F16, f16.DominantType);
        Assert.True(f16.TensorBytes < shape.TensorBytes * 0.55);
    }

    [Fact]
    public void Memory_grows_with_context_by_exactly_the_kv_cache_and_the_attention_scores()
    {
        ModelShape shape = ModelShape.FromGguf(RepoPaths.Stories260K);
        MemoryEstimate a = ResourceEstimator.EstimateMemory(shape, 256, 2), b = ResourceEstimator.EstimateMemory(shape, 512, 2);
        Assert.Equal(a.Weights, b.Weights);
        Assert.Equal(2 * a.KvCache, b.KvCache);
        Assert.Equal(a.Total + a.KvCache + (b.Compute - a.Compute), b.Total);
    }

    [Fact]
    public void Decode_speed_falls_with_bytes_per_token_and_is_overhead_bound_for_tiny_models()
    {
        MachineProfile machine = PickerTests.Machine;
        ModelShape big = ModelShape.FromNumbers(1_000_000_000, 16, 8, 64, 32000, 2048, GgmlType.F16);
        double f16 = ResourceEstimator.EstimateSpeed(big, 2048, machine).TokensPerSecond;
        double q8 = ResourceEstimator.EstimateSpeed(big.Quantized(QuantFileType.Q8_0), 2048, machine).TokensPerSecond;
        double q4 = ResourceEstimator.EstimateSpeed(big.Quantized(QuantFileType.Q4_K_M), 2048, machine).TokensPerSecond;
        Assert.True(f16 < q8 && q8 < q4, $"{f16} {q8} {q4}");
        // 2 bytes per weight at 20 GB/s: about 10 tokens/s.
        Assert.InRange(f16, 9, 11);

        SpeedEstimate tiny = ResourceEstimator.EstimateSpeed(ModelShape.FromGguf(RepoPaths.Stories260K), 512, machine);
        // stories260K reads 1 MB a token (50 µs at 20 GB/s) but pays 150 µs of fixed cost: most of its step.
        Assert.Equal(machine.TokenOverheadSeconds + 5 * machine.LayerOverheadSeconds, tiny.OverheadSeconds, 12);
        Assert.InRange(tiny.OverheadSeconds * tiny.TokensPerSecond, 0.6, 0.8);
        Assert.True(tiny.TokensPerSecondAtContext <= tiny.TokensPerSecond);
    }

    [Fact]
    public void Decode_rate_is_interpolated_in_log_size_between_the_measured_working_sets()
    {
        // 80 GB/s in a core's cache, falling to 10 GB/s from memory; Q4_0 unmeasured.
        double[] curve = [80e9, 80e9, 40e9, 20e9, 10e9, 10e9];
        MachineProfile machine = PickerTests.Machine with
        {
            DecodeBytesPerSecond = new Dictionary<GgmlType, IReadOnlyList<double>> { [GgmlType.F32] = curve, [GgmlType.Q8_0] = curve.Select(r => r / 2).ToArray() },
            ModelEfficiency = 0.9,
        };
        Assert.Equal(80e9 * 0.9, machine.DecodeRate(GgmlType.F32, 100 << 10), 3);
        Assert.Equal(60e9 * 0.9, machine.DecodeRate(GgmlType.F32, 4 << 20), 3);
        Assert.Equal(10e9 * 0.9, machine.DecodeRate(GgmlType.F32, 1L << 30), 3);
        Assert.Equal(10e9 * 0.9, machine.MemoryDecodeRate(GgmlType.F32), 3);
        // An unmeasured type streams as the slowest measured one.
        Assert.Equal(machine.DecodeRate(GgmlType.Q8_0, 4 << 20), machine.DecodeRate(GgmlType.Q4_0, 4 << 20), 3);

        // A model whose weights fit the caches is estimated faster per byte than one that streams from memory.
        ModelShape small = ModelShape.FromConfig(MachineProfile.MatmulProbe, GgmlType.F32, "small");
        ModelShape large = ModelShape.FromNumbers(1_000_000_000, 16, 8, 64, 32000, 2048, GgmlType.F32);
        double SecondsPerByte(ModelShape shape) => ResourceEstimator.StreamSeconds(shape, 0, machine) / ResourceEstimator.WeightBytesPerToken(shape);
        Assert.True(SecondsPerByte(small) < SecondsPerByte(large) / 2);
    }

    [Fact]
    public void Every_matrix_adds_the_fixed_matmul_cost_of_its_type_to_a_step()
    {
        MachineProfile machine = PickerTests.Machine;
        ModelConfig config = MachineProfile.MatmulProbe;
        ModelShape f32 = ModelShape.FromConfig(config, GgmlType.F32, "f32");
        ModelShape q8 = ModelShape.FromConfig(config, GgmlType.Q8_0, "q8_0");
        ModelShape q4 = ModelShape.FromConfig(config, GgmlType.Q4_0, "q4_0");
        double perStep = machine.TokenOverheadSeconds + config.BlockCount * machine.LayerOverheadSeconds;
        // 7 matrices a layer and the tied output; Q4_0 has no measured cost, so adds none.
        Assert.Equal(7 * config.BlockCount + 1, ResourceEstimator.MatrixCount(q8));
        Assert.Equal(perStep, ResourceEstimator.EstimateSpeed(f32, 128, machine).OverheadSeconds, 12);
        Assert.Equal(perStep + 15 * 2e-6, ResourceEstimator.EstimateSpeed(q8, 128, machine).OverheadSeconds, 12);
        Assert.Equal(perStep, ResourceEstimator.EstimateSpeed(q4, 128, machine).OverheadSeconds, 12);

        // An untied embedding table is only looked up: it is no matmul and costs none.
        ModelShape untied = ModelShape.FromConfig(config with { TiedOutput = false }, GgmlType.Q8_0, "untied");
        Assert.Equal(ResourceEstimator.MatrixCount(q8), ResourceEstimator.MatrixCount(untied));
    }

    [Fact]
    public void A_synthetic_model_in_a_block_type_has_every_matrix_in_that_type()
    {
        using var dir = new TempDirectory();
        string path = dir.File("probe-q4_k.gguf");
        SyntheticModel.Write(path, MachineProfile.MatmulProbe, GgmlType.Q4_K);
        ModelShape shape = ModelShape.FromGguf(path);
        Assert.All(shape.Tensors.Where(t => t.Shape.Length == 2), t => Assert.Equal(GgmlType.Q4_K, t.Type));
        Assert.Equal(ModelShape.FromConfig(MachineProfile.MatmulProbe, GgmlType.Q4_K, "expected").TensorBytes, shape.TensorBytes);
        using LanguageModel model = LanguageModel.Load(path, 1);
        Assert.Equal(MachineProfile.MatmulProbe.VocabSize, model.Config.VocabSize);
    }

    [Theory]
    [InlineData("2GiB", 2L << 30)]
    [InlineData("512 MiB", 512L << 20)]
    [InlineData("1.5G", 3L << 29)]
    [InlineData("8GB", 8_000_000_000L)]
    [InlineData("4096", 4096L)]
    public void Sizes_parse_in_binary_and_decimal_units(string text, long bytes) => Assert.Equal(bytes, Quantities.TryParseBytes(text));

    [Theory]
    [InlineData("8B", 8_000_000_000L)]
    [InlineData("1.1B", 1_100_000_000L)]
    [InlineData("260K", 260_000L)]
    [InlineData("7e9", 7_000_000_000L)]
    public void Parameter_counts_parse_with_suffixes(string text, long count) => Assert.Equal(count, Quantities.TryParseCount(text));

    [Theory]
    [InlineData("lots")]
    [InlineData("2XB")]
    [InlineData("")]
    [InlineData("-1GiB")]
    public void Nonsense_sizes_do_not_parse(string text) => Assert.Null(Quantities.TryParseBytes(text));

    [Fact]
    public void Percent_and_fraction_losses_parse_alike()
    {
        Assert.Equal(0.02, Quantities.TryParseFraction("2%")!.Value, 12);
        Assert.Equal(0.02, Quantities.TryParseFraction("0.02")!.Value, 12);
        Assert.Null(Quantities.TryParseFraction("two"));
    }

    [Fact]
    public void The_types_a_decode_step_multiplies_with_are_those_of_its_matrices_each_once()
    {
        ModelConfig config = MachineProfile.MatmulProbe;
        ModelShape mixed = ModelShape.FromConfig(config, GgmlType.F32, "probe").Quantized(QuantFileType.Q4_K_M);
        IReadOnlyList<GgmlType> types = ResourceEstimator.MatmulTypes(mixed);
        Assert.Equal(2, types.Count);
        Assert.Contains(GgmlType.Q4_K, types);
        Assert.Contains(GgmlType.Q6_K, types);
        // An untied embedding table is only looked up, so its type is not among them; 1-D norms never are.
        ModelShape untied = ModelShape.FromConfig(config with { TiedOutput = false }, GgmlType.F32, "untied");
        Assert.Equal([GgmlType.F32], ResourceEstimator.MatmulTypes(untied));
    }

    [Fact]
    public void A_refresh_measures_the_rates_of_the_given_types_and_the_fixed_costs_again_once_a_minute_has_passed()
    {
        var costs = new Dictionary<GgmlType, double>(PickerTests.Machine.MatmulOverheadSeconds) { [GgmlType.F16] = -1e-6 };
        MachineProfile old = PickerTests.Machine with { RefreshedUtc = DateTime.UtcNow - TimeSpan.FromHours(1), MatmulOverheadSeconds = costs };
        MachineProfile oneThread = old with { Threads = 1 };
        Assert.Same(oneThread, oneThread.Refreshed([GgmlType.Q8_0]));
        MachineProfile recent = PickerTests.Machine with { RefreshedUtc = DateTime.UtcNow };
        Assert.Same(recent, recent.Refreshed([GgmlType.Q8_0]));

        MachineProfile fresh = old.Refreshed([GgmlType.Q8_0]);
        Assert.InRange(DateTime.UtcNow - fresh.RefreshedUtc, TimeSpan.Zero, TimeSpan.FromMinutes(1));
        Assert.InRange(fresh.TokenOverheadSeconds + fresh.LayerOverheadSeconds, 1e-8, 1e-2);
        // Q8_0 was probed again; Q6_K, not asked for, follows the change in a 2-layer step's fixed cost.
        Assert.InRange(fresh.MatmulOverheadSeconds[GgmlType.Q8_0], -1e-4, 1e-3);
        double scale = (fresh.TokenOverheadSeconds + 2 * fresh.LayerOverheadSeconds) / (old.TokenOverheadSeconds + 2 * old.LayerOverheadSeconds);
        Assert.Equal(3e-6 * scale, fresh.MatmulOverheadSeconds[GgmlType.Q6_K], 15);
        // A negative cost is a correction of the rates, not a hand-off: it is kept as it is.
        Assert.Equal(-1e-6, fresh.MatmulOverheadSeconds[GgmlType.F16]);
        // Q8_0's rates were measured again; the other types', the bandwidth and the profile's own time are the cached ones.
        IReadOnlyList<double> q8 = fresh.DecodeBytesPerSecond[GgmlType.Q8_0];
        Assert.Equal(MachineProfile.RateSizes.Count, q8.Count);
        Assert.All(q8, rate => Assert.InRange(rate, 1e8, 1e13));
        Assert.NotEqual(old.DecodeBytesPerSecond[GgmlType.Q8_0], q8);
        Assert.Same(old.DecodeBytesPerSecond[GgmlType.Q4_K], fresh.DecodeBytesPerSecond[GgmlType.Q4_K]);
        Assert.Equal(old.BandwidthBytesPerSecond, fresh.BandwidthBytesPerSecond);
        Assert.Equal(old.MeasuredUtc, fresh.MeasuredUtc);
    }

    [Fact]
    public void A_machine_profile_survives_a_round_trip_through_its_cache_file()
    {
        using var dir = new TempDirectory();
        string path = dir.File("machine.json");
        MachineProfile.Save(PickerTests.Machine, path);
        MachineProfile loaded = MachineProfile.TryLoad(path)!;
        Assert.Equal(PickerTests.Machine.BandwidthBytesPerSecond, loaded.BandwidthBytesPerSecond);
        Assert.Equal(PickerTests.Machine.DecodeBytesPerSecond[GgmlType.Q4_K], loaded.DecodeBytesPerSecond[GgmlType.Q4_K]);
        Assert.Equal(PickerTests.Machine.LayerOverheadSeconds, loaded.LayerOverheadSeconds);
        Assert.Equal(PickerTests.Machine.MatmulOverheadSeconds[GgmlType.Q6_K], loaded.MatmulOverheadSeconds[GgmlType.Q6_K]);
        File.WriteAllText(path, "{ not json");
        Assert.Null(MachineProfile.TryLoad(path));
    }
}
