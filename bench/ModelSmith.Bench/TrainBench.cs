using System.Diagnostics;
using System.Globalization;
using System.Runtime.Intrinsics;
using System.Text.Json;
using ModelSmith.Models;
using ModelSmith.Training;
using Spectre.Console;

namespace ModelSmith.Bench;

/// <summary>
/// Training speed and memory of a Llama of about 10M parameters: full training against LoRA (all linear layers) at
/// several ranks, at each thread count. Every (method, threads) pair runs in its own child process, so that its peak
/// resident set (VmHWM) is its own: the child reports its resident set before it allocates anything (the runtime's
/// own share) and its peak after the timed steps. Step times are min / median over the repetitions after warm-up
/// steps. MFU = 6·N·tokens/s ÷ the peak FMA FLOP/s this machine measures at that thread count (the flops suite),
/// N = every parameter (embeddings included, attention's T² work not counted): the usual estimate of the
/// matrix-multiply work of a full training step (2N forward, 4N backward). A LoRA step skips the weight
/// gradients (about 2N), so its MFU is given against 4·N.
/// </summary>
internal static class TrainBench
{
    /// <summary>The benchmark model: 8 layers of width 256, 8 heads of 32, feed-forward 704, vocabulary 8192, untied output.</summary>
    public static ModelConfig Model() => new()
    {
        Architecture = ModelArchitecture.Llama,
        VocabSize = 8192,
        ContextLength = 256,
        EmbeddingLength = 256,
        BlockCount = 8,
        FeedForwardLength = 704,
        HeadCount = 8,
        KvHeadCount = 8,
        HeadDim = 32,
        RopeDims = 32,
        NormEpsilon = 1e-5f,
        TiedOutput = false,
    };

    /// <summary>What one child process measured.</summary>
    public sealed record ChildResult(
        string Method,
        int Threads,
        int Batch,
        int SeqLen,
        long Parameters,
        long Trainable,
        double[] StepSeconds,
        double[] ForwardSeconds,
        double[] BackwardSeconds,
        double[] UpdateSeconds,
        float FirstLoss,
        float LastLoss,
        long RuntimeBytes,
        long PeakBytes);

