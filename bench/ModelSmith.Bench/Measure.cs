using System.Diagnostics;

namespace ModelSmith.Bench;

/// <summary>Timing helpers: repeated runs summarised as best and median, and a parallel driver that
/// starts all workers together and times from the common start to the last finish.</summary>
internal static class Measure
{
    /// <summary>Best (smallest) and median of <paramref name="values"/>; sorts a copy.</summary>
    public static (double Min, double Median) MinMedian(ReadOnlySpan<double> values)
    {
        if (values.Length == 0)
        {
            throw new ArgumentException("No measurements to summarise.", nameof(values));
        }
        var sorted = values.ToArray();
        Array.Sort(sorted);
        int n = sorted.Length;
        double median = n % 2 == 1 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
        return (sorted[0], median);
    }

    /// <summary>Runs <paramref name="body"/>(worker index) on <paramref name="workers"/> dedicated threads
    /// released together; returns the seconds from the release to the last worker's end.</summary>
    public static double Parallel(int workers, Action<int> body)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(workers, 1);
        using var ready = new CountdownEvent(workers);
        using var go = new ManualResetEventSlim(false);
        var threads = new Thread[workers];
        for (int w = 0; w < workers; w++)
        {
            int index = w;
            threads[w] = new Thread(() =>
            {
                ready.Signal();
                go.Wait();
                body(index);
            })
            { IsBackground = true, Name = $"bench-{index}" };
            threads[w].Start();
        }
        ready.Wait();
        long start = Stopwatch.GetTimestamp();
        go.Set();
        for (int w = 0; w < workers; w++)
        {
            threads[w].Join();
        }
        return Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    /// <summary>Thread counts 1..N as a comma-separated option value, e.g. "1,2".</summary>
    public static int[] ParseThreadList(string value)
    {
        var parts = value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var result = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], out result[i]) || result[i] < 1)
            {
                throw new UsageException($"--threads: '{parts[i]}' is not a positive thread count (expected e.g. 1,2).");
            }
        }
        if (result.Length == 0)
        {
            throw new UsageException("--threads: give at least one thread count, e.g. 1,2.");
        }
        return result;
    }
}

/// <summary>Bad command line; Program prints the message and the usage and exits with 2.</summary>
internal sealed class UsageException(string message) : Exception(message);
