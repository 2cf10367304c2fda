using ModelSmith.Formats;
using ModelSmith.Models;
using ModelSmith.Quantization.Kernels;
using ModelSmith.Tensors;

namespace ModelSmith.Selection;

/// <summary>Peak resident memory of running a model, by where it goes (bytes).</summary>
/// <param name="Weights">The model file as mapped and read (tensor data, metadata, padding), plus the F32 copies of norms and biases.</param>
/// <param name="KvCache">Keys and values: 2 · layers · ctx · kv-heads · head-dim · 4 (the engine's cache is F32).</param>
/// <param name="Compute">Activation buffers for a batch of min(256, ctx) tokens, the logits, packed/quantized matmul inputs, per-thread scratch, the RoPE table.</param>
/// <param name="Runtime">The .NET process itself (runtime, JIT'd code, CLI libraries, thread stacks): <see cref="ResourceEstimator.RuntimeBaselineBytes"/>.</param>
public sealed record MemoryEstimate(long Weights, long KvCache, long Compute, long Runtime)
{
    public long Total => Weights + KvCache + Compute + Runtime;
}

/// <summary>Decode speed of a model on a machine (see <see cref="ResourceEstimator"/> for the formula).</summary>
/// <param name="BytesPerToken">Weight bytes one decode step reads (every matrix once, one embedding row).</param>
/// <param name="TokensPerSecond">Generating 128 tokens from an empty cache, as `smith bench --tg 128` measures once the runtime has recompiled the hot code (a tiny model's bench ends before that and measures slower).</param>
/// <param name="OverheadSeconds">The fixed part of a step: t_token + t_layer·L + Σ_matrices c_type (<see cref="ResourceEstimator.FixedSeconds"/>).</param>
/// <param name="TokensPerSecondAtContext">One token with the cache full (position ctx − 1): the slowest step.</param>
/// <param name="ComputeBound">True when some matrices' kernels, not memory, limit the step on this machine (they stream at under 80% of the bandwidth).</param>
public sealed record SpeedEstimate(long BytesPerToken, double TokensPerSecond, double TokensPerSecondAtContext, double OverheadSeconds, bool ComputeBound);

/// <summary>Memory and speed of one model at one context length on one machine.</summary>
public sealed record ResourceEstimate(ModelShape Shape, int Context, int Threads, MemoryEstimate Memory, SpeedEstimate? Speed);

/// <summary>
/// Estimates what running a model costs before running it, from its shape (<see cref="ModelShape"/>) and this
/// machine's measured profile (<see cref="MachineProfile"/>).
/// <para><b>Memory</b> = weights + KV cache + compute buffers + runtime, modelled on what the engine allocates:
/// the GGUF file is memory-mapped and every page of it is read while running, so it counts whole; the KV cache
/// is 2·L·ctx·Hkv·D F32 values; the compute buffers are the architecture's activation arrays for a batch of
/// B = min(256, ctx) tokens (Llama: B·(3C + 2·H·D + 2·Hkv·D + 2F) floats; GPT-2: B·(3C + 2(H·D + 2·Hkv·D) + H·D + F) + C),
/// V logits, the prefill input packed for the matmul (B rows of the widest input, as floats for F32/F16/BF16
/// weights or as 8-bit blocks for quantized ones, grown by 1/4), per-thread scratch (16 unpacked weight rows and
/// ctx attention scores), and the RoPE table (2 · positions · rotated dims floats); the runtime is a measured
/// constant.</para>
/// <para><b>Decode speed</b>: one step at position p takes
/// t(p) = Σ_matrices (bytes_m / R_type(m)(W) + c_type(m)) + (2·L·(p+1)·Hkv·D·4 + norms) / BW + t_token + t_layer·L,
/// with W the weight bytes one step reads (<see cref="WeightBytesPerToken"/>), R_type(W) the measured rate at which
/// the decode matmul of the matrix's type streams a working set of W bytes (from a cache when W fits one; from memory
/// it is the bandwidth for a fast kernel, less for a kernel that needs more work per byte), measured at 512 KiB,
/// 2, 8, 32, 64 and 256 MiB and interpolated linearly in log W (<see cref="MachineProfile.DecodeRate"/>), times the
/// measured share η of it a whole memory-mapped model reaches (<see cref="MachineProfile.ModelEfficiency"/>), BW the
/// measured stream bandwidth, and t_token, t_layer the measured fixed cost of a step
/// (thread hand-offs, norms, RoPE), and c_type the measured fixed cost one matmul of that type adds beyond F32's
/// (<see cref="MachineProfile.MatmulOverheadSeconds"/>: the input's quantization, the quantized kernel's setup);
/// the fixed terms dominate tiny models, quantized ones most. Tokens/s over n tokens from position p0 is
/// n / Σ t(p).</para>
/// </summary>
public static class ResourceEstimator
{
    /// <summary>
    /// Resident memory of the `smith` process before the model: the .NET runtime, the JIT'd code of the CLI
    /// and the engine, System.CommandLine/Spectre.Console, and the thread stacks of the compute pool. Measured
    /// on Linux x64 with .NET 10 (2 threads) as the peak RSS of `smith bench` less the model's other terms:
    /// 44.4 MiB for stories260K, 44.9–45.9 MiB for synthetic Llamas in F32/Q8_0/Q4_K_M and 44.4–47.0 MiB for
    /// GPT-2s in F32/Q4_K_S (tests/…/Selection/EstimateAgainstBenchTests); 46 MiB is their middle.
    /// </summary>
    public const long RuntimeBaselineBytes = 46L << 20;

