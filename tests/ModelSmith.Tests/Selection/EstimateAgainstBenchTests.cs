using System.Globalization;
using System.Text.Json;
using ModelSmith.Formats;
using ModelSmith.Models;
using ModelSmith.Quantization;
using ModelSmith.Selection;
using ModelSmith.Tests.Cli;
using Xunit.Abstractions;

namespace ModelSmith.Tests.Selection;

/// <summary>The estimator against what `smith bench` measures in a child process, on synthetic models of several types.</summary>
public class EstimateAgainstBenchTests(ITestOutputHelper output)
{
    private static readonly ModelConfig Llama = new()
    {
        Architecture = ModelArchitecture.Llama,
        VocabSize = 4096,
        ContextLength = 512,
        EmbeddingLength = 512,
        BlockCount = 4,
        FeedForwardLength = 1536,
        HeadCount = 8,
        KvHeadCount = 4,
        HeadDim = 64,
        NormEpsilon = 1e-5f,
        RopeDims = 64,
        TiedOutput = true,
    };

    private static readonly ModelConfig Gpt2 = new()
    {
        Architecture = ModelArchitecture.Gpt2,
        VocabSize = 2048,
        ContextLength = 512,
        EmbeddingLength = 512,
        BlockCount = 4,
        FeedForwardLength = 2048,
        HeadCount = 8,
        KvHeadCount = 8,
        HeadDim = 64,
        NormEpsilon = 1e-5f,
        TiedOutput = true,
    };

