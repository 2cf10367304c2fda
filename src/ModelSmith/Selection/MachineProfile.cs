using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Text.Json;
using ModelSmith.Formats;
using ModelSmith.Inference;
using ModelSmith.Models;
using ModelSmith.Quantization;
using ModelSmith.Tensors;

namespace ModelSmith.Selection;

/// <summary>
/// What decode speed depends on, measured on this machine with every core:
/// <list type="bullet">
/// <item><see cref="BandwidthBytesPerSecond"/>: a stream read of a buffer far larger than the caches (every
/// thread sums its slice with vector loads; the best of a few passes).</item>
/// <item><see cref="DecodeBytesPerSecond"/>: per storage type, the bytes per second our single-token matmul
/// streams through a 256 MiB matrix of that type (far past the caches): where the kernel is fast, this is the
/// memory bandwidth; where it needs more work per byte than memory delivers (or overlaps the two imperfectly),
/// it is less, and bytes / bandwidth alone would flatter the type.</item>
/// <item><see cref="TokenOverheadSeconds"/> + <see cref="LayerOverheadSeconds"/>·L: the fixed cost of one decode
/// step beyond streaming the weights (thread hand-offs of ~10 jobs a layer, norms, RoPE, sampling's logits),
/// fitted from the decode time of two tiny models (1 and 8 layers) whose weights sit in cache.</item>
/// <item><see cref="ModelEfficiency"/>: how much of the single-matrix rates a real model's decode reaches (a 100 MB
/// F32 Llama, memory-mapped as bench runs it), applied to every type's rate.</item>
/// <item><see cref="MatmulOverheadSeconds"/>: per storage type, the fixed cost one decode matmul of that type adds to
/// a step beyond the F32 fixed cost above (quantizing the input to 8-bit blocks, the quantized kernel's setup per
/// row block): the decode time of a small Llama of width 256 with every matrix in that type, its weights in cache,
/// less what the streaming rates and t_token + t_layer·L predict, shared over its matrices. It dominates the
/// quantized decode of small models and is noise for large ones.</item>
/// </list>
/// Every probe is timed by <see cref="Evaluation.SpeedBenchmark"/>, which decodes until the runtime has stopped
/// recompiling before it times, so the profile describes the steady state `smith bench` measures. Measuring takes about 10 s on 2 cores; <see cref="LoadOrMeasure"/> keeps the result per machine in a JSON file.
/// </summary>
public sealed record MachineProfile
{
    /// <summary>Bumped when what is measured changes, so older cached profiles are measured again.</summary>
    public const int Version = 4;

    public required string Machine { get; init; }

    public required int Threads { get; init; }

    public required double BandwidthBytesPerSecond { get; init; }

    public required IReadOnlyDictionary<GgmlType, double> DecodeBytesPerSecond { get; init; }

    public required double TokenOverheadSeconds { get; init; }

    public required double LayerOverheadSeconds { get; init; }

    /// <summary>
    /// The share of the single-matrix rates a whole model's decode reaches (measured on a 100 MB F32 Llama read from
    /// its memory map, as `smith bench` runs it): many smaller matrices, one thread hand-off each, and file-backed
    /// pages stream slower than one large anonymous buffer. 1 when not measured.
    /// </summary>
    public double ModelEfficiency { get; init; } = 1;

    /// <summary>
    /// Seconds per decode step each matrix of a type costs beyond streaming its bytes and beyond
    /// <see cref="TokenOverheadSeconds"/> + <see cref="LayerOverheadSeconds"/>·L (measured on F32 models, so F32 is
    /// about 0): see <see cref="MeasureMatmulOverhead"/>. Empty when not measured.
    /// </summary>
    public IReadOnlyDictionary<GgmlType, double> MatmulOverheadSeconds { get; init; } = new Dictionary<GgmlType, double>();

    public DateTime MeasuredUtc { get; init; }

    /// <summary>The fixed seconds one decode matmul of <paramref name="type"/> adds (<see cref="MatmulOverheadSeconds"/>; 0 when unmeasured).</summary>
    public double MatmulOverhead(GgmlType type) =>
        MatmulOverheadSeconds.TryGetValue(type, out double seconds) && seconds > 0 ? seconds : 0;

    /// <summary>Types whose decode rate is measured (every type the engine multiplies with).</summary>
    public static IReadOnlyList<GgmlType> KernelTypes { get; } =
    [
        GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1,
        GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K,
    ];

