using System.Diagnostics;
using ModelSmith.Evaluation;

namespace ModelSmith.Bench;

/// <summary>Prefill and decode speed in llama-bench's manner, timed by the library's <see cref="SpeedBenchmark"/> loop
/// (the one `smith bench` runs): pp = one batch of <c>pp</c> tokens from an empty cache, tg = <c>tg</c> single-token
/// decodes from an empty cache, BOS first and the rest random ids; each test is warmed up until the runtime stops
/// compiling, then run <c>reps</c> times, timed. Decode is also timed by process CPU time divided by the thread count
/// (tokens per CPU-second per thread), a steadier comparison than the wall clock when other processes share the cores.
/// Random ids keep the numbers independent of the model's predictions; speed does not depend on them.</summary>
internal static class SpeedBench
{
    internal sealed record Result(
        string Decoder,
        string Settings,
        int Threads,
        double PpMedian,
        double PpBest,
        double TgMedian,
        double TgBest,
        double TgCpuMedian,
        double TgCpuBest,
        double DecodeBytesPerToken);

    /// <summary>Measures <paramref name="decoder"/>; tokens/s are median and best over <paramref name="reps"/>.</summary>
    public static Result Run(IDecoderUnderTest decoder, int threads, int pp, int tg, int reps, int seed)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(reps, 1);
        if (pp > decoder.ContextSize || tg > decoder.ContextSize)
        {
            throw new UsageException($"pp {pp} / tg {tg} exceed {decoder.Name}'s context of {decoder.ContextSize} tokens.");
        }
        SpeedTestResult prompt = SpeedBenchmark.Run(decoder, SpeedTestKind.Prompt, pp, reps, decoder.Bos, seed);
        var cpu = new CpuTimePerRun(decoder);
        SpeedTestResult generation = SpeedBenchmark.Run(cpu, SpeedTestKind.Generation, tg, reps, decoder.Bos, seed);
        // CPU time per thread: what the decode would take if each of its threads had a core to itself,
        // which other processes on the same cores change far less than the wall clock.
        double[] tgCpuSeconds = cpu.LastRuns(reps);
        for (int r = 0; r < reps; r++) tgCpuSeconds[r] /= threads;

        var (ppMin, ppMedian) = Measure.MinMedian(Seconds(prompt));
        var (tgMin, tgMedian) = Measure.MinMedian(Seconds(generation));
        var (tgCpuMin, tgCpuMedian) = Measure.MinMedian(tgCpuSeconds);
        // The decode at position p attends to p + 1 cached positions; averaged over p = 0 .. tg-1.
        double bytesPerToken = decoder.WeightBytes + decoder.KvBytesPerPosition * (tg + 1) / 2.0;
        return new Result(decoder.Name, decoder.Settings, threads, pp / ppMedian, pp / ppMin, tg / tgMedian, tg / tgMin, tg / tgCpuMedian, tg / tgCpuMin, bytesPerToken);
    }

    private static double[] Seconds(SpeedTestResult result)
    {
        var seconds = new double[result.Samples.Count];
        for (int r = 0; r < seconds.Length; r++) seconds[r] = result.Samples[r].TotalSeconds;
        return seconds;
    }

    /// <summary>Process CPU time of every run <see cref="SpeedBenchmark"/> makes on an engine: a run starts where the
    /// loop clears the cache (it does so first in each run, warm-up runs included) and ends at the next clear or at
    /// <see cref="LastRuns"/>. The library times the wall clock only; CPU time per repetition is this benchmark's own measure.</summary>
    private sealed class CpuTimePerRun(ISpeedTestEngine engine) : ISpeedTestEngine
    {
        private readonly List<double> _runs = [];
        private TimeSpan _start;
        private bool _running;

        public int VocabSize => engine.VocabSize;

        public void ClearCache()
        {
            EndRun();
            engine.ClearCache();
            _start = Environment.CpuUsage.TotalTime;
            _running = true;
        }

        public void Decode(ReadOnlySpan<int> tokens) => engine.Decode(tokens);

        /// <summary>CPU seconds of the last <paramref name="count"/> runs: the timed repetitions, which follow the warm-up.</summary>
        public double[] LastRuns(int count)
        {
            EndRun();
            if (_runs.Count < count)
            {
                throw new InvalidOperationException($"{_runs.Count} runs were made, fewer than the {count} repetitions asked for.");
            }
            return _runs.GetRange(_runs.Count - count, count).ToArray();
        }

        private void EndRun()
        {
            if (!_running) return;
            _runs.Add((Environment.CpuUsage.TotalTime - _start).TotalSeconds);
            _running = false;
        }
    }
}

/// <summary>Decode speed of two decoders measured in alternation: each repetition decodes the same
/// <c>tg</c> tokens with both from empty caches, one token with the first, then that token with the
/// second, and so on, and the ratio of their summed times is taken per repetition; load from other
/// processes that comes and goes (it swings the wall clock by 2x here) then falls on both sides of each
/// ratio instead of on whichever engine happened to run at the time.</summary>
internal static class PairedDecodeBench
{
    internal sealed record Result(int Threads, double[] WallRatios, double[] CpuRatios, double[] FirstCpuTps, double[] SecondCpuTps);

    // Its own loop, not SpeedBenchmark's: it alternates two engines token by token and times each token, which a whole-run timer cannot.
    public static Result Run(IDecoderUnderTest first, IDecoderUnderTest second, int threads, int tg, int reps, int seed)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(reps, 1);
        var rng = new Random(seed);
        var generated = new int[tg]; // (tg,)
        for (int i = 0; i < tg; i++) generated[i] = rng.Next(Math.Min(first.VocabSize, second.VocabSize));
        if (first.Bos >= 0) generated[0] = first.Bos;
        var wall = new double[reps];
        var cpu = new double[reps];
        var firstTps = new double[reps];
        var secondTps = new double[reps];
        for (int r = -1; r < reps; r++)
        {
            first.ClearCache();
            second.ClearCache();
            double wa = 0, wb = 0, ca = 0, cb = 0;
            for (int i = 0; i < tg; i++)
            {
                var (w, c) = Decode(first, generated.AsSpan(i, 1));
                wa += w;
                ca += c;
                (w, c) = Decode(second, generated.AsSpan(i, 1));
                wb += w;
                cb += c;
            }
            if (r < 0) continue; // warm-up
            wall[r] = wa / wb;
            cpu[r] = ca / cb;
            firstTps[r] = tg * threads / ca;
            secondTps[r] = tg * threads / cb;
        }
        return new Result(threads, wall, cpu, firstTps, secondTps);
    }

    // Seconds of wall clock and of process CPU time for one decode of token (1,).
    private static (double Wall, double Cpu) Decode(IDecoderUnderTest decoder, ReadOnlySpan<int> token)
    {
        TimeSpan cpuStart = Environment.CpuUsage.TotalTime;
        long start = Stopwatch.GetTimestamp();
        decoder.Decode(token);
        return (Stopwatch.GetElapsedTime(start).TotalSeconds, (Environment.CpuUsage.TotalTime - cpuStart).TotalSeconds);
    }
}