    public static void Run(Options options)
    {
        int[] threads = options.Threads;
        int reps = options.Int("reps", 5);
        int warmup = options.Int("warmup", 2);
        int batch = options.Int("batch", 4);
        int seq = options.Int("seq", 128);
        long flopSteps = options.Int("flop-steps", 100_000_000);
        string[] ranks = options.String("ranks", "8,16").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        options.ThrowOnUnused();
        ModelConfig config = Model();
        if (seq > config.ContextLength) throw new UsageException($"--seq {seq} exceeds the benchmark model's context of {config.ContextLength}.");
        var methods = new List<string> { "full" };
        foreach (string r in ranks)
        {
            if (!int.TryParse(r, NumberStyles.Integer, CultureInfo.InvariantCulture, out int rank) || rank < 1)
                throw new UsageException($"--ranks: '{r}' is not a positive integer.");
            methods.Add($"lora{rank}");
        }

        int bits = Vector512.IsHardwareAccelerated ? 512 : 256;
        var peak = new Dictionary<int, double>();
        foreach (int t in threads)
        {
            Flops.Run(t, bits, flopSteps / 10);
            double best = 0;
            for (int i = 0; i < 3; i++) best = Math.Max(best, Flops.Run(t, bits, flopSteps));
            peak[t] = best;
        }

        var results = new List<ChildResult>();
        foreach (int t in threads)
            foreach (string method in methods)
            {
                AnsiConsole.MarkupLine($"[grey]{method}, {t} thread(s): {warmup} warm-up + {reps} timed steps of {batch}×{seq} tokens...[/]");
                results.Add(RunChild(method, t, batch, seq, reps, warmup));
            }

        var table = new Table().Title($"training a {config.ParameterCount / 1e6:F1}M-parameter Llama, {batch}×{seq} tokens/step, {reps} steps after {warmup} warm-up, one process each");
        table.AddColumns("method", "thr", "trainable", "step ms min/med", "fwd/bwd/upd ms", "tok/s", "vs full", "MFU", "peak RSS", "above runtime", "loss");
        foreach (int t in threads)
        {
            ChildResult full = results.First(r => r.Threads == t && r.Method == "full");
            foreach (ChildResult r in results.Where(r => r.Threads == t))
            {
                (double min, double median) = Measure.MinMedian(r.StepSeconds);
                double tps = r.Batch * r.SeqLen / median;
                double fullMedian = Measure.MinMedian(full.StepSeconds).Median;
                double work = r.Method == "full" ? 6.0 : 4.0;
                double mfu = work * r.Parameters * tps / peak[t];
                table.AddRow(r.Method, t.ToString(CultureInfo.InvariantCulture),
                    Units(r.Trainable),
                    string.Create(CultureInfo.InvariantCulture, $"{min * 1e3:F0}/{median * 1e3:F0}"),
                    string.Create(CultureInfo.InvariantCulture, $"{Measure.MinMedian(r.ForwardSeconds).Median * 1e3:F0}/{Measure.MinMedian(r.BackwardSeconds).Median * 1e3:F0}/{Measure.MinMedian(r.UpdateSeconds).Median * 1e3:F0}"),
                    tps.ToString("F0", CultureInfo.InvariantCulture),
                    (fullMedian / median).ToString("F2", CultureInfo.InvariantCulture),
                    mfu.ToString("P1", CultureInfo.InvariantCulture),
                    Mib(r.PeakBytes),
                    Mib(r.PeakBytes - r.RuntimeBytes),
                    string.Create(CultureInfo.InvariantCulture, $"{r.FirstLoss:F2}→{r.LastLoss:F2}"));
            }
        }
        AnsiConsole.Write(table);
        foreach (int t in threads)
            AnsiConsole.MarkupLine(string.Create(CultureInfo.InvariantCulture, $"peak Vector{bits} FMA, {t} thread(s): {peak[t] / 1e9:F1} GFLOP/s"));
        AnsiConsole.MarkupLine($"[grey]MFU: 6·N·tokens/s (full) or 4·N·tokens/s (LoRA: no weight gradients) ÷ the peak FMA FLOP/s above at that thread count; N = {config.ParameterCount:N0}. " +
            "fwd/bwd/upd: medians of the step's phases. Peak RSS is the child's VmHWM; 'above runtime' subtracts its resident set before the model was allocated.[/]");
    }

