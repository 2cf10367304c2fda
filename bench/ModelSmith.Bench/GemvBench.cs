using System.Globalization;
using System.Runtime.InteropServices;
using ModelSmith.Formats;
using ModelSmith.Quantization;
using ModelSmith.Tensors;
using Spectre.Console;

namespace ModelSmith.Bench;

/// <summary>
/// The decode matvec alone: every linear layer of the synthetic 100M Llama (12 blocks of q, k, v, o, gate,
/// up, down, then the 32000-row output), one token, random weights of one storage type, timed by process
/// CPU time per thread as well as the wall clock. Isolates the kernel from attention, norms and the rest
/// of the forward pass, so changes to it can be compared on a busy machine.
/// </summary>
internal static class GemvBench
{
    public static void Run(Options options)
    {
        int[] threads = options.Threads;
        int reps = options.Int("reps", 20);
        bool resident = options.Flag("resident");
        var type = options.Choice("type", "f16", ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k"]) switch
        {
            "f32" => GgmlType.F32,
            "bf16" => GgmlType.BF16,
            "q8_0" => GgmlType.Q8_0,
            "q4_0" => GgmlType.Q4_0,
            "q4_k" => GgmlType.Q4_K,
            "q6_k" => GgmlType.Q6_K,
            _ => GgmlType.F16,
        };
        options.ThrowOnUnused();

        const int Dim = 768, KvDim = 256, Ff = 2048, Vocab = 32000, Blocks = 12;
        (int Rows, int Cols)[] perBlock = [(Dim, Dim), (KvDim, Dim), (KvDim, Dim), (Dim, Dim), (Ff, Dim), (Ff, Dim), (Dim, Ff)];
        var rng = new Random(7);
        var matrices = new List<WeightMatrix>();
        long bytes = 0;
        for (int b = 0; b <= Blocks; b++)
        {
            var shapes = b < Blocks ? perBlock : [(Vocab, Dim)];
            foreach (var (rows, cols) in shapes)
            {
                var values = new float[rows * cols];
                for (int i = 0; i < values.Length; i++) values[i] = (float)(rng.NextDouble() - 0.5) * 0.1f;
                WeightMatrix w;
                if (GgmlTypeInfo.BlockSize(type) > 1)
                {
                    var packed = new byte[GgmlTypeInfo.ByteCount(type, (long)rows * cols)];
                    BlockQuantizer.Quantize(type, values, rows, cols, packed);
                    w = new WeightMatrix(type, rows, cols, packed);
                }
                else
                {
                    w = WeightMatrix.FromSingles(values, rows, cols, type);
                }
                matrices.Add(OnCacheLines(w));
                bytes += w.Data.Length;
            }
        }
        var x = new float[Ff]; // (K) for every matrix, the first Cols used
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() - 0.5);
        var y = new float[Vocab];

        if (resident)
        {
            // The first block's seven matrices, twelve times: the same work per token as the 12 blocks, on
            // weights that stay in cache, so the kernel's compute speed shows apart from memory.
            var first = matrices.GetRange(0, perBlock.Length);
            bytes = 0;
            matrices.Clear();
            for (int b = 0; b < Blocks; b++) matrices.AddRange(first);
            foreach (var w in matrices) bytes += w.Data.Length;
        }
        var table = new Table().Title($"decode matvec, {type}, {bytes / 1e6:F0} MB of weights per token{(resident ? " (one block's, in cache, 12 times; no output)" : "")}, {reps} tokens");
        table.AddColumn("threads");
        table.AddColumn("t/s wall median (best)");
        table.AddColumn("t/cpu-s median (best)");
        table.AddColumn("GB/s by CPU time (best)");
        foreach (int t in threads)
        {
            using var pool = new ComputePool(t);
            var wall = new double[reps];
            var cpu = new double[reps];
            for (int r = -2; r < reps; r++)
            {
                TimeSpan c0 = Environment.CpuUsage.TotalTime;
                long s0 = System.Diagnostics.Stopwatch.GetTimestamp();
                foreach (var w in matrices)
                {
                    MatMul.Forward(x.AsSpan(0, w.Cols), w, ReadOnlySpan<float>.Empty, 1, y.AsSpan(0, w.Rows), pool);
                }
                if (r < 0) continue;
                wall[r] = System.Diagnostics.Stopwatch.GetElapsedTime(s0).TotalSeconds;
                cpu[r] = (Environment.CpuUsage.TotalTime - c0).TotalSeconds / t;
            }
            var (wallBest, wallMedian) = Measure.MinMedian(wall);
            var (cpuBest, cpuMedian) = Measure.MinMedian(cpu);
            table.AddRow(
                t.ToString(CultureInfo.InvariantCulture),
                $"{1 / wallMedian:F1} ({1 / wallBest:F1})",
                $"{1 / cpuMedian:F1} ({1 / cpuBest:F1})",
                $"{bytes / cpuBest / 1e9:F1}");
        }
        AnsiConsole.Write(table);
        GC.KeepAlive(MemoryMarshal.GetArrayDataReference(y));
    }

    /// <summary>
    /// A copy of the matrix in 64-byte-aligned native memory, where a loaded model's weights live
    /// (<see cref="Models.WeightStore"/>); a managed array's data is only 8-byte aligned, so
    /// every 64-byte load of it would span two cache lines. Held for the life of the process.
    /// </summary>
    private static unsafe WeightMatrix OnCacheLines(WeightMatrix w)
    {
        byte* block = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(1, w.Data.Length), 64);
        w.Data.Span.CopyTo(new Span<byte>(block, w.Data.Length));
        return new WeightMatrix(w.Type, w.Rows, w.Cols, new UnmanagedMemory(block, w.Data.Length).Memory);
    }
}