    /// <summary>Tokens the speed estimate generates, as `smith bench` does by default (tg128).</summary>
    public const int BenchTokens = 128;

    /// <summary>
    /// The estimate for running <paramref name="shape"/> with a KV cache of <paramref name="context"/> positions on
    /// <paramref name="threads"/> threads (0: every core). Without a <paramref name="machine"/> profile only memory is estimated.
    /// </summary>
    public static ResourceEstimate Estimate(ModelShape shape, int context, MachineProfile? machine, int threads = 0)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentOutOfRangeException.ThrowIfLessThan(context, 1);
        int n = threads > 0 ? threads : machine?.Threads ?? Environment.ProcessorCount;
        MemoryEstimate memory = EstimateMemory(shape, context, n);
        SpeedEstimate? speed = machine is null ? null : EstimateSpeed(shape, context, machine);
        return new ResourceEstimate(shape, context, n, memory, speed);
    }

    /// <summary>Peak resident bytes of running <paramref name="shape"/> with <paramref name="context"/> positions on <paramref name="threads"/> threads.</summary>
    public static MemoryEstimate EstimateMemory(ModelShape shape, int context, int threads)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ModelConfig cfg = shape.Config;
        long vectors = 0;
        foreach (GgufTensorInfo t in shape.Tensors)
        {
            if (t.Shape.Length == 1) vectors += t.ElementCount * sizeof(float);
        }
        long weights = shape.FileBytes + vectors;
        long kv = KvCacheBytes(cfg, context);
        return new MemoryEstimate(weights, kv, ComputeBytes(shape, context, threads), RuntimeBaselineBytes);
    }

    /// <summary>Bytes of the engine's F32 KV cache: 2 · L · ctx · Hkv · D · 4.</summary>
    public static long KvCacheBytes(ModelConfig config, int context)
    {
        ArgumentNullException.ThrowIfNull(config);
        return 2L * config.BlockCount * context * config.KvDim * sizeof(float);
    }

    /// <summary>The compute buffers described on <see cref="ResourceEstimator"/>, in bytes.</summary>
    public static long ComputeBytes(ModelShape shape, int context, int threads)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ModelConfig cfg = shape.Config;
        long b = Math.Min(LanguageModel.MaxBatch, context);
        long c = cfg.EmbeddingLength, f = cfg.FeedForwardLength, q = cfg.QDim, kv = cfg.KvDim;
        long activations = cfg.Architecture == ModelArchitecture.Llama
            ? b * (3 * c + 2 * q + 2 * kv + 2 * f)
            : b * (3 * c + 2 * (q + 2 * kv) + q + f) + c;
        long logits = cfg.VocabSize;
        long widest = Math.Max(Math.Max(c, q), f);
        long stride = (widest + 15) & ~15L;
        bool quantized = false, floats = false;
        foreach (GgufTensorInfo t in shape.Tensors)
        {
            if (t.Shape.Length < 2) continue;
            if (QuantKernel.Supports(t.Type)) quantized = true;
            else floats = true;
        }
        long floatsPacked = floats ? (b * stride + 16) * sizeof(float) : 0;
        // Q8 activations: one byte per value plus three float arrays of one entry per 32-block (or Q8_K's
        // 16 group sums per 256), 64-byte aligned, grown by a quarter when first needed.
        long quantPacked = quantized ? (b * widest + 3 * (b * widest / 32 * 4 + 64) + b * widest / 8 + 64) * 5 / 4 : 0;
        long scratch = threads * Math.Max(MatMul.RowBlock * stride * sizeof(float), (long)context * sizeof(float));
        long rope = cfg.Architecture == ModelArchitecture.Llama
            ? 2L * sizeof(float) * cfg.RopeDims * (cfg.ContextLength + (context > cfg.ContextLength ? context : 0))
            : 0;
        return (activations + logits) * sizeof(float) + Math.Max(floatsPacked, quantPacked) + scratch + rope;
    }

    /// <summary>Decode speed of <paramref name="shape"/> on <paramref name="machine"/> with a cache of <paramref name="context"/> positions.</summary>
    public static SpeedEstimate EstimateSpeed(ModelShape shape, int context, MachineProfile machine)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(machine);
        double overhead = FixedSeconds(shape, machine);
        int tokens = Math.Min(BenchTokens, context);
        double total = 0;
        for (int p = 0; p < tokens; p++) total += StreamSeconds(shape, p, machine) + overhead;
        double atContext = StreamSeconds(shape, context - 1, machine) + overhead;
        return new SpeedEstimate(WeightBytesPerToken(shape), tokens / total, 1 / atContext, overhead, IsComputeBound(shape, machine));
    }

    /// <summary>
    /// The fixed seconds of one decode step, whatever its position: t_token + t_layer·L + Σ_matrices c_type(m), at least 0
    /// (<see cref="MachineProfile.TokenOverheadSeconds"/>, <see cref="MachineProfile.LayerOverheadSeconds"/>,
    /// <see cref="MachineProfile.MatmulOverhead"/>).
    /// </summary>
    public static double FixedSeconds(ModelShape shape, MachineProfile machine)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(machine);
        double seconds = machine.TokenOverheadSeconds + machine.LayerOverheadSeconds * shape.Config.BlockCount;
        foreach (GgufTensorInfo t in shape.Tensors)
        {
            if (IsMatmul(shape, t)) seconds += machine.MatmulOverhead(t.Type);
        }
        return Math.Max(0, seconds);
    }

    /// <summary>The storage types of the matrices one decode step multiplies with, each once.</summary>
    public static IReadOnlyList<GgmlType> MatmulTypes(ModelShape shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        var types = new List<GgmlType>();
        foreach (GgufTensorInfo t in shape.Tensors)
        {
            if (IsMatmul(shape, t) && !types.Contains(t.Type)) types.Add(t.Type);
        }
        return types;
    }

    /// <summary>Matrices one decode step multiplies with (every matrix but a lookup-only embedding table).</summary>
    public static int MatrixCount(ModelShape shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        int count = 0;
        foreach (GgufTensorInfo t in shape.Tensors)
        {
            if (IsMatmul(shape, t)) count++;
        }
        return count;
    }

    /// <summary>Weight bytes one decode step reads: every matrix, one row of each embedding (the whole table when it is also the output).</summary>
    public static long WeightBytesPerToken(ModelShape shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        long bytes = 0;
        foreach (GgufTensorInfo t in shape.Tensors) bytes += BytesRead(shape, t);
        return bytes;
    }

    /// <summary>
    /// Seconds one decode step at <paramref name="position"/> spends reading weights and the cache:
    /// Σ bytes / R_type(W) over matrices (W: the step's weight bytes, which decide what of them a cache holds), plus
    /// the KV cache, embedding rows and vectors at BW.
    /// </summary>
    public static double StreamSeconds(ModelShape shape, int position, MachineProfile machine)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(machine);
        double bw = machine.BandwidthBytesPerSecond, seconds = 0;
        long workingSet = WeightBytesPerToken(shape);
        foreach (GgufTensorInfo t in shape.Tensors)
        {
            long bytes = BytesRead(shape, t);
            seconds += bytes / (IsMatmul(shape, t) ? machine.DecodeRate(t.Type, workingSet) : bw);
        }
        long kv = 2L * shape.Config.BlockCount * (position + 1) * shape.Config.KvDim * sizeof(float);
        return seconds + kv / bw;
    }

    private static bool IsComputeBound(ModelShape shape, MachineProfile machine)
    {
        foreach (GgufTensorInfo t in shape.Tensors)
        {
            if (IsMatmul(shape, t) && machine.MemoryDecodeRate(t.Type) < 0.8 * machine.BandwidthBytesPerSecond) return true;
        }
        return false;
    }

    // An embedding table is read one row per token, unless the output reuses it; everything else is read whole.
    private static long BytesRead(ModelShape shape, GgufTensorInfo t) =>
        ReadWhole(shape, t) ? t.ByteSize : t.Rows == 0 ? 0 : t.ByteSize / t.Rows;

    private static bool IsMatmul(ModelShape shape, GgufTensorInfo t) => t.Shape.Length >= 2 && ReadWhole(shape, t);

    private static bool ReadWhole(ModelShape shape, GgufTensorInfo t) =>
        t.Name is not ("token_embd.weight" or "position_embd.weight") || (t.Name == "token_embd.weight" && shape.Config.TiedOutput);
}