    /// <summary>The hidden suite a child runs: one method at one thread count; prints its <see cref="ChildResult"/> as one JSON line.</summary>
    public static void RunStep(Options options)
    {
        string method = options.String("method", "full");
        int threads = options.Int("threads", 1);
        int batch = options.Int("batch", 4);
        int seq = options.Int("seq", 128);
        int reps = options.Int("reps", 5);
        int warmup = options.Int("warmup", 2);
        options.ThrowOnUnused();
        using var self = Process.GetCurrentProcess();
        self.Refresh();
        long runtime = self.WorkingSet64;

        ModelConfig config = Model();
        using var model = new TrainingModel(config, batch, seq, threads);
        model.Parameters.Initialize(1);
        long trainable = config.ParameterCount;
        if (method != "full")
        {
            int rank = int.Parse(method.AsSpan("lora".Length), CultureInfo.InvariantCulture);
            LoraAdapter lora = model.AttachLora(new LoraOptions { Rank = rank, Alpha = 2 * rank }, seed: 2);
            trainable = lora.Layout.Count;
        }
        var trainer = new Trainer(model, new AdamWOptions(), new LearningRateSchedule { Peak = 1e-3f, WarmupSteps = 1, TotalSteps = warmup + reps });
        var random = new Random(3);
        var tokens = new int[batch * seq];
        var targets = new int[batch * seq];
        for (int i = 0; i < tokens.Length; i++) (tokens[i], targets[i]) = (random.Next(config.VocabSize), random.Next(config.VocabSize));
        TokenBatch[] step = [new TokenBatch(tokens, targets, batch, seq)];

        float first = trainer.Step(step).Loss;
        for (int i = 1; i < warmup; i++) trainer.Step(step);
        // The timed steps run Trainer.Step's phases one by one (clear the gradients, forward, backward, AdamW
        // update at the scheduled rate) so that each phase is timed on its own.
        var seconds = new double[reps];
        var forward = new double[reps];
        var backward = new double[reps];
        var update = new double[reps];
        float last = 0;
        for (int i = 0; i < reps; i++)
        {
            long start = Stopwatch.GetTimestamp();
            if (trainer.Adapter != null) trainer.Adapter.Gradients.Clear();
            else model.Gradients.Clear();
            last = model.Forward(tokens, targets, batch, seq);
            long forwardEnd = Stopwatch.GetTimestamp();
            model.Backward(1f / model.CountedTokens);
            long backwardEnd = Stopwatch.GetTimestamp();
            float rate = trainer.Schedule.At(trainer.Optimizer.Step);
            if (trainer.Adapter != null) trainer.Optimizer.Update(trainer.Adapter.Parameters, trainer.Adapter.Gradients, rate, model.Pool);
            else trainer.Optimizer.Update(model.Parameters, model.Gradients, rate, model.Pool);
            long end = Stopwatch.GetTimestamp();
            seconds[i] = Stopwatch.GetElapsedTime(start, end).TotalSeconds;
            forward[i] = Stopwatch.GetElapsedTime(start, forwardEnd).TotalSeconds;
            backward[i] = Stopwatch.GetElapsedTime(forwardEnd, backwardEnd).TotalSeconds;
            update[i] = Stopwatch.GetElapsedTime(backwardEnd, end).TotalSeconds;
        }
        self.Refresh();
        var result = new ChildResult(method, threads, batch, seq, config.ParameterCount, trainable, seconds, forward, backward, update, first, last, runtime, self.PeakWorkingSet64);
        Console.WriteLine(JsonSerializer.Serialize(result));
    }

    private static ChildResult RunChild(string method, int threads, int batch, int seq, int reps, int warmup)
    {
        string host = Environment.ProcessPath ?? throw new InvalidOperationException("Cannot find the benchmark's own executable to start a child.");
        var start = new ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (Path.GetFileNameWithoutExtension(host) == "dotnet") start.ArgumentList.Add(typeof(TrainBench).Assembly.Location);
        foreach (string a in new[]
        {
            "train-step", "--method", method, "--threads", threads.ToString(CultureInfo.InvariantCulture),
            "--batch", batch.ToString(CultureInfo.InvariantCulture), "--seq", seq.ToString(CultureInfo.InvariantCulture),
            "--reps", reps.ToString(CultureInfo.InvariantCulture), "--warmup", warmup.ToString(CultureInfo.InvariantCulture),
        })
            start.ArgumentList.Add(a);
        using Process child = Process.Start(start) ?? throw new InvalidOperationException($"Could not start '{host}'.");
        Task<string> stderr = child.StandardError.ReadToEndAsync();
        string stdout = child.StandardOutput.ReadToEnd();
        child.WaitForExit();
        if (child.ExitCode != 0)
            throw new InvalidOperationException($"the {method} child on {threads} thread(s) exited with {child.ExitCode}: {stderr.Result.Trim()}");
        string line = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).First(l => l.StartsWith('{'));
        return JsonSerializer.Deserialize<ChildResult>(line) ?? throw new InvalidDataException($"the {method} child printed no result: {stdout}");
    }

    private static string Units(long count) => count >= 1_000_000
        ? (count / 1e6).ToString("F2", CultureInfo.InvariantCulture) + "M"
        : (count / 1e3).ToString("F0", CultureInfo.InvariantCulture) + "k";

    private static string Mib(long bytes) => (bytes / (double)(1 << 20)).ToString("F0", CultureInfo.InvariantCulture) + " MiB";
}
