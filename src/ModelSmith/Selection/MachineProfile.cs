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
/// <item><see cref="DecodeBytesPerSecond"/>: per storage type and working set (<see cref="RateSizes"/>: 512 KiB to
/// 64 MiB, and 256 MiB, far past the caches), the bytes per second our single-token matmul streams through a matrix
/// of that type and size read again and again. A small matrix is read from a cache and streams faster; past the
/// caches, where the kernel is fast this is the memory bandwidth, and where it needs more work per byte than memory
/// delivers it is less, and bytes / bandwidth alone would flatter the type. A model is given the rate at its weight
/// bytes per token, interpolated in log size (<see cref="DecodeRate"/>), so no cache size has to be known (Linux on
/// a VM often does not expose it).</item>
/// <item><see cref="TokenOverheadSeconds"/> + <see cref="LayerOverheadSeconds"/>·L: the fixed cost of one decode
/// step beyond streaming the weights (thread hand-offs of ~10 jobs a layer, norms, RoPE, sampling's logits),
/// fitted from the decode time of two tiny models (1 and 8 layers) whose weights sit in cache.</item>
/// <item><see cref="ModelEfficiency"/>: how much of the single-matrix rates a real model's decode reaches (a 126 MB
/// F32 Llama, memory-mapped as bench runs it), applied to every type's rate.</item>
/// <item><see cref="MatmulOverheadSeconds"/>: per storage type, the fixed cost one decode matmul of that type adds to
/// a step beyond the F32 fixed cost above (quantizing the input to 8-bit blocks, the quantized kernel's setup per
/// row block; negative where it corrects in-cache rates measured low): the decode time of a small Llama of width 256 with every matrix in that type, its weights in cache,
/// less what the streaming rates and t_token + t_layer·L predict, shared over its matrices. It dominates the
/// quantized decode of small models and is noise for large ones.</item>
/// </list>
/// Every probe is timed by <see cref="Evaluation.SpeedBenchmark"/>, which decodes until the runtime has stopped
/// recompiling before it times, so the profile describes the steady state `smith bench` measures. The rates and the
/// model efficiency keep the fastest repetition (other processes only ever slow a stream down), the fixed-cost probes
/// the median one (see <see cref="DecodeSecondsPerToken"/>). Measuring takes about
/// 17 s on 2 cores (about 2 s of it the decode rates); <see cref="LoadOrMeasure"/> keeps the result per machine in a JSON file.
/// </summary>
public sealed record MachineProfile
{
    /// <summary>Bumped when what is measured changes, so older cached profiles are measured again.</summary>
    public const int Version = 9;

    public required string Machine { get; init; }

    public required int Threads { get; init; }

    public required double BandwidthBytesPerSecond { get; init; }

    /// <summary>
    /// Per storage type, the streaming rate of its decode matmul at each working set of <see cref="RateSizes"/> (bytes
    /// per second, one entry a size, non-increasing): see <see cref="MeasureKernelRates"/>.
    /// </summary>
    public required IReadOnlyDictionary<GgmlType, IReadOnlyList<double>> DecodeBytesPerSecond { get; init; }

    public required double TokenOverheadSeconds { get; init; }

    public required double LayerOverheadSeconds { get; init; }

    /// <summary>
    /// The share of the single-matrix rates a whole model's decode reaches (measured on a 126 MB F32 Llama of width 768 read from
    /// its memory map, as `smith bench` runs it): many smaller matrices, one thread hand-off each, and file-backed
    /// pages stream slower than one large anonymous buffer. 1 when not measured.
    /// </summary>
    public double ModelEfficiency { get; init; } = 1;

    /// <summary>
    /// Seconds per decode step each matrix of a type costs beyond streaming its bytes and beyond
    /// <see cref="TokenOverheadSeconds"/> + <see cref="LayerOverheadSeconds"/>·L (measured on F32 models, so F32 is
    /// about 0, and negative where the in-cache rates were measured low): see <see cref="MeasureMatmulOverhead"/>.
    /// Empty when not measured.
    /// </summary>
    public IReadOnlyDictionary<GgmlType, double> MatmulOverheadSeconds { get; init; } = new Dictionary<GgmlType, double>();

    public DateTime MeasuredUtc { get; init; }