    public static TheoryData<string, string> Cases => new()
    {
        { "llama", "f32" },
        { "llama", "q8_0" },
        { "llama", "q4_k_m" },
        { "gpt2", "f32" },
        { "gpt2", "q4_k_s" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Memory_estimate_is_within_15_percent_of_the_peak_that_bench_measures(string architecture, string type)
    {
        using var dir = new TempDirectory();
        string model = Prepare(dir, architecture, type);
        const int prompt = 256;

        var bench = SmithProcess.Run("bench", model, "--pp", prompt.ToString(CultureInfo.InvariantCulture), "--tg", "16", "--reps", "1", "--json");
        Assert.True(bench.ExitCode == 0, bench.Error);
        JsonElement root = JsonDocument.Parse(bench.Output).RootElement;
        long measured = root.GetProperty("peak_resident_bytes").GetInt64();
        int threads = root.GetProperty("threads").GetInt32();

        MemoryEstimate estimate = ResourceEstimator.EstimateMemory(ModelShape.FromGguf(model), prompt, threads);
        double error = (double)estimate.Total / measured - 1;
        output.WriteLine(FormattableString.Invariant(
            $"{architecture} {type}: measured {measured >> 10} KiB, estimated {estimate.Total >> 10} KiB ({error:+0.0%;-0.0%}): weights {estimate.Weights >> 10}, kv {estimate.KvCache >> 10}, compute {estimate.Compute >> 10}, runtime {estimate.Runtime >> 10}"));
        Assert.InRange(error, -0.15, 0.15);
    }

    [Theory]
    [InlineData("llama", "q4_k_m")]
    [InlineData("gpt2", "q4_k_s")]
    public void A_planned_quantization_has_the_tensor_bytes_of_the_file_quantize_writes(string architecture, string type)
    {
        using var dir = new TempDirectory();
        string quantized = Prepare(dir, architecture, type);
        ModelShape planned = ModelShape.FromGguf(dir.File($"{architecture}-f32.gguf")).Quantized(QuantFileTypes.Parse(type));
        ModelShape actual = ModelShape.FromGguf(quantized);
        Assert.Equal(actual.TensorBytes, planned.TensorBytes);
        Assert.InRange(planned.FileBytes - actual.FileBytes, -4096, 4096);
    }

    /// <summary>A synthetic model of <paramref name="architecture"/> in <paramref name="type"/> (quantized from F32 with llama.cpp's mix).</summary>
    internal static string Prepare(TempDirectory dir, string architecture, string type)
    {
        string f32 = dir.File($"{architecture}-f32.gguf");
        SyntheticModel.Write(f32, architecture == "llama" ? Llama : Gpt2);
        if (type == "f32") return f32;
        string quantized = dir.File($"{architecture}-{type}.gguf");
        ModelQuantizer.Quantize(f32, quantized, new QuantizeOptions { FileType = QuantFileTypes.Parse(type) });
        return quantized;
    }
}

/// <summary>Timing tests run alone: other tests' child processes would compete for the cores they time.</summary>
[CollectionDefinition("Decode timing", DisableParallelization = true)]
public sealed class DecodeTimingTests;

[Collection("Decode timing")]
public class DecodeEstimateAgainstBenchTests(ITestOutputHelper output)
{
    /// <summary>
    /// Speed on a shared machine is too noisy to assert to the 15% the estimate reaches on a quiet one (the report gives
    /// the measured agreement). This checks that the estimate of each model is within a factor of four of bench's
    /// fastest repetition (other processes only ever slow a repetition down), that the Q8_0 model is estimated faster
    /// than its F32 parent, and that its speed-up over it, a ratio in which load that slows both alike cancels, is
    /// within a factor of 2 of the one bench measures: the per-type rates and fixed costs, not only the overall scale,
    /// have to be right. (Heavy load squeezes the measured speed-up towards 1, as the threads' hand-offs, the same for
    /// both, come to dominate: at a load of 8 on 2 cores bench measured 1.15 where the estimate said 2.0, and the
    /// profile measured under such load puts the F32 estimate at a third of bench.)
    /// </summary>
    [Fact]
    public void Decode_estimate_is_within_a_factor_of_four_of_bench_and_predicts_the_q8_0_speedup_over_f32()
    {
        using var dir = new TempDirectory();
        string f32 = EstimateAgainstBenchTests.Prepare(dir, "llama", "f32");
        string q8 = EstimateAgainstBenchTests.Prepare(dir, "llama", "q8_0");
        MachineProfile machine = MachineProfile.LoadOrMeasure(dir.File("machine.json"));
        double Measured(string model)
        {
            var bench = SmithProcess.Run("bench", model, "--pp", "0", "--tg", "64", "--reps", "3", "--json");
            Assert.True(bench.ExitCode == 0, bench.Error);
            JsonElement test = JsonDocument.Parse(bench.Output).RootElement.GetProperty("tests")[0];
            long fastest = test.GetProperty("samples_ns").EnumerateArray().Min(e => e.GetInt64());
            return 64 / (fastest * 1e-9);
        }
        double Estimated(string model) => ResourceEstimator.EstimateSpeed(ModelShape.FromGguf(model), 64, machine).TokensPerSecond;

        double measuredF32 = Measured(f32), estimatedF32 = Estimated(f32);
        double measuredQ8 = Measured(q8), estimatedQ8 = Estimated(q8);
        double speedup = estimatedQ8 / estimatedF32, measuredSpeedup = measuredQ8 / measuredF32;
        output.WriteLine(FormattableString.Invariant(
            $"F32: measured {measuredF32:0.0} tok/s, estimated {estimatedF32:0.0}; Q8_0: measured {measuredQ8:0.0}, estimated {estimatedQ8:0.0}; Q8_0/F32: measured {measuredSpeedup:0.00}, estimated {speedup:0.00}"));
        Assert.InRange(estimatedF32 / measuredF32, 1 / 4.0, 4.0);
        Assert.InRange(estimatedQ8 / measuredQ8, 1 / 4.0, 4.0);
        Assert.True(estimatedQ8 > estimatedF32);
        Assert.InRange(speedup / measuredSpeedup, 1 / 2.0, 2.0);
        foreach (GgmlType type in MachineProfile.KernelTypes)
        {
            Assert.InRange(machine.MatmulOverheadSeconds[type], -1e-4, 1e-3);
            IReadOnlyList<double> curve = machine.DecodeBytesPerSecond[type];
            for (int s = 1; s < curve.Count; s++) Assert.True(curve[s] <= curve[s - 1], $"{type}: rates rise with the working set");
        }
    }
}