    /// <summary>Bytes per second a model's decode matmuls of <paramref name="type"/> stream: the measured single-matrix rate × <see cref="ModelEfficiency"/> (the slowest measured rate when unmeasured).</summary>
    public double DecodeRate(GgmlType type)
    {
        if (DecodeBytesPerSecond.TryGetValue(type, out double rate) && rate > 0) return rate * ModelEfficiency;
        double slowest = double.PositiveInfinity;
        foreach (double r in DecodeBytesPerSecond.Values) slowest = Math.Min(slowest, r);
        return (double.IsFinite(slowest) ? slowest : BandwidthBytesPerSecond) * ModelEfficiency;
    }

    /// <summary>A name for this machine: CPU model, logical cores and memory; a cached profile is reused only on the same one.</summary>
    public static string ThisMachine()
    {
        string cpu = RuntimeInformation.ProcessArchitecture.ToString();
        const string info = "/proc/cpuinfo";
        if (File.Exists(info))
        {
            foreach (string line in File.ReadLines(info))
            {
                if (line.StartsWith("model name", StringComparison.Ordinal))
                {
                    cpu = line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim();
                    break;
                }
            }
        }
        long memory = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        return string.Create(CultureInfo.InvariantCulture, $"{cpu}; {Environment.ProcessorCount} threads; {memory >> 30} GiB");
    }

    /// <summary>The default cache file: $MODELSMITH_CACHE, else $XDG_CACHE_HOME/modelsmith, else ~/.cache/modelsmith; then machine.json.</summary>
    public static string DefaultCachePath()
    {
        string? dir = Environment.GetEnvironmentVariable("MODELSMITH_CACHE");
        if (string.IsNullOrEmpty(dir))
        {
            string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            string root = string.IsNullOrEmpty(xdg)
                ? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache")
                : xdg;
            dir = Path.Combine(root, "modelsmith");
        }
        return Path.Combine(dir, "machine.json");
    }