    /// <summary>When the rates and fixed costs were last measured: <see cref="MeasuredUtc"/>, or later after <see cref="Refreshed"/>.</summary>
    public DateTime RefreshedUtc { get; init; }

    /// <summary>The fixed seconds one decode matmul of <paramref name="type"/> adds (<see cref="MatmulOverheadSeconds"/>, negative where it corrects the rates; 0 when unmeasured).</summary>
    public double MatmulOverhead(GgmlType type) =>
        MatmulOverheadSeconds.TryGetValue(type, out double seconds) && double.IsFinite(seconds) ? seconds : 0;

    /// <summary>Types whose decode rate is measured (every type the engine multiplies with).</summary>
    public static IReadOnlyList<GgmlType> KernelTypes { get; } =
    [
        GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1,
        GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K,
    ];

    /// <summary>
    /// Bytes per second a model's decode matmuls of <paramref name="type"/> stream when one step reads
    /// <paramref name="workingSetBytes"/> in all: the measured rates (<see cref="DecodeBytesPerSecond"/>) interpolated
    /// linearly in log₂ of the working set between the two nearest <see cref="RateSizes"/> (the end rates beyond
    /// them), × <see cref="ModelEfficiency"/>. An unmeasured type gets the slowest measured type's rate.
    /// </summary>
    public double DecodeRate(GgmlType type, long workingSetBytes)
    {
        if (DecodeBytesPerSecond.TryGetValue(type, out IReadOnlyList<double>? curve) && curve.Count == RateSizes.Count && curve[^1] > 0)
            return Interpolate(curve, workingSetBytes) * ModelEfficiency;
        double slowest = double.PositiveInfinity;
        foreach (IReadOnlyList<double> c in DecodeBytesPerSecond.Values)
        {
            if (c.Count == RateSizes.Count && c[^1] > 0) slowest = Math.Min(slowest, Interpolate(c, workingSetBytes));
        }
        return (double.IsFinite(slowest) ? slowest : BandwidthBytesPerSecond) * ModelEfficiency;
    }

    /// <summary>The rate past every cache (at the largest of <see cref="RateSizes"/>), × <see cref="ModelEfficiency"/>.</summary>
    public double MemoryDecodeRate(GgmlType type) => DecodeRate(type, long.MaxValue);

    // r(W) = r_i + (r_{i+1} − r_i) · log(W / W_i) / log(W_{i+1} / W_i) for W_i ≤ W ≤ W_{i+1}.
    private static double Interpolate(IReadOnlyList<double> rates, long bytes)
    {
        if (bytes <= RateSizes[0]) return rates[0];
        for (int i = 0; i + 1 < RateSizes.Count; i++)
        {
            if (bytes > RateSizes[i + 1]) continue;
            double f = Math.Log((double)bytes / RateSizes[i]) / Math.Log((double)RateSizes[i + 1] / RateSizes[i]);
            return rates[i] + (rates[i + 1] - rates[i]) * f;
        }
        return rates[^1];
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
        Dictionary<GgmlType, IReadOnlyList<double>> rates;
        unsafe
        {
            // One buffer for every test: its pages are faulted in once.
            byte* buffer = (byte*)NativeMemory.AlignedAlloc(StreamBytes, 4096);
            try
            {
                bandwidth = MeasureBandwidth(pool, buffer);
                rates = MeasureKernelRates(pool, buffer);
            }
            finally
            {
                NativeMemory.AlignedFree(buffer);
            }
        }
        DateTime now = DateTime.UtcNow;
        var profile = new MachineProfile
        {
            Machine = ThisMachine(),
            Threads = n,
            BandwidthBytesPerSecond = bandwidth,
            DecodeBytesPerSecond = rates,
            TokenOverheadSeconds = 0,
            LayerOverheadSeconds = 0,
            MeasuredUtc = now,
            RefreshedUtc = now,
        };
        (double perToken, double perLayer) = MeasureOverhead(profile, n);
        profile = profile with { TokenOverheadSeconds = perToken, LayerOverheadSeconds = perLayer };
        profile = profile with { ModelEfficiency = MeasureEfficiency(profile, pool, n) };
        var matmul = new Dictionary<GgmlType, double>();
        foreach (GgmlType type in KernelTypes) matmul[type] = MeasureMatmulOverhead(profile, n, type);
        return profile with { MatmulOverheadSeconds = matmul };
    }

