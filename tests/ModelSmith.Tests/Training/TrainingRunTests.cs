using System.Runtime.InteropServices;
using System.Text.Json;
using ModelSmith.Formats;
using ModelSmith.Inference;
using ModelSmith.Models;
using ModelSmith.Tokenization;
using ModelSmith.Training;
using ModelSmith.Training.Data;

namespace ModelSmith.Tests.Training;

public sealed class TrainingRunTests
{
    private const int Steps = 12;

    private static TrainingRunOptions Options(bool lora) => new()
    {
        Steps = Steps,
        BatchSize = 2,
        GradientAccumulation = 2,
        LearningRate = 3e-3f,
        MinLearningRate = 3e-4f,
        WarmupSteps = 2,
        EvalInterval = 3,
        EvalBatches = 2,
        CheckpointInterval = 4,
        Seed = 11,
        Threads = 2,
        Lora = lora ? new LoraOptions { Rank = 4, Alpha = 8, Dropout = 0.2f } : null,
    };

    /// <summary>The trained values: the adapters for LoRA, else every parameter.</summary>
    private static byte[] Trained(TrainingModel model) =>
        MemoryMarshal.AsBytes(model.Lora != null ? model.Lora.Parameters.Values : model.Parameters.Values).ToArray();

    /// <summary>Each log line without its timings: step, loss, lr, grad_norm, tokens, val_loss.</summary>
    private static List<string> LogWithoutTimings(string path)
    {
        var lines = new List<string>();
        foreach (string line in File.ReadAllLines(path))
        {
            using var doc = JsonDocument.Parse(line);
            JsonElement e = doc.RootElement;
            if (e.TryGetProperty("summary", out _))
            {
                lines.Add($"summary {e.GetProperty("steps")} {e.GetProperty("final_loss")} {(e.TryGetProperty("val_loss", out JsonElement s) ? s.ToString() : "-")}");
                continue;
            }
            string val = e.TryGetProperty("val_loss", out JsonElement v) ? v.GetRawText() : "-";
            lines.Add($"{e.GetProperty("step")} {e.GetProperty("loss").GetRawText()} {e.GetProperty("lr").GetRawText()} {e.GetProperty("grad_norm").GetRawText()} {e.GetProperty("tokens")} {val}");
        }
        return lines;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Resuming_after_cancellation_gives_the_losses_log_and_weights_of_an_uninterrupted_run(bool lora)
    {
        using var f = new TrainingRunFixture();
        var full = new List<float>();
        byte[] expected;
        using (TrainingModel model = f.Model())
        {
            var run = new TrainingRun(model, f.Data, Options(lora)) { LogPath = f.PathOf("a.jsonl") };
            TrainingRunResult r = run.Run(new InlineProgress(p => full.Add(p.Loss)));
            Assert.False(r.Cancelled);
            Assert.Equal(Steps, r.Steps);
            Assert.NotNull(r.ValidationLoss);
            expected = Trained(model);
        }
        Assert.Equal(Steps, full.Count);
        if (!lora) Assert.True(full[^1] < full[0], $"the loss should fall: {full[0]} → {full[^1]}");

        var resumed = new List<float>();
        string checkpoint = f.PathOf("b.ckpt");
        using (TrainingModel model = f.Model())
        {
            using var cancel = new CancellationTokenSource();
            var run = new TrainingRun(model, f.Data, Options(lora)) { LogPath = f.PathOf("b.jsonl"), CheckpointPath = checkpoint };
            TrainingRunResult r = run.Run(new InlineProgress(p =>
            {
                resumed.Add(p.Loss);
                if (p.Step == 7) cancel.Cancel();
            }), cancel.Token);
            Assert.True(r.Cancelled);
            Assert.Equal(7, r.Steps);
            Assert.Equal(checkpoint, r.CheckpointPath);
        }
        // A crash after the checkpoint leaves log lines of steps the checkpoint does not hold; resuming drops them.
        File.AppendAllText(f.PathOf("b.jsonl"), "{\"step\":8,\"loss\":1}\n{\"step\":9,");
        using (TrainingModel model = f.Model())
        {
            var run = new TrainingRun(model, f.Data, Options(lora) with { Threads = 1 }) { LogPath = f.PathOf("b.jsonl"), CheckpointPath = checkpoint, Resume = true };
            TrainingRunResult r = run.Run(new InlineProgress(p => resumed.Add(p.Loss)));
            Assert.False(r.Cancelled);
            Assert.Equal(7, r.ResumedFrom);
            Assert.Equal(expected, Trained(model));
        }
        Assert.Equal(full, resumed);
        Assert.Equal(LogWithoutTimings(f.PathOf("a.jsonl")), LogWithoutTimings(f.PathOf("b.jsonl")));
    }

    [Fact]
    public void An_interrupted_checkpoint_write_leaves_the_previous_checkpoint_usable()
    {
        using var f = new TrainingRunFixture();
        string checkpoint = f.PathOf("run.ckpt");
        var losses = new List<float>();
        using (TrainingModel model = f.Model())
        {
            using var cancel = new CancellationTokenSource();
            var run = new TrainingRun(model, f.Data, Options(false)) { CheckpointPath = checkpoint };
            run.Run(new InlineProgress(p =>
            {
                losses.Add(p.Loss);
                if (p.Step == 5) cancel.Cancel();
            }), cancel.Token);
        }
        byte[] before = File.ReadAllBytes(checkpoint);

        // A later checkpoint whose write dies half way (a full disk, a kill): the target keeps the old bytes, no temp file is left.
        Checkpoint later = Checkpoint.Load(checkpoint);
        Assert.Equal(5, later.Step);
        var weights = new float[later.WeightCount];
        later.ReadWeights(weights);
        var optimizer = new AdamW(new ParameterLayout(f.Config), Options(false).Optimizer());
        later.ReadOptimizer(optimizer);
        Assert.Equal(5, optimizer.Step);
        var copy = new MemoryStream();
        later.WriteTo(copy, weights, optimizer);
        Assert.Equal(before, copy.ToArray());
        Assert.Throws<IOException>(() => AtomicFile.Write(checkpoint, s => later.WriteTo(new FailingStream(s, before.Length / 2), weights, optimizer)));
        Assert.Equal(before, File.ReadAllBytes(checkpoint));
        Assert.Equal(["run.ckpt"], Directory.GetFiles(f.Directory, "run.ckpt*").Select(Path.GetFileName));

        // What a kill before the rename leaves beside it (a partial temp file) does not get in the way either.
        File.WriteAllBytes(checkpoint + ".tmp-1-abc", before.AsSpan(0, before.Length / 3).ToArray());
        using (TrainingModel model = f.Model())
        {
            var run = new TrainingRun(model, f.Data, Options(false)) { CheckpointPath = checkpoint, Resume = true };
            run.Run(new InlineProgress(p => losses.Add(p.Loss)));
        }
        var full = new List<float>();
        using (TrainingModel model = f.Model())
            new TrainingRun(model, f.Data, Options(false)).Run(new InlineProgress(p => full.Add(p.Loss)));
        Assert.Equal(full, losses);

        // A checkpoint that was cut short (copied half way, say) is refused, not half loaded.
        File.WriteAllBytes(checkpoint, before.AsSpan(0, before.Length - 100).ToArray());
        var e = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(checkpoint));
        Assert.Contains("truncated or damaged", e.Message, StringComparison.Ordinal);
        Assert.Contains(checkpoint, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_checkpoint_of_another_model_other_options_or_other_data_is_refused_with_the_reason()
    {
        using var f = new TrainingRunFixture();
        string checkpoint = f.PathOf("run.ckpt");
        using (TrainingModel model = f.Model())
        {
            using var cancel = new CancellationTokenSource();
            new TrainingRun(model, f.Data, Options(false)) { CheckpointPath = checkpoint }
                .Run(new InlineProgress(p => { if (p.Step == 2) cancel.Cancel(); }), cancel.Token);
        }

        string Refusal(TrainingModel model, TrainingData data, TrainingRunOptions options)
        {
            using (model)
            {
                var run = new TrainingRun(model, data, options) { CheckpointPath = checkpoint, Resume = true };
                return Assert.Throws<CheckpointMismatchException>(() => run.Run()).Message;
            }
        }

        string otherModel = Refusal(f.Model(seed: 4), f.Data, Options(false));
        Assert.Contains("different starting model", otherModel, StringComparison.Ordinal);
        string otherOptions = Refusal(f.Model(), f.Data, Options(false) with { LearningRate = 1e-3f });
        Assert.Contains("lr: 0.003 in the checkpoint, 0.001 now", otherOptions, StringComparison.Ordinal);
        string lora = Refusal(f.Model(), f.Data, Options(true));
        Assert.Contains("method: full in the checkpoint, lora now", lora, StringComparison.Ordinal);
        TrainingData otherData = TrainingData.Load([f.DataPath], f.Tokenizer, f.DataOptions with { ValidationFraction = 0.2 });
        string data = Refusal(f.Model(), otherData, Options(false));
        Assert.Contains("different training data", data, StringComparison.Ordinal);
        Assert.Contains(checkpoint, data, StringComparison.Ordinal);

        // The same run with another thread count and checkpoint interval is the same run.
        using TrainingModel same = f.Model();
        TrainingRunResult r = new TrainingRun(same, f.Data, Options(false) with { Threads = 1, CheckpointInterval = 0 }) { CheckpointPath = checkpoint, Resume = true }.Run();
        Assert.Equal(2, r.ResumedFrom);
    }

    [Fact]
    public void Resuming_without_a_checkpoint_says_how_to_start()
    {
        using var f = new TrainingRunFixture();
        using TrainingModel model = f.Model();
        var run = new TrainingRun(model, f.Data, Options(false)) { CheckpointPath = f.PathOf("none.ckpt"), Resume = true };
        var e = Assert.Throws<FileNotFoundException>(() => run.Run());
        Assert.Contains("without --resume", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_pretrained_model_file_loads_in_the_engine_generates_and_keeps_its_vocabulary()
    {
        using var f = new TrainingRunFixture(lines: 600, vocab: 400, context: 32);
        string path = f.PathOf("base.gguf");
        using (TrainingModel model = f.Model(batch: 4))
        {
            new TrainingRun(model, f.Data, Options(false) with { BatchSize = 4, GradientAccumulation = 1 }).Run();
            Pretraining.WriteModel(model.Parameters, f.Spec, path, GgmlType.F16, "test-base");
        }

        using (GgufFile file = GgufFile.Open(path))
        {
            Assert.Equal("llama", file.GetString("general.architecture"));
            Assert.Equal("test-base", file.GetString("general.name"));
            Assert.Equal(1, file.GetInteger("general.file_type"));
            Assert.Equal("gpt2", file.GetString("tokenizer.ggml.model"));
            Assert.Equal("gpt-2", file.GetString("tokenizer.ggml.pre"));
            Assert.Equal(GgmlType.F16, file.RequireTensor("blk.0.attn_q.weight").Type);
            Assert.Equal(GgmlType.F32, file.RequireTensor("blk.0.attn_norm.weight").Type);
            Tokenizer loaded = GgufTokenizer.Load(file);
            string heldOut = TrainingRunFixture.BrownSlice("humor", 30);
            int[] ids = loaded.Encode(heldOut, addSpecial: false);
            Assert.Equal(f.Tokenizer.Encode(heldOut, addSpecial: false), ids);
            Assert.Equal(heldOut, loaded.Decode(ids));
            Assert.Equal(loaded.Eos, loaded.Bos);
            Assert.Equal("<|endoftext|>", loaded.TokenText(loaded.Eos));
            Assert.True(loaded.TryGetTokenId("<|im_end|>", out int imEnd) && loaded.GetTokenType(imEnd) == TokenType.Control);
        }

        using LanguageModel lm = LanguageModel.Load(path, threads: 2);
        Assert.Equal(f.Config with { }, lm.Config);
        var generator = new Generator(lm);
        int[] prompt = f.Tokenizer.Encode("The ship", addSpecial: false);
        GenerationResult result = generator.Generate(prompt, 10, new SamplingOptions { Temperature = 0 });
        Assert.Equal(prompt.Length + 10, result.Tokens.Length);
        foreach (int t in result.Generated) Assert.InRange(t, 0, f.Config.VocabSize - 1);
    }

    private sealed class InlineProgress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }

    /// <summary>Passes writes through until <c>limit</c> bytes, then fails as a full disk would.</summary>
    private sealed class FailingStream(Stream inner, long limit) : Stream
    {
        private long _written;

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => _written;
        public override long Position { get => _written; set => throw new NotSupportedException(); }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            if (_written + buffer.Length > limit) throw new IOException("No space left on device (simulated).");
            inner.Write(buffer);
            _written += buffer.Length;
        }

        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
