using System.Diagnostics;
using System.Globalization;
using ModelSmith.Tensors;
using Spectre.Console;

namespace ModelSmith.Bench;

/// <summary>
/// The fixed cost of one <see cref="ComputePool.Run{TJob}"/>: a job whose items do nothing, run back to back,
/// so the time per call is the hand-off alone (publishing the job, the workers noticing it, claiming items and
/// reporting back). A decode step issues about ten such jobs a layer; for a model small enough to sit in cache
/// this is most of its step time.
/// </summary>
internal static class HandoffBench
{
    public static void Run(Options options)
    {
        int[] threads = options.Threads;
        int reps = options.Int("reps", 10);
        int items = options.Int("items", 8);
        int calls = options.Int("calls", 20000);
        options.ThrowOnUnused();
        var table = new Table().Title($"ComputePool hand-off: {calls} empty jobs of {items} items back to back, {reps} runs 0.2 s apart");
        table.AddColumns("threads", "best µs/job", "median µs/job", "worst µs/job");
        foreach (int t in threads)
        {
            using var pool = new ComputePool(t);
            var job = new Empty();
            var samples = new double[reps];
            for (int c = 0; c < calls; c++) pool.Run(ref job, items);
            for (int r = 0; r < reps; r++)
            {
                Thread.Sleep(200);
                long start = Stopwatch.GetTimestamp();
                for (int c = 0; c < calls; c++) pool.Run(ref job, items);
                samples[r] = Stopwatch.GetElapsedTime(start).TotalSeconds / calls * 1e6;
            }
            Array.Sort(samples);
            table.AddRow(t.ToString(CultureInfo.InvariantCulture), F(samples[0]), F(samples[reps / 2]), F(samples[^1]));
        }
        AnsiConsole.Write(table);
    }

    private static string F(double v) => v.ToString("0.000", CultureInfo.InvariantCulture);

    private struct Empty : IParallelJob
    {
        public readonly void Execute(int item, int worker)
        {
        }
    }
}