    /// <summary>
    /// This profile with what drifts measured again now, for the types of one model (about 4 s in a new process, most
    /// of it the runtime's warm-up of the probes):
    /// the decode rates of <paramref name="types"/> (<see cref="MeasureKernelRates"/>), then the fixed costs,
    /// <see cref="TokenOverheadSeconds"/> and <see cref="LayerOverheadSeconds"/> from the two tiny-model probes and
    /// <see cref="MatmulOverheadSeconds"/> of <paramref name="types"/> from their matmul probes; that of every other
    /// type is scaled by the change in the fixed cost of a 2-layer step (t_token + 2·t_layer, the shape the matmul
    /// probes have). Returned as it is with one thread, or when it was measured or refreshed less than a minute ago.
    /// </summary>
    /// <remarks>
    /// With several threads both move by more than the estimate's tolerance from minute to minute on a virtual
    /// machine whose host moves its vCPUs between cores; on a 2-vCPU cloud VM:
    /// <list type="bullet">
    /// <item>the fixed cost of a step is mostly the threads handing work and activations to each other, a few
    /// cache-line exchanges per matmul. The round trip of a cache line between the two threads was 120 ns in some
    /// minutes and 550 ns in others, an empty pool job took 0.4–0.8 µs and 1.2–1.8 µs, and a cache-resident
    /// 2M-parameter model decoded at 22,000 and 12,000 tokens/s accordingly;</item>
    /// <item>the compute-bound quantized kernels ran 1.5x slower in some minutes than in others (a 100M-parameter
    /// Q4_K_M model: 370–390 against 550–580 tokens/s), as if the two vCPUs shared one core, while F32, bound by
    /// memory, stayed within 15%.</item>
    /// </list>
    /// Over 6–8 rounds of estimate and bench, each round a few minutes apart, the cached profile's estimate was more
    /// than 15% off bench in 19 of 36 comparisons for the demo's 2M-parameter models and 16 of 24 for 100M-parameter
    /// ones; the refreshed one in 7 of 36 and 6 of 24 (two benches in a row differed by that much in 6 of 36 and 0 of
    /// 24). The stream bandwidth drifts too (55–77 GB/s within two minutes there) but is not measured again on its
    /// own: a quick probe of it is as noisy as the drift, and followed the bench of a large model no better than
    /// the cached profile.
    /// </remarks>
    public MachineProfile Refreshed(IEnumerable<GgmlType> types)
    {
        ArgumentNullException.ThrowIfNull(types);
        if (Threads <= 1 || DateTime.UtcNow - RefreshedUtc < FreshFor) return this;
        var measured = new List<GgmlType>();
        foreach (GgmlType type in types)
        {
            if (KernelTypes.Contains(type) && !measured.Contains(type)) measured.Add(type);
        }
        var rates = new Dictionary<GgmlType, IReadOnlyList<double>>(DecodeBytesPerSecond);
        if (measured.Count > 0)
        {
            using var pool = new ComputePool(Threads);
            unsafe
            {
                byte* buffer = (byte*)NativeMemory.AlignedAlloc(StreamBytes, 4096);
                try
                {
                    foreach ((GgmlType type, IReadOnlyList<double> curve) in MeasureKernelRates(pool, buffer, measured)) rates[type] = curve;
                }
                finally
                {
                    NativeMemory.AlignedFree(buffer);
                }
            }
        }
        MachineProfile current = this with { DecodeBytesPerSecond = rates };
        (double perToken, double perLayer) = MeasureOverhead(current, Threads);
        double before = TokenOverheadSeconds + 2 * LayerOverheadSeconds, after = perToken + 2 * perLayer;
        double scale = before > 0 && after > 0 ? after / before : 1;
        var matmul = new Dictionary<GgmlType, double>();
        // A negative cost corrects in-cache rates measured low (see MeasureMatmulOverhead), not a hand-off: it stays.
        foreach (KeyValuePair<GgmlType, double> p in MatmulOverheadSeconds) matmul[p.Key] = p.Value > 0 ? p.Value * scale : p.Value;
        MachineProfile fresh = current with { TokenOverheadSeconds = perToken, LayerOverheadSeconds = perLayer, RefreshedUtc = DateTime.UtcNow };
        foreach (GgmlType type in measured) matmul[type] = MeasureMatmulOverhead(fresh, Threads, type);
        return fresh with { MatmulOverheadSeconds = matmul };
    }