    /// <summary>
    /// The profile cached at <paramref name="cachePath"/> when it was measured on this machine with the
    /// same thread count and <see cref="Version"/>; otherwise measures one and caches it (a failure to write the
    /// cache is ignored: the profile is still returned).
    /// </summary>
    public static MachineProfile LoadOrMeasure(string? cachePath = null, int threads = 0)
    {
        cachePath ??= DefaultCachePath();
        int n = threads > 0 ? threads : Environment.ProcessorCount;
        string machine = ThisMachine();
        MachineProfile? cached = TryLoad(cachePath);
        if (cached != null && cached.Machine == machine && cached.Threads == n) return cached;
        MachineProfile measured = Measure(n);
        try
        {
            Save(measured, cachePath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The cache is an optimisation; an unwritable home directory only means measuring again next time.
        }
        return measured;
    }

    /// <summary>Measures bandwidth, kernel rates, fixed costs and model efficiency with <paramref name="threads"/> threads (0: every core).</summary>
    public static MachineProfile Measure(int threads = 0)
    {
        int n = threads > 0 ? threads : Environment.ProcessorCount;
        using var pool = new ComputePool(n);
        double bandwidth;
        var rates = new Dictionary<GgmlType, double>();
        unsafe
        {
            // One buffer for every test: its pages are faulted in once.
            byte* buffer = (byte*)NativeMemory.AlignedAlloc(StreamBytes, 4096);
            try
            {
                bandwidth = MeasureBandwidth(pool, buffer);
                foreach (GgmlType type in KernelTypes) rates[type] = MeasureKernel(pool, type, buffer);
            }
            finally
            {
                NativeMemory.AlignedFree(buffer);
            }
        }
        var profile = new MachineProfile
        {
            Machine = ThisMachine(),
            Threads = n,
            BandwidthBytesPerSecond = bandwidth,
            DecodeBytesPerSecond = rates,
            TokenOverheadSeconds = 0,
            LayerOverheadSeconds = 0,
            MeasuredUtc = DateTime.UtcNow,
        };
        (double perToken, double perLayer) = MeasureOverhead(profile, n);
        profile = profile with { TokenOverheadSeconds = perToken, LayerOverheadSeconds = perLayer };
        profile = profile with { ModelEfficiency = MeasureEfficiency(profile, n) };
        var matmul = new Dictionary<GgmlType, double>();
        foreach (GgmlType type in KernelTypes) matmul[type] = MeasureMatmulOverhead(profile, n, type);
        return profile with { MatmulOverheadSeconds = matmul };
    }

    /// <summary>Reads a cached profile; null when the file is missing, unreadable or of another version.</summary>
    public static MachineProfile? TryLoad(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) return null;
        try
        {
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(path));
            JsonElement r = doc.RootElement;
            if (r.GetProperty("version").GetInt32() != Version) return null;
            var rates = new Dictionary<GgmlType, double>();
            foreach (JsonProperty p in r.GetProperty("decode_bytes_per_second").EnumerateObject())
            {
                if (Enum.TryParse(p.Name, out GgmlType type)) rates[type] = p.Value.GetDouble();
            }
            var matmul = new Dictionary<GgmlType, double>();
            foreach (JsonProperty p in r.GetProperty("matmul_overhead_seconds").EnumerateObject())
            {
                if (Enum.TryParse(p.Name, out GgmlType type)) matmul[type] = p.Value.GetDouble();
            }
            return new MachineProfile
            {
                Machine = r.GetProperty("machine").GetString() ?? "",
                Threads = r.GetProperty("threads").GetInt32(),
                BandwidthBytesPerSecond = r.GetProperty("bandwidth_bytes_per_second").GetDouble(),
                DecodeBytesPerSecond = rates,
                TokenOverheadSeconds = r.GetProperty("token_overhead_seconds").GetDouble(),
                LayerOverheadSeconds = r.GetProperty("layer_overhead_seconds").GetDouble(),
                ModelEfficiency = r.GetProperty("model_efficiency").GetDouble(),
                MatmulOverheadSeconds = matmul,
                MeasuredUtc = r.GetProperty("measured_utc").GetDateTime(),
            };
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException or IOException)
        {
            return null;
        }
    }

    /// <summary>Writes the profile as JSON (atomically: a reader never sees half a file).</summary>
    public static void Save(MachineProfile profile, string path)
    {
        ArgumentNullException.ThrowIfNull(profile);
        ArgumentNullException.ThrowIfNull(path);
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir != null) Directory.CreateDirectory(dir);
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteNumber("version", Version);
            w.WriteString("machine", profile.Machine);
            w.WriteNumber("threads", profile.Threads);
            w.WriteNumber("bandwidth_bytes_per_second", profile.BandwidthBytesPerSecond);
            w.WriteStartObject("decode_bytes_per_second");
            foreach ((GgmlType type, double rate) in profile.DecodeBytesPerSecond) w.WriteNumber(type.ToString(), rate);
            w.WriteEndObject();
            w.WriteNumber("token_overhead_seconds", profile.TokenOverheadSeconds);
            w.WriteNumber("model_efficiency", profile.ModelEfficiency);
            w.WriteNumber("layer_overhead_seconds", profile.LayerOverheadSeconds);
            w.WriteStartObject("matmul_overhead_seconds");
            foreach ((GgmlType type, double seconds) in profile.MatmulOverheadSeconds) w.WriteNumber(type.ToString(), seconds);
            w.WriteEndObject();
            w.WriteString("measured_utc", profile.MeasuredUtc);
            w.WriteEndObject();
        }
        string temp = path + ".tmp";
        File.WriteAllBytes(temp, stream.ToArray());
        File.Move(temp, path, overwrite: true);
    }

    // A buffer this large is far past any last-level cache of the machines we run on, small enough to allocate anywhere.
    private const int StreamBytes = 256 << 20;

    /// <summary>Bytes per second all threads read from memory: the best of five passes over the 256 MiB <paramref name="buffer"/>.</summary>
    internal static unsafe double MeasureBandwidth(ComputePool pool, byte* buffer)
    {
        new Span<byte>(buffer, StreamBytes).Fill(1);
        var job = new StreamJob { Buffer = buffer, Chunk = 1 << 20, Sums = new float[StreamBytes >> 20] };
        int items = StreamBytes >> 20;
        pool.Run(in job, items);
        double best = 0;
        for (int pass = 0; pass < 5; pass++)
        {
            long start = Stopwatch.GetTimestamp();
            pool.Run(in job, items);
            double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
            best = Math.Max(best, StreamBytes / seconds);
        }
        return best;
    }

    /// <summary>One 1 MiB chunk per item, summed with 4 independent vector accumulators (loads, not compute, bound the loop).</summary>
    private unsafe struct StreamJob : IParallelJob
    {
        public byte* Buffer;
        public int Chunk;
        public float[] Sums;

        public readonly void Execute(int item, int worker)
        {
            float* p = (float*)(Buffer + (long)item * Chunk);
            int n = Chunk / sizeof(float);
            Vector256<float> a = default, b = default, c = default, d = default;
            for (int i = 0; i < n; i += 32)
            {
                a += Vector256.Load(p + i);
                b += Vector256.Load(p + i + 8);
                c += Vector256.Load(p + i + 16);
                d += Vector256.Load(p + i + 24);
            }
            Sums[item] = Vector256.Sum(a + b + c + d);
        }
    }

    /// <summary>
    /// Bytes per second one decode matmul (a single token) of <paramref name="type"/> streams through a matrix of
    /// 4096 columns and 256 MiB (past the last-level cache, like the bandwidth test): the best of three timed calls after a warm-up. The rows repeat one quantized tile of
    /// 16 random rows (the speed does not depend on the values, and quantizing 256 MiB would take seconds), written into <paramref name="buffer"/>.
    /// </summary>
    internal static unsafe double MeasureKernel(ComputePool pool, GgmlType type, byte* buffer)
    {
        const int cols = 4096, tileRows = 16, matrixBytes = StreamBytes;
        var rng = new Random(3);
        var values = new float[tileRows * cols];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(rng.NextDouble() - 0.5);
        byte[] tile;
        if (type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16) tile = WeightMatrix.FromSingles(values, tileRows, cols, type).Data.ToArray();
        else
        {
            tile = new byte[BlockQuantizer.RowSize(type, cols) * tileRows];
            BlockQuantizer.Quantize(type, values, tileRows, cols, tile);
        }
        int rows = matrixBytes / tile.Length * tileRows;
        int length = rows / tileRows * tile.Length;
        for (int at = 0; at < length; at += tile.Length) tile.CopyTo(new Span<byte>(buffer + at, tile.Length));
        var w = new WeightMatrix(type, rows, cols, new UnmanagedMemory(buffer, length).Memory);
        var x = new float[cols];
        for (int i = 0; i < cols; i++) x[i] = (float)(rng.NextDouble() - 0.5);
        var y = new float[rows];
        MatMul.Forward(x, w, [], 1, y, pool);
        double best = 0;
        for (int r = 0; r < 3; r++)
        {
            long start = Stopwatch.GetTimestamp();
            MatMul.Forward(x, w, [], 1, y, pool);
            best = Math.Max(best, length / Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
        return best;
    }

    /// <summary>
    /// Decode seconds per token of two tiny Llamas (1 and 8 layers of width 64, vocabulary 512) beyond what
    /// <see cref="ResourceEstimator.StreamSeconds"/> accounts for, as (per token, per layer): a straight line
    /// through the two. Their weights fit in cache, so what remains is the engine's fixed cost.
    /// </summary>
    private static (double PerToken, double PerLayer) MeasureOverhead(MachineProfile profile, int threads)
    {
        double one = OverheadOf(profile, threads, 1), eight = OverheadOf(profile, threads, 8);
        double perLayer = Math.Max(0, (eight - one) / 7);
        double perToken = Math.Max(0, one - perLayer);
        return (perToken, perLayer);
    }

    /// <summary>
    /// <see cref="ModelEfficiency"/>: the decode time of a 100 MB F32 Llama (2 layers of width 1024, vocabulary 2048, its
    /// weights past the caches) that <see cref="ResourceEstimator.StreamSeconds"/> predicts from the single-matrix
    /// rates, over the time measured (less the fixed cost), clamped to [0.2, 1].
    /// </summary>
    private static double MeasureEfficiency(MachineProfile profile, int threads)
    {
        var config = new ModelConfig
        {
            Architecture = ModelArchitecture.Llama,
            VocabSize = 2048,
            ContextLength = 64,
            EmbeddingLength = 1024,
            BlockCount = 2,
            FeedForwardLength = 2816,
            HeadCount = 8,
            KvHeadCount = 4,
            HeadDim = 128,
            NormEpsilon = 1e-5f,
            RopeDims = 128,
            TiedOutput = true,
        };
        const int tokens = 16;
        double measured = DecodeSecondsPerToken(config, threads, tokens);
        ModelShape shape = ModelShape.FromConfig(config, GgmlType.F32, "efficiency probe");
        double predicted = ResourceEstimator.StreamSeconds(shape, tokens / 2, profile);
        double fixedCost = ResourceEstimator.FixedSeconds(shape, profile);
        return Math.Clamp(predicted / Math.Max(1e-9, measured - fixedCost), 0.2, 1);
    }

    /// <summary>
    /// <see cref="MatmulOverheadSeconds"/> of <paramref name="type"/>: the decode seconds per token of a Llama of
    /// width 256 (2 layers, 4 heads, 2 KV heads, FFN 768, vocabulary 2048, tied output: 15 matrices, about 2M weights,
    /// so they sit in cache) with every matrix in <paramref name="type"/>, less
    /// <see cref="ResourceEstimator.StreamSeconds"/> (with <see cref="ModelEfficiency"/>, as the estimate uses it) and
    /// t_token + t_layer·L, over the 15 matrices; at least 0. What remains is what a matmul of this type costs at any
    /// size beyond its bytes: the input's quantization to 8-bit blocks, the kernel's per-call and per-row-block setup,
    /// and the hand-off pattern of small matrices.
    /// </summary>
    private static double MeasureMatmulOverhead(MachineProfile profile, int threads, GgmlType type)
    {
        ModelConfig config = MatmulProbe;
        const int tokens = 32;
        double measured = DecodeSecondsPerToken(config, threads, tokens, type);
        ModelShape shape = ModelShape.FromConfig(config, type, "matmul probe");
        double predicted = ResourceEstimator.StreamSeconds(shape, tokens / 2, profile)
            + profile.TokenOverheadSeconds + profile.LayerOverheadSeconds * config.BlockCount;
        int matrices = ResourceEstimator.MatrixCount(shape);
        return Math.Max(0, (measured - predicted) / matrices);
    }

    /// <summary>The shape the per-type matmul cost is measured on: width 256 (a multiple of every block size), weights in cache.</summary>
    internal static ModelConfig MatmulProbe { get; } = new()
    {
        Architecture = ModelArchitecture.Llama,
        VocabSize = 2048,
        ContextLength = 64,
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

    /// <summary>
    /// The median over 5 repetitions of decode seconds per token of a synthetic model of <paramref name="config"/> with
    /// matrices in <paramref name="weightType"/> (written to a temp file and memory-mapped, as bench runs it), timed by
    /// <see cref="Evaluation.SpeedBenchmark"/> after its warm-up, so in the runtime's steady state.
    /// </summary>
    private static double DecodeSecondsPerToken(ModelConfig config, int threads, int tokens, GgmlType weightType = GgmlType.F32)
    {
        string path = Path.Combine(Path.GetTempPath(), $"modelsmith-probe-{Environment.ProcessId}-{config.BlockCount}-{config.EmbeddingLength}-{weightType}.gguf");
        try
        {
            SyntheticModel.Write(path, config, weightType);
            using LanguageModel model = LanguageModel.Load(path, threads);
            Evaluation.SpeedTestResult result = Evaluation.SpeedBenchmark.Run(model, Evaluation.SpeedTestKind.Generation, tokens, 5);
            var rounds = new double[result.Samples.Count];
            for (int round = 0; round < rounds.Length; round++) rounds[round] = result.Samples[round].TotalSeconds / tokens;
            Array.Sort(rounds);
            return rounds[rounds.Length / 2];
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static double OverheadOf(MachineProfile profile, int threads, int layers)
    {
        var config = new ModelConfig
        {
            Architecture = ModelArchitecture.Llama,
            VocabSize = 512,
            ContextLength = 256,
            EmbeddingLength = 64,
            BlockCount = layers,
            FeedForwardLength = 256,
            HeadCount = 4,
            KvHeadCount = 2,
            HeadDim = 16,
            NormEpsilon = 1e-5f,
            RopeDims = 16,
            TiedOutput = true,
        };
        const int tokens = 64;
        double measured = DecodeSecondsPerToken(config, threads, tokens);
        ModelShape shape = ModelShape.FromConfig(config, GgmlType.F32, "overhead probe");
        return Math.Max(0, measured - ResourceEstimator.StreamSeconds(shape, tokens / 2, profile));
    }
}
