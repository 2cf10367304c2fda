using System.Diagnostics;
using ModelSmith.Inference;
using ModelSmith.Models;

namespace ModelSmith.Evaluation;

/// <summary>The kind of a speed test, as llama-bench names them.</summary>
public enum SpeedTestKind
{
    /// <summary>Prompt processing ("pp512"): one batched forward pass over n random tokens.</summary>
    Prompt,

    /// <summary>Text generation ("tg128"): n forward passes of one token each.</summary>
    Generation,
}

/// <summary>The repetitions of one speed test.</summary>
/// <param name="Tokens">Tokens processed per repetition.</param>
/// <param name="Samples">Wall time of each repetition (the warm-up run excluded).</param>
public sealed record SpeedTestResult(SpeedTestKind Kind, int Tokens, IReadOnlyList<TimeSpan> Samples)
{
    /// <summary>llama-bench's test name: pp512, tg128 ...</summary>
    public string Name => (Kind == SpeedTestKind.Prompt ? "pp" : "tg") + Tokens.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Mean over repetitions of tokens / seconds (llama-bench's avg_ts).</summary>
    public double MeanTokensPerSecond
    {
        get
        {
            double sum = 0;
            foreach (TimeSpan t in Samples) sum += Rate(t);
            return sum / Samples.Count;
        }
    }

    /// <summary>Sample standard deviation of tokens / seconds over repetitions (llama-bench's stdev_ts; 0 for one).</summary>
    public double StdDevTokensPerSecond
    {
        get
        {
            int n = Samples.Count;
            if (n <= 1) return 0;
            double mean = MeanTokensPerSecond, sq = 0;
            foreach (TimeSpan t in Samples) sq += Rate(t) * Rate(t);
            return Math.Sqrt(Math.Max(0, sq / (n - 1) - mean * mean * n / (n - 1)));
        }
    }

    private double Rate(TimeSpan t) => Tokens / Math.Max(t.TotalSeconds, 1e-12);
}

/// <summary>An inference engine a speed test can time: one sequence, a KV cache, token ids decoded in batches.
/// The same timing loop drives our model and a peer (llama.cpp), so the two are measured the same way.</summary>
public interface ISpeedTestEngine
{
    /// <summary>Token ids run from 0 to VocabSize − 1.</summary>
    int VocabSize { get; }

    /// <summary>Empties the KV cache; the next token goes to position 0.</summary>
    void ClearCache();

    /// <summary>Decodes <paramref name="tokens"/> (n,) in one call at the next n positions, computing the
    /// logits of the last one (as a generator would).</summary>
    void Decode(ReadOnlySpan<int> tokens);
}

/// <summary>
/// Prefill and decode speed with llama-bench's conventions (tools/llama-bench): a prompt test decodes n
/// random tokens (BOS first when the vocabulary adds one) in one batch from an empty cache; a generation
/// test decodes n tokens one call at a time (BOS, then random tokens) from an empty cache. Each test is run
/// to warm up until the runtime stops recompiling (see <see cref="WarmUp"/>), then <c>reps</c> times, timed; tokens/s
/// is averaged over the repetitions with its standard deviation.
/// </summary>
public static class SpeedBenchmark
{
    /// <summary>Runs one test. <paramref name="firstToken"/> is BOS when the vocabulary adds one, else −1 (random).</summary>
    public static SpeedTestResult Run(LanguageModel model, SpeedTestKind kind, int tokens, int repetitions, int firstToken = -1,
        int seed = 1, IProgress<int>? progress = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentOutOfRangeException.ThrowIfLessThan(tokens, 1);
        if (model.Config.Architecture == ModelArchitecture.Gpt2 && tokens > model.Config.ContextLength)
        {
            throw new ArgumentOutOfRangeException(nameof(tokens), tokens, $"GPT-2 has learned positions for {model.Config.ContextLength} tokens only; test at most that many.");
        }
        return Run(new ModelEngine(model, tokens), kind, tokens, repetitions, firstToken, seed, progress, cancellation);
    }