    // How long measured rates and fixed costs are taken to hold: they moved every few minutes at most.
    private static readonly TimeSpan FreshFor = TimeSpan.FromMinutes(1);

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
            var rates = new Dictionary<GgmlType, IReadOnlyList<double>>();
            foreach (JsonProperty p in r.GetProperty("decode_bytes_per_second").EnumerateObject())
            {
                if (!Enum.TryParse(p.Name, out GgmlType type)) continue;
                var curve = new double[p.Value.GetArrayLength()];
                if (curve.Length != RateSizes.Count) return null;
                int i = 0;
                foreach (JsonElement e in p.Value.EnumerateArray()) curve[i++] = e.GetDouble();
                rates[type] = curve;
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
                MeasuredUtc = r.GetProperty("measured_utc").GetDateTimeOffset().UtcDateTime,
                RefreshedUtc = r.GetProperty("measured_utc").GetDateTimeOffset().UtcDateTime,
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
            w.WriteStartArray("rate_sizes");
            foreach (long size in RateSizes) w.WriteNumberValue(size);
            w.WriteEndArray();
            w.WriteStartObject("decode_bytes_per_second");
            foreach ((GgmlType type, IReadOnlyList<double> curve) in profile.DecodeBytesPerSecond)
            {
                w.WriteStartArray(type.ToString());
                foreach (double rate in curve) w.WriteNumberValue(rate);
                w.WriteEndArray();
            }
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
    /// Working sets at which the decode rates are measured: 512 KiB to 32 MiB (what a core's L2, the cores' L2s
    /// together and the last-level cache of typical machines hold), 64 MiB (past most last-level caches, so the cliff
    /// after them is not smeared over 32–256 MiB) and 256 MiB (past any). Rates in between are interpolated in log
    /// size, so no cache size needs to be known: the curve shows where the caches end.
    /// </summary>
    public static IReadOnlyList<long> RateSizes { get; } = [512L << 10, 2L << 20, 8L << 20, 32L << 20, 64L << 20, StreamBytes];

    /// <summary>
    /// <see cref="DecodeBytesPerSecond"/>: for every type (or those of <paramref name="types"/>), the bytes per second one decode matmul (a single token)
    /// streams through a matrix of 1024 columns and each of <see cref="RateSizes"/>, its weights read again and again
    /// (so a matrix that fits a cache is read from it). Each rate is (W − W₀) / (t(W) − t(W₀)) with W₀ one 16-row tile:
    /// the call's fixed cost (the pool's hand-off, the input's quantization) cancels and is left to the fixed terms
    /// that the model probes fit. The types and sizes are measured in two interleaved rounds (each refills the 256 MiB
    /// buffer per type, the larger part of the time) and each keeps its fastest time, so a burst of load from another
    /// process slows one round of every type a little instead of one type a lot. Rates are then made non-increasing with size (a larger working set never streams faster; a cache
    /// rate measured slower than a larger one is noise). The matrix rows repeat one quantized tile of 16 random rows
    /// (the speed does not depend on the values), written into <paramref name="buffer"/> of <see cref="StreamBytes"/>.
    /// </summary>
    internal static unsafe Dictionary<GgmlType, IReadOnlyList<double>> MeasureKernelRates(ComputePool pool, byte* buffer, IReadOnlyList<GgmlType>? types = null)
    {
        types ??= KernelTypes;
        const int cols = 1024, tileRows = 16, rounds = 2;
        var rng = new Random(3);
        var values = new float[tileRows * cols];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(rng.NextDouble() - 0.5);
        var x = new float[cols];
        for (int i = 0; i < cols; i++) x[i] = (float)(rng.NextDouble() - 0.5);
        var tiles = new Dictionary<GgmlType, byte[]>();
        foreach (GgmlType type in types) tiles[type] = Tile(type, values, tileRows, cols);
        int sizes = RateSizes.Count;
        int smallestTile = int.MaxValue;
        foreach (byte[] tile in tiles.Values) smallestTile = Math.Min(smallestTile, tile.Length);
        var y = new float[StreamBytes / smallestTile * tileRows];
        var seconds = new Dictionary<GgmlType, double[]>();
        foreach (GgmlType type in types)
        {
            seconds[type] = new double[sizes + 1];
            Array.Fill(seconds[type], double.PositiveInfinity);
        }
        for (int round = 0; round < rounds; round++)
        {
            foreach (GgmlType type in types)
            {
                byte[] tile = tiles[type];
                int tiles256 = StreamBytes / tile.Length;
                for (int t = 0; t < tiles256; t++) tile.CopyTo(new Span<byte>(buffer + (long)t * tile.Length, tile.Length));
                double[] best = seconds[type];
                for (int s = 0; s <= sizes; s++)
                {
                    // s == sizes: the one-tile matrix whose time is the call's fixed cost.
                    long bytes = s == sizes ? tile.Length : RateSizes[s];
                    int rows = (int)(bytes / tile.Length) * tileRows;
                    int length = rows / tileRows * tile.Length;
                    var w = new WeightMatrix(type, rows, cols, new UnmanagedMemory(buffer, length).Memory);
                    Span<float> output = y.AsSpan(0, rows);
                    MatMul.Forward(x, w, [], 1, output, pool);
                    // Time enough calls for the clock (0.2 ms); keep the fastest of three batches' mean call.
                    int calls = 1;
                    for (int sample = 0; sample < 3; sample++)
                    {
                        long start = Stopwatch.GetTimestamp();
                        for (int c = 0; c < calls; c++) MatMul.Forward(x, w, [], 1, output, pool);
                        double elapsed = Stopwatch.GetElapsedTime(start).TotalSeconds;
                        best[s] = Math.Min(best[s], elapsed / calls);
                        if (elapsed < 2e-4) calls = (int)Math.Min(4096, calls * Math.Ceiling(2e-4 / Math.Max(elapsed, 1e-7)));
                    }
                }
            }
        }
        var rates = new Dictionary<GgmlType, IReadOnlyList<double>>();
        foreach (GgmlType type in types)
        {
            double[] t = seconds[type];
            long tileBytes = tiles[type].Length;
            double fixedCall = t[sizes];
            var r = new double[sizes];
            for (int s = 0; s < sizes; s++)
            {
                long bytes = RateSizes[s] / tileBytes * tileBytes;
                double streaming = t[s] - fixedCall;
                r[s] = streaming > 0.25 * t[s] ? (bytes - tileBytes) / streaming : bytes / t[s];
            }
            for (int s = sizes - 2; s >= 0; s--) r[s] = Math.Max(r[s], r[s + 1]);
            rates[type] = r;
        }
        return rates;
    }

    /// <summary>(rows, cols) <paramref name="values"/> stored as <paramref name="type"/>.</summary>
    private static byte[] Tile(GgmlType type, float[] values, int rows, int cols)
    {
        if (type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16) return WeightMatrix.FromSingles(values, rows, cols, type).Data.ToArray();
        var tile = new byte[BlockQuantizer.RowSize(type, cols) * rows];
        BlockQuantizer.Quantize(type, values, rows, cols, tile);
        return tile;
    }

    /// <summary>
    /// Bytes per second one F32 decode matmul streams through a matrix of 1024 columns filling <paramref name="bytes"/>
    /// of <paramref name="buffer"/> (whole 16-row tiles): the fastest of three calls after a warm-up.
    /// </summary>
    private static unsafe double MatrixRate(ComputePool pool, byte* buffer, long bytes)
    {
        const int cols = 1024, tileRows = 16;
        var rng = new Random(5);
        var values = new float[tileRows * cols];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(rng.NextDouble() - 0.5);
        byte[] tile = Tile(GgmlType.F32, values, tileRows, cols);
        long tiles = bytes / tile.Length;
        for (long t = 0; t < tiles; t++) tile.CopyTo(new Span<byte>(buffer + t * tile.Length, tile.Length));
        int rows = (int)tiles * tileRows;
        var w = new WeightMatrix(GgmlType.F32, rows, cols, new UnmanagedMemory(buffer, (int)(tiles * tile.Length)).Memory);
        var x = new float[cols];
        for (int i = 0; i < cols; i++) x[i] = (float)(rng.NextDouble() - 0.5);
        var y = new float[rows];
        MatMul.Forward(x, w, [], 1, y, pool);
        double fastest = double.PositiveInfinity;
        for (int call = 0; call < 3; call++)
        {
            long start = Stopwatch.GetTimestamp();
            MatMul.Forward(x, w, [], 1, y, pool);
            fastest = Math.Min(fastest, Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
        return tiles * tile.Length / fastest;
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
    /// <see cref="ModelEfficiency"/>: the decode time of a 126 MB F32 Llama (4 layers of width 768, FFN 2048, 12/4 heads,
    /// vocabulary 8192: the matrices of a 100M-parameter model, its weights past the caches) that
    /// <see cref="ResourceEstimator.StreamSeconds"/> predicts from the single-matrix rate at its size, over the time
    /// measured (less the fixed cost), clamped to [0.2, 1]. The model's 16-token decode and one F32 matrix of its bytes
    /// are timed in turn (each decode after its own short warm-up), seven times, and each keeps its fastest: the
    /// stream bandwidth of a shared machine moves by a third within a second, and a single timing of each gave
    /// efficiencies from 0.65 to 0.94 in profiles a minute apart. The shape matters: F32 rows of width 1024, exactly
    /// one 4 KiB page each, reach about 0.76 of the matrix rate, rows of width 768 about 0.9, as the 100M-parameter
    /// models of width 768 do in bench.
    /// </summary>
    private static double MeasureEfficiency(MachineProfile profile, ComputePool pool, int threads)
    {
        ModelConfig config = ProbeLlama(vocab: 8192, context: 64, width: 768, layers: 4, feedForward: 2048, heads: 12, kvHeads: 4);
        const int tokens = 16, rounds = 7;
        ModelShape shape = ModelShape.FromConfig(config, GgmlType.F32, "efficiency probe");
        long bytes = ResourceEstimator.WeightBytesPerToken(shape);
        double measured = double.PositiveInfinity, matrixRate = 0;
        string path = ProbePath(config, GgmlType.F32);
        unsafe
        {
            byte* buffer = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 4096);
            try
            {
                SyntheticModel.Write(path, config, GgmlType.F32);
                using LanguageModel model = LanguageModel.Load(path, threads);
                for (int round = 0; round < rounds; round++)
                {
                    matrixRate = Math.Max(matrixRate, MatrixRate(pool, buffer, bytes));
                    Evaluation.SpeedTestResult result = Evaluation.SpeedBenchmark.Run(model, Evaluation.SpeedTestKind.Generation, tokens, 1);
                    measured = Math.Min(measured, result.Samples[0].TotalSeconds / tokens);
                }
            }
            finally
            {
                NativeMemory.AlignedFree(buffer);
                File.Delete(path);
            }
        }
        // The profile's rates were measured seconds earlier, under whatever else the machine ran then; the model is
        // compared with a matrix of its size timed in turn with it, and the profile's rate at that size is rescaled
        // to that matrix's, so that load which slows both alike cancels from the ratio.
        double predicted = ResourceEstimator.StreamSeconds(shape, tokens / 2, profile) * profile.DecodeRate(GgmlType.F32, bytes) / matrixRate;
        double fixedCost = ResourceEstimator.FixedSeconds(shape, profile);
        return Math.Clamp(predicted / Math.Max(1e-9, measured - fixedCost), 0.2, 1);
    }

    /// <summary>
    /// <see cref="MatmulOverheadSeconds"/> of <paramref name="type"/>: the decode seconds per token of a Llama of
    /// width 256 (2 layers, 4 heads, 2 KV heads, FFN 768, vocabulary 2048, tied output: 15 matrices, about 2M weights,
    /// so they sit in cache) with every matrix in <paramref name="type"/>, less
    /// <see cref="ResourceEstimator.StreamSeconds"/> (with <see cref="ModelEfficiency"/>, as the estimate uses it) and
    /// t_token + t_layer·L, over the 15 matrices. What remains is what a matmul of this type costs at any size beyond
    /// its bytes: the input's quantization to 8-bit blocks, the kernel's per-call and per-row-block setup, and the
    /// hand-off pattern of small matrices. It may be negative, down to half the predicted streaming time a matrix:
    /// the in-cache rates are measured per call of a few microseconds less a fixed cost of about as much, and came
    /// out as much as a third low in some profiles (F32 at 2 MiB: 104 against 143 GB/s); a 2M-parameter F32 model was
    /// then estimated 20–25% slow, which the residual of this probe, of about that size, corrects.
    /// </summary>
    private static double MeasureMatmulOverhead(MachineProfile profile, int threads, GgmlType type)
    {
        ModelConfig config = MatmulProbe;
        const int tokens = 32;
        double measured = DecodeSecondsPerToken(config, threads, tokens, type);
        ModelShape shape = ModelShape.FromConfig(config, type, "matmul probe");
        double streaming = ResourceEstimator.StreamSeconds(shape, tokens / 2, profile);
        double predicted = streaming + profile.TokenOverheadSeconds + profile.LayerOverheadSeconds * config.BlockCount;
        int matrices = ResourceEstimator.MatrixCount(shape);
        return Math.Max(-0.5 * streaming, measured - predicted) / matrices;
    }

    /// <summary>The shape the per-type matmul cost is measured on: width 256 (a multiple of every block size), weights in cache.</summary>
    internal static ModelConfig MatmulProbe { get; } =
        ProbeLlama(vocab: 2048, context: 64, width: 256, layers: 2, feedForward: 768, heads: 4, kvHeads: 2);

    /// <summary>A probe model's shape: a Llama with tied output and full-width RoPE, head size width / heads.</summary>
    private static ModelConfig ProbeLlama(int vocab, int context, int width, int layers, int feedForward, int heads, int kvHeads) => new()
    {
        Architecture = ModelArchitecture.Llama,
        VocabSize = vocab,
        ContextLength = context,
        EmbeddingLength = width,
        BlockCount = layers,
        FeedForwardLength = feedForward,
        HeadCount = heads,
        KvHeadCount = kvHeads,
        HeadDim = width / heads,
        NormEpsilon = 1e-5f,
        RopeDims = width / heads,
        TiedOutput = true,
    };

    /// <summary>
    /// The median of <see cref="ProbeRepetitions"/> repetitions of decode seconds per token of a synthetic model of
    /// <paramref name="config"/> with matrices in <paramref name="weightType"/> (written to a temp file and
    /// memory-mapped, as bench runs it), timed by <see cref="Evaluation.SpeedBenchmark"/> after its warm-up, so in the
    /// runtime's steady state: a fixed cost. The median, not the fastest: `smith bench` reports the mean of its
    /// repetitions, and the fastest of 25 short runs was 4–10% faster than that mean on a shared machine. The probes
    /// take 25 repetitions of a few milliseconds each, so that a stall of the machine cannot cover half of them (with
    /// 5, one such stall once put Q4_0's fixed cost per matmul at 28 µs against its usual 1).
    /// </summary>
    private const int ProbeRepetitions = 25;

    private static double DecodeSecondsPerToken(ModelConfig config, int threads, int tokens, GgmlType weightType = GgmlType.F32)
    {
        string path = ProbePath(config, weightType);
        try
        {
            SyntheticModel.Write(path, config, weightType);
            using LanguageModel model = LanguageModel.Load(path, threads);
            Evaluation.SpeedTestResult result = Evaluation.SpeedBenchmark.Run(model, Evaluation.SpeedTestKind.Generation, tokens, ProbeRepetitions);
            var perToken = new double[result.Samples.Count];
            for (int i = 0; i < perToken.Length; i++) perToken[i] = result.Samples[i].TotalSeconds / tokens;
            Array.Sort(perToken);
            return perToken[perToken.Length / 2];
        }
        finally
        {
            File.Delete(path);
        }
    }

    // A temp file per process and probe shape, so that profiles measured at once do not share one.
    private static string ProbePath(ModelConfig config, GgmlType weightType) =>
        Path.Combine(Path.GetTempPath(), $"modelsmith-probe-{Environment.ProcessId}-{config.BlockCount}-{config.EmbeddingLength}-{weightType}.gguf");

    private static double OverheadOf(MachineProfile profile, int threads, int layers)
    {
        ModelConfig config = ProbeLlama(vocab: 512, context: 256, width: 64, layers: layers, feedForward: 256, heads: 4, kvHeads: 2);
        const int tokens = 64;
        double measured = DecodeSecondsPerToken(config, threads, tokens);
        ModelShape shape = ModelShape.FromConfig(config, GgmlType.F32, "overhead probe");
        return Math.Max(0, measured - ResourceEstimator.StreamSeconds(shape, tokens / 2, profile));
    }
}
