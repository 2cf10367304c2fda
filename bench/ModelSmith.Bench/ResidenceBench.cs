using System.Diagnostics;
using System.Globalization;
using ModelSmith.Formats;
using ModelSmith.Models;
using ModelSmith.Tensors;
using Spectre.Console;

namespace ModelSmith.Bench;

/// <summary>
/// The decode matvec over a GGUF file's own linear layers (every 2-D tensor; the token embedding last, as
/// the tied output), with the weights held three ways: read from the file's memory map, copied into the
/// private 2 MiB-aligned huge-page block a model loads into (<see cref="WeightResidence.Memory"/>), and
/// copied into ordinary managed arrays. The three are timed in turn, one token each, so load that comes
/// and goes on a shared machine falls on all of them; what is left is how the weights' memory and values
/// change the speed of the same kernels.
/// </summary>
internal static class ResidenceBench
{
    public static void Run(Options options)
    {
        string path = options.Positional ?? throw new UsageException("residence needs a MODEL.gguf.");
        int threads = options.Int("threads", 1);
        int reps = options.Int("reps", 20);
        options.ThrowOnUnused();
        if (reps < 1) throw new UsageException("--reps must be at least 1.");

        using GgufFile file = GgufFile.Open(path);
        using var mapped = new WeightStore(file, WeightResidence.Mapped);
        using var privateBlock = new WeightStore(file, WeightResidence.Memory);
        (string Name, List<WeightMatrix> Matrices)[] residences =
        [
            ("mapped file", Matrices(file, t => mapped.Get(t))),
            ("private block (huge pages)", Matrices(file, t => privateBlock.Get(t))),
            ("managed arrays", Matrices(file, t => mapped.Get(t).ToArray())),
        ];
        long bytes = 0;
        int maxRows = 0, maxCols = 0;
        foreach (WeightMatrix w in residences[0].Matrices)
        {
            bytes += w.Data.Length;
            maxRows = Math.Max(maxRows, w.Rows);
            maxCols = Math.Max(maxCols, w.Cols);
        }
        var rng = new Random(7);
        var x = new float[maxCols]; // (K) for every matrix, the first Cols used
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() - 0.5);
        var y = new float[maxRows];

        using var pool = new ComputePool(threads);
        var seconds = new double[residences.Length][];
        for (int r = 0; r < residences.Length; r++) seconds[r] = new double[reps];
        for (int rep = -1; rep < reps; rep++)
        {
            for (int r = 0; r < residences.Length; r++)
            {
                long start = Stopwatch.GetTimestamp();
                foreach (WeightMatrix w in residences[r].Matrices)
                    MatMul.Forward(x.AsSpan(0, w.Cols), w, ReadOnlySpan<float>.Empty, 1, y.AsSpan(0, w.Rows), pool);
                if (rep >= 0) seconds[r][rep] = Stopwatch.GetElapsedTime(start).TotalSeconds;
            }
        }

        var table = new Table().Title($"{Path.GetFileName(path)}: decode matvec over its {residences[0].Matrices.Count} matrices ({bytes / 1e6:F0} MB), {threads} thread(s), {reps} tokens each, alternating");
        table.AddColumn("weights held in");
        table.AddColumn("t/s median (best)");
        table.AddColumn("GB/s median (best)");
        for (int r = 0; r < residences.Length; r++)
        {
            var (best, median) = Measure.MinMedian(seconds[r]);
            table.AddRow(
                residences[r].Name,
                string.Create(CultureInfo.InvariantCulture, $"{1 / median:F1} ({1 / best:F1})"),
                string.Create(CultureInfo.InvariantCulture, $"{bytes / median / 1e9:F1} ({bytes / best / 1e9:F1})"));
        }
        AnsiConsole.Write(table);
    }

    private static List<WeightMatrix> Matrices(GgufFile file, Func<GgufTensorInfo, ReadOnlyMemory<byte>> bytes)
    {
        var matrices = new List<WeightMatrix>();
        WeightMatrix? embedding = null;
        foreach (GgufTensorInfo t in file.Tensors)
        {
            if (t.Shape.Length != 2) continue;
            var w = new WeightMatrix(t.Type, (int)t.Rows, (int)t.Columns, bytes(t));
            if (t.Name == "token_embd.weight") embedding = w;
            else matrices.Add(w);
        }
        if (embedding is WeightMatrix output) matrices.Add(output);
        return matrices;
    }
}
