using System.Diagnostics;

namespace ModelSmith.Bench;

/// <summary>Prefill and decode speed in llama-bench's manner: pp = one batch of <c>pp</c> tokens from an
/// empty cache (BOS first, the rest random ids), tg = <c>tg</c> single-token decodes from an empty cache
/// (BOS first, then random ids); one untimed warm-up of each, then <c>reps</c> timed repetitions.
/// Decode is also timed by process CPU time divided by the thread count (tokens per CPU-second per
/// thread), a steadier comparison than the wall clock when other processes share the cores.
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
        var rng = new Random(seed);
        int[] prompt = RandomTokens(rng, decoder, pp); // (pp,)
        int[] generated = RandomTokens(rng, decoder, tg); // (tg,)

        decoder.Reset();
        decoder.Prefill(prompt);
        decoder.Reset();
        decoder.Decode(generated[0]);

        var ppSeconds = new double[reps];
        var tgSeconds = new double[reps];
        var tgCpuSeconds = new double[reps];
        for (int r = 0; r < reps; r++)
        {
            decoder.Reset();
            long start = Stopwatch.GetTimestamp();
            decoder.Prefill(prompt);
            ppSeconds[r] = Stopwatch.GetElapsedTime(start).TotalSeconds;
        }
        for (int r = 0; r < reps; r++)
        {
            decoder.Reset();
            TimeSpan cpuStart = Environment.CpuUsage.TotalTime;
            long start = Stopwatch.GetTimestamp();
            for (int i = 0; i < tg; i++)
            {
                decoder.Decode(generated[i]);
            }
            tgSeconds[r] = Stopwatch.GetElapsedTime(start).TotalSeconds;
            // CPU time per thread: what the decode would take if each of its threads had a core to itself,
            // which other processes on the same cores change far less than the wall clock.
            tgCpuSeconds[r] = (Environment.CpuUsage.TotalTime - cpuStart).TotalSeconds / threads;
        }
        var (ppMin, ppMedian) = Measure.MinMedian(ppSeconds);
        var (tgMin, tgMedian) = Measure.MinMedian(tgSeconds);
        var (tgCpuMin, tgCpuMedian) = Measure.MinMedian(tgCpuSeconds);
        // The decode at position p attends to p + 1 cached positions; averaged over p = 0 .. tg-1.
        double bytesPerToken = decoder.WeightBytes + decoder.KvBytesPerPosition * (tg + 1) / 2.0;
        return new Result(decoder.Name, decoder.Settings, threads, pp / ppMedian, pp / ppMin, tg / tgMedian, tg / tgMin, tg / tgCpuMedian, tg / tgCpuMin, bytesPerToken);
    }

    private static int[] RandomTokens(Random rng, IDecoderUnderTest decoder, int count)
    {
        var tokens = new int[count];
        for (int i = 0; i < count; i++)
        {
            tokens[i] = rng.Next(decoder.VocabSize);
        }
        if (count > 0 && decoder.Bos >= 0)
        {
            tokens[0] = decoder.Bos;
        }
        return tokens;
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
            first.Reset();
            second.Reset();
            double wa = 0, wb = 0, ca = 0, cb = 0;
            for (int i = 0; i < tg; i++)
            {
                var (w, c) = Decode(first, generated[i]);
                wa += w;
                ca += c;
                (w, c) = Decode(second, generated[i]);
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

    // Seconds of wall clock and of process CPU time for one decode.
    private static (double Wall, double Cpu) Decode(IDecoderUnderTest decoder, int token)
    {
        TimeSpan cpuStart = Environment.CpuUsage.TotalTime;
        long start = Stopwatch.GetTimestamp();
        decoder.Decode(token);
        return (Stopwatch.GetElapsedTime(start).TotalSeconds, (Environment.CpuUsage.TotalTime - cpuStart).TotalSeconds);
    }
}