    /// <summary>Runs one test on any engine, with the same warm-up, token ids and timing as for our model.
    /// <paramref name="firstToken"/> is BOS when the vocabulary adds one, else −1 (random).</summary>
    public static SpeedTestResult Run(ISpeedTestEngine engine, SpeedTestKind kind, int tokens, int repetitions, int firstToken = -1,
        int seed = 1, IProgress<int>? progress = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentOutOfRangeException.ThrowIfLessThan(tokens, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(repetitions, 1);
        int vocab = engine.VocabSize;
        if (firstToken >= vocab)
        {
            throw new ArgumentOutOfRangeException(nameof(firstToken), firstToken, $"The first token is outside the vocabulary of {vocab} tokens.");
        }
        var rng = new Random(seed);
        var ids = new int[tokens];
        var samples = new List<TimeSpan>(repetitions);

        void Once(int count)
        {
            engine.ClearCache();
            if (kind == SpeedTestKind.Prompt)
            {
                for (int i = 0; i < count; i++) ids[i] = rng.Next(vocab);
                if (firstToken >= 0) ids[0] = firstToken;
                engine.Decode(ids.AsSpan(0, count));
                return;
            }
            int token = firstToken >= 0 ? firstToken : rng.Next(vocab);
            for (int i = 0; i < count; i++)
            {
                ids[0] = token;
                engine.Decode(ids.AsSpan(0, 1));
                token = rng.Next(vocab);
            }
        }

        WarmUp(() => Once(tokens));
        for (int r = 0; r < repetitions; r++)
        {
            cancellation.ThrowIfCancellationRequested();
            long start = Stopwatch.GetTimestamp();
            Once(tokens);
            samples.Add(Stopwatch.GetElapsedTime(start));
            progress?.Report(r + 1);
        }
        return new SpeedTestResult(kind, tokens, samples);
    }

    /// <summary>Our model with a cache of <c>capacity</c> positions and a logits buffer: the calls a generator makes.</summary>
    internal sealed class ModelEngine(LanguageModel model, int capacity) : ISpeedTestEngine
    {
        private readonly KvCache _cache = model.CreateCache(capacity);
        private readonly float[] _logits = new float[model.Config.VocabSize]; // (V,)

        public int VocabSize => model.Config.VocabSize;

        /// <summary>Most tokens the cache holds.</summary>
        public int Capacity => _cache.Capacity;

        public void ClearCache() => _cache.Clear();

        public void Decode(ReadOnlySpan<int> tokens) => model.Forward(tokens, _cache, _logits);
    }

    /// <summary>
    /// Runs <paramref name="once"/> until the runtime has compiled no new method for 0.2 s (at most 1 s, at least
    /// once). Tiered compilation recompiles hot methods on a background thread for a few hundred milliseconds after
    /// they start running; a short test timed during that stretch measures the compiler sharing a core, not the model
    /// (a 2-thread decode of a 2M-parameter model read 30-50% slow). llama-bench has no such phase to wait out.
    /// </summary>
    private static void WarmUp(Action once)
    {
        const double quietSeconds = 0.2, maxSeconds = 1;
        long start = Stopwatch.GetTimestamp(), quietSince = start;
        long compiled = System.Runtime.JitInfo.GetCompiledMethodCount();
        do
        {
            once();
            long now = System.Runtime.JitInfo.GetCompiledMethodCount();
            if (now != compiled)
            {
                compiled = now;
                quietSince = Stopwatch.GetTimestamp();
            }
            else if (Stopwatch.GetElapsedTime(quietSince).TotalSeconds >= quietSeconds)
            {
                return;
            }
        }
        while (Stopwatch.GetElapsedTime(start).TotalSeconds < maxSeconds);
    }

    /// <summary>
    /// The most memory this process has had resident so far, in bytes: VmHWM of /proc/self/status on Linux
    /// (pages of a memory-mapped model file count once they are touched), else Process.PeakWorkingSet64.
    /// </summary>
    public static long PeakResidentBytes()
    {
        const string status = "/proc/self/status";
        if (File.Exists(status))
        {
            foreach (string line in File.ReadLines(status))
            {
                if (!line.StartsWith("VmHWM:", StringComparison.Ordinal)) continue;
                string[] parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (parts.Length >= 2 && long.TryParse(parts[1], System.Globalization.CultureInfo.InvariantCulture, out long kib))
                {
                    return kib * 1024;
                }
            }
        }
        using Process self = Process.GetCurrentProcess();
        return self.PeakWorkingSet64;
    }
}
