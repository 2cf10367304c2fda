using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using ModelSmith.Training.Data;

namespace ModelSmith.Training;

/// <summary>Where a <see cref="TrainingRun"/> is, after a step.</summary>
/// <param name="Step">Steps done (1-based number of the step just finished).</param>
/// <param name="TotalSteps">Steps in the run.</param>
/// <param name="Loss">Mean training loss of the step.</param>
/// <param name="LearningRate">Rate the step used.</param>
/// <param name="GradientNorm">Global gradient norm before clipping.</param>
/// <param name="TokensPerSecond">Training tokens processed per second since this session started (validation time excluded).</param>
/// <param name="Elapsed">Training time over every session of the run.</param>
/// <param name="Remaining">Estimated time to the last step.</param>
/// <param name="ValidationLoss">Validation loss when this step measured it, else null.</param>
public readonly record struct TrainingProgress(long Step, int TotalSteps, float Loss, float LearningRate, double GradientNorm,
    double TokensPerSecond, TimeSpan Elapsed, TimeSpan Remaining, float? ValidationLoss);

/// <summary>What a <see cref="TrainingRun"/> did.</summary>
/// <param name="Steps">Steps done (all of them unless <see cref="Cancelled"/>).</param>
/// <param name="ResumedFrom">The checkpoint's step when the run was resumed, else null.</param>
/// <param name="FinalLoss">Training loss of the last step done (NaN when none was).</param>
/// <param name="ValidationLoss">Last validation loss measured, or null (no validation rows, or cancelled before one).</param>
/// <param name="Tokens">Tokens processed over the whole run (every session).</param>
/// <param name="TokensPerSecond">Training tokens processed per second in this session (validation time excluded).</param>
/// <param name="Elapsed">Training time over every session.</param>
/// <param name="PeakMemoryBytes">Peak resident memory of the process.</param>
/// <param name="Cancelled">True when cancellation stopped the run (a checkpoint was written when a path was set).</param>
/// <param name="CheckpointPath">The checkpoint on disk for this run (the last written, or the one resumed from), or null.</param>
public sealed record TrainingRunResult(long Steps, long? ResumedFrom, float FinalLoss, float? ValidationLoss, long Tokens,
    double TokensPerSecond, TimeSpan Elapsed, long PeakMemoryBytes, bool Cancelled, string? CheckpointPath);

/// <summary>
/// One training loop for pretraining and fine-tuning: micro-batches from the data's shuffling loader, AdamW with
/// warmup and cosine decay and gradient clipping (<see cref="Trainer"/>), the validation loss every few steps, a
/// JSONL log, checkpoints every few steps and on cancellation, and exact resumption.
/// </summary>
/// <remarks>
/// <para><b>Resumption.</b> The trajectory depends only on the starting parameters, the options of
/// <see cref="TrainingRunOptions.Describe"/>, the packed data, and (through its state) the loader, the LoRA dropout
/// stream and AdamW's moments. A checkpoint holds the state and fingerprints of the rest; resuming restores the state
/// and refuses a checkpoint whose fingerprints differ, so a resumed run computes the same losses and weights, bit for
/// bit, as one that was never stopped. Evaluation does not touch the state (no dropout, its own in-order loader).</para>
/// <para><b>Log.</b> One JSON object per step (<c>step, loss, lr, grad_norm, tokens</c> (the step's tokens that count
/// towards the loss)<c>, tokens_per_s, elapsed</c>, and <c>val_loss</c> on evaluation steps), then a summary object
/// (<c>"summary": true</c>, with <c>peak_memory_bytes</c>). Resuming cuts the log back to
/// its length at the checkpoint, so it ends up as an uninterrupted run's (timings aside).</para>
/// </remarks>
public sealed class TrainingRun
{
    private readonly TrainingModel _model;
    private readonly TrainingData _data;
    private readonly string _modelFingerprint;
    private readonly string _dataFingerprint;
    private bool _ran;

    /// <summary>
    /// A run of <paramref name="model"/> (with its starting parameters already set: initialised or loaded) on
    /// <paramref name="data"/>. With <see cref="TrainingRunOptions.Lora"/>, LoRA adapters are attached now.
    /// The model's batch must hold <see cref="TrainingRunOptions.BatchSize"/> rows of the data's context length.
    /// </summary>
    public TrainingRun(TrainingModel model, TrainingData data, TrainingRunOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(options);
        string? problem = options.Validate();
        if (problem != null) throw new ArgumentException(problem, nameof(options));
        int context = data.Options.ContextLength;
        if (model.MaxBatch < options.BatchSize || model.MaxSeqLen < context)
            throw new ArgumentException($"the model was built for batches of {model.MaxBatch} × {model.MaxSeqLen} tokens; the run needs {options.BatchSize} × {context}.", nameof(model));
        if (data.Train.RowCount == 0)
            throw new ArgumentException($"the training data packs into no row of {context + 1} tokens; add data or shorten the context.", nameof(data));
        if (model.Lora != null)
            throw new ArgumentException("the model already has LoRA adapters; pass the base model and set the run's Lora options.", nameof(model));
        _model = model;
        _data = data;
        Options = options;
        _modelFingerprint = ModelFingerprint(model);
        _dataFingerprint = DataFingerprint(data);
        if (options.Lora != null) model.AttachLora(options.Lora, options.Seed);
        Trainer = new Trainer(model, options.Optimizer(), options.Schedule());
    }

    public TrainingRunOptions Options { get; }

    public Trainer Trainer { get; }

    /// <summary>The adapters being trained (LoRA runs), else null.</summary>
    public LoraAdapter? Adapter => _model.Lora;

    /// <summary>Where checkpoints go (null: none are written, and cancellation just stops).</summary>
    public string? CheckpointPath { get; init; }

    /// <summary>The JSONL log (null: no log).</summary>
    public string? LogPath { get; init; }

    /// <summary>Continue from the checkpoint at <see cref="CheckpointPath"/>, which must exist and belong to this run.</summary>
    public bool Resume { get; init; }

    /// <summary>
    /// Runs the remaining steps. <paramref name="progress"/> hears of every step, on this thread. When
    /// <paramref name="cancellationToken"/> is cancelled, the run stops after the current step, writes a checkpoint
    /// (when <see cref="CheckpointPath"/> is set) and returns with <see cref="TrainingRunResult.Cancelled"/>. A run
    /// runs once; to continue a cancelled one, make a new run with <see cref="Resume"/>.
    /// </summary>
    public TrainingRunResult Run(IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        if (_ran) throw new InvalidOperationException("This run has already run; create a new TrainingRun (with Resume to continue from its checkpoint).");
        _ran = true;
        Checkpoint? resumed = null;
        if (Resume)
        {
            if (CheckpointPath is null) throw new InvalidOperationException("Resume needs a CheckpointPath.");
            if (!File.Exists(CheckpointPath))
                throw new FileNotFoundException($"there is no checkpoint at '{CheckpointPath}' to resume from; run without --resume to start afresh.", CheckpointPath);
            resumed = Checkpoint.Load(CheckpointPath);
            Restore(resumed);
        }

        int width = _data.Options.ContextLength + 1, b = Options.BatchSize;
        DataLoader loader = _data.CreateTrainLoader(b, resumed?.Position);
        var rows = new int[b * width];
        var rowMask = new bool[b * width];
        var micro = new TokenBatch[Options.GradientAccumulation];
        for (int i = 0; i < micro.Length; i++)
            micro[i] = new TokenBatch(new int[b * (width - 1)], new int[b * (width - 1)], b, width - 1, new bool[b * (width - 1)]);

        using FileStream? log = OpenLog(resumed);
        long step = resumed?.Step ?? 0;
        long tokens = resumed?.Tokens ?? 0;
        double before = resumed?.ElapsedSeconds ?? 0;
        long sessionTokens = 0;
        long sessionStart = step;
        double evalSeconds = 0;
        float loss = float.NaN;
        float? validation = null;
        long saved = resumed?.Step ?? -1; // step of the checkpoint on disk for this run, −1 when none
        var clock = Stopwatch.StartNew();
        var line = new ArrayBufferWriterStream();
        using var json = new Utf8JsonWriter(line);

        while (step < Options.Steps && !cancellationToken.IsCancellationRequested)
        {
            foreach (TokenBatch m in micro)
            {
                loader.NextBatch(rows, rowMask);
                Fill(rows, rowMask, m);
            }
            TrainingStepResult r = Trainer.Step(micro);
            step = r.Step;
            loss = r.Loss;
            long processed = (long)micro.Length * b * (width - 1);
            tokens += processed;
            sessionTokens += processed;

            float? measured = null;
            if ((Options.EvalInterval > 0 && step % Options.EvalInterval == 0) || step == Options.Steps)
            {
                double evalStart = clock.Elapsed.TotalSeconds;
                measured = validation = ValidationLoss();
                evalSeconds += clock.Elapsed.TotalSeconds - evalStart;
            }

            double seconds = clock.Elapsed.TotalSeconds;
            double rate = sessionTokens / Math.Max(seconds - evalSeconds, 1e-9);
            double perStep = seconds / Math.Max(1, step - sessionStart);
            var elapsed = TimeSpan.FromSeconds(before + seconds);
            if (log != null)
            {
                line.Clear();
                json.Reset(line);
                json.WriteStartObject();
                json.WriteNumber("step", step);
                json.WriteNumber("loss", r.Loss);
                json.WriteNumber("lr", r.LearningRate);
                json.WriteNumber("grad_norm", r.GradientNorm);
                json.WriteNumber("tokens", r.Tokens);
                if (measured is float v) json.WriteNumber("val_loss", v);
                json.WriteNumber("tokens_per_s", Math.Round(rate, 1));
                json.WriteNumber("elapsed", Math.Round(elapsed.TotalSeconds, 3));
                json.WriteEndObject();
                json.Flush();
                line.WriteByte((byte)'\n');
                log.Write(line.Written);
                log.Flush();
            }
            progress?.Report(new TrainingProgress(step, Options.Steps, r.Loss, r.LearningRate, r.GradientNorm, rate, elapsed,
                TimeSpan.FromSeconds(perStep * (Options.Steps - step)), measured));

            bool stopping = cancellationToken.IsCancellationRequested;
            if (CheckpointPath != null && step < Options.Steps
                && (stopping || (Options.CheckpointInterval > 0 && step % Options.CheckpointInterval == 0)))
            {
                log?.Flush(flushToDisk: true);
                SaveCheckpoint(step, log?.Length ?? 0, tokens, before + clock.Elapsed.TotalSeconds, loader.Position);
                saved = step;
            }
        }

        // Cancelled between the check after a step and the loop's test: the last step still gets its checkpoint.
        bool cancelled = step < Options.Steps;
        if (cancelled && CheckpointPath != null && saved != step && step > 0)
        {
            log?.Flush(flushToDisk: true);
            SaveCheckpoint(step, log?.Length ?? 0, tokens, before + clock.Elapsed.TotalSeconds, loader.Position);
            saved = step;
        }
        string? written = CheckpointPath != null && saved >= 0 ? CheckpointPath : null;
        double total = clock.Elapsed.TotalSeconds;
        long peak = PeakMemory();
        var result = new TrainingRunResult(step, resumed?.Step, loss, validation, tokens, sessionTokens / Math.Max(total - evalSeconds, 1e-9),
            TimeSpan.FromSeconds(before + total), peak, cancelled, written);
        if (log != null && !cancelled)
        {
            line.Clear();
            json.Reset(line);
            json.WriteStartObject();
            json.WriteBoolean("summary", true);
            json.WriteNumber("steps", result.Steps);
            json.WriteNumber("final_loss", result.FinalLoss);
            if (result.ValidationLoss is float v) json.WriteNumber("val_loss", v);
            json.WriteNumber("tokens", result.Tokens);
            json.WriteNumber("tokens_per_s", Math.Round(result.TokensPerSecond, 1));
            json.WriteNumber("elapsed", Math.Round(result.Elapsed.TotalSeconds, 3));
            json.WriteNumber("peak_memory_bytes", result.PeakMemoryBytes);
            json.WriteEndObject();
            json.Flush();
            line.WriteByte((byte)'\n');
            log.Write(line.Written);
            log.Flush(flushToDisk: true);
        }
        return result;
    }

    /// <summary>
    /// Mean loss over the first <see cref="TrainingRunOptions.EvalBatches"/> batches of the validation rows, in order
    /// (at most one pass), without dropout; null when there are no validation rows. Leaves the training state alone.
    /// </summary>
    public float? ValidationLoss()
    {
        PackedDataset rows = _data.Validation;
        if (rows.RowCount == 0) return null;
        int b = Math.Min(Options.BatchSize, rows.RowCount), width = rows.ContextLength + 1;
        int batches = Math.Min(Options.EvalBatches, (rows.RowCount + b - 1) / b);
        var loader = new DataLoader(rows, b, _data.Options.Seed, shuffle: false);
        var tokens = new int[b * width];
        var mask = new bool[b * width];
        var batch = new TokenBatch(new int[b * (width - 1)], new int[b * (width - 1)], b, width - 1, new bool[b * (width - 1)]);
        double sum = 0;
        long counted = 0;
        bool training = _model.Training;
        _model.Training = false;
        try
        {
            for (int i = 0; i < batches; i++)
            {
                loader.NextBatch(tokens, mask);
                Fill(tokens, mask, batch);
                _model.Forward(batch.Tokens, batch.Targets, batch.Batch, batch.SeqLen, batch.Mask);
                sum += _model.LossSum;
                counted += _model.CountedTokens;
            }
        }
        finally
        {
            _model.Training = training;
        }
        return counted == 0 ? null : (float)(sum / counted);
    }

    /// <summary>The SHA-256 of a model's configuration and parameter values (its starting point).</summary>
    internal static string ModelFingerprint(TrainingModel model)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        ModelSmith.Models.ModelConfig c = model.Config;
        hash.AppendData(Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture,
            $"{c.Architecture} {c.VocabSize} {c.ContextLength} {c.EmbeddingLength} {c.BlockCount} {c.FeedForwardLength} {c.HeadCount} {c.KvHeadCount} {c.HeadDim} {c.NormEpsilon:R} {c.RopeFreqBase:R} {c.RopeDims} {c.TiedOutput}\n")));
        hash.AppendData(MemoryMarshal.AsBytes(model.Parameters.Values));
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>The SHA-256 of the data files' fingerprint, the data options and every packed token and mask entry.</summary>
    internal static string DataFingerprint(TrainingData data)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        TrainingDataOptions o = data.Options;
        hash.AppendData(Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture,
            $"{data.Fingerprint}\n{o.Format}\n{o.TextSplit}\n{o.SkipBadRecords}\n{o.CompletionOnly}\n{o.ChatTemplate.Name}\n{o.ChatTemplate.Source}\n{o.AlpacaAsChat}\n{o.ValidationFraction:R}\n{o.Seed}\n{o.ContextLength}\n")));
        foreach (PackedDataset set in new[] { data.Train, data.Validation })
        {
            hash.AppendData(BitConverter.GetBytes(set.RowCount));
            for (int r = 0; r < set.RowCount; r++)
            {
                hash.AppendData(MemoryMarshal.AsBytes(set.RowTokens(r)));
                hash.AppendData(MemoryMarshal.AsBytes(set.RowMask(r)));
            }
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    private static long PeakMemory()
    {
        using var process = Process.GetCurrentProcess();
        return process.PeakWorkingSet64;
    }

    /// <summary>Copies a loader batch (B, T + 1) into a micro-batch's tokens, targets and mask (B, T).</summary>
    private static void Fill(ReadOnlySpan<int> rows, ReadOnlySpan<bool> rowMask, TokenBatch batch)
    {
        int t = batch.SeqLen, width = t + 1;
        for (int b = 0; b < batch.Batch; b++)
        {
            rows.Slice(b * width, t).CopyTo(batch.Tokens.AsSpan(b * t, t));
            rows.Slice(b * width + 1, t).CopyTo(batch.Targets.AsSpan(b * t, t));
            rowMask.Slice(b * width + 1, t).CopyTo(batch.Mask.AsSpan(b * t, t));
        }
    }

    private FileStream? OpenLog(Checkpoint? resumed)
    {
        if (LogPath is null) return null;
        string? directory = Path.GetDirectoryName(Path.GetFullPath(LogPath));
        if (!string.IsNullOrEmpty(directory)) Directory.CreateDirectory(directory);
        if (resumed is null) return new FileStream(LogPath, FileMode.Create, FileAccess.Write, FileShare.Read);
        var log = new FileStream(LogPath, FileMode.OpenOrCreate, FileAccess.Write, FileShare.Read);
        if (log.Length < resumed.LogLength)
        {
            long length = log.Length;
            log.Dispose();
            throw new InvalidDataException($"the training log '{LogPath}' has {length} bytes but the checkpoint was written when it had {resumed.LogLength}; restore the log or give a new --log path.");
        }
        log.SetLength(resumed.LogLength);
        log.Seek(0, SeekOrigin.End);
        return log;
    }

    /// <summary>Writes the run's state after <paramref name="step"/> to <see cref="CheckpointPath"/>, atomically.</summary>
    private void SaveCheckpoint(long step, long logLength, long tokens, double seconds, DataPosition position)
    {
        LoraAdapter? lora = _model.Lora;
        var header = new Checkpoint
        {
            ModelFingerprint = _modelFingerprint,
            DataFingerprint = _dataFingerprint,
            Options = Options.Describe(),
            Step = step,
            LogLength = logLength,
            Tokens = tokens,
            ElapsedSeconds = seconds,
            Position = position,
            IsLora = lora != null,
            DropoutSeed = lora?.DropoutSeed ?? 0,
            DropoutCounter = lora?.DropoutCounter ?? 0,
        };
        header.Save(CheckpointPath!, lora != null ? lora.Parameters.Values : _model.Parameters.Values, Trainer.Optimizer);
    }

    private void Restore(Checkpoint c)
    {
        string path = CheckpointPath!;
        if (c.ModelFingerprint != _modelFingerprint)
            throw new CheckpointMismatchException($"checkpoint '{path}' was written for a different starting model (fingerprint {Short(c.ModelFingerprint)}, this run starts from {Short(_modelFingerprint)}): another base model, size, seed or tokenizer. Resume with the same model and settings as the interrupted run, or start afresh without --resume.");
        string options = Options.Describe();
        if (c.Options != options)
            throw new CheckpointMismatchException($"checkpoint '{path}' was written with other training options ({Differences(c.Options, options)}). Resume with the interrupted run's options, or start afresh without --resume.");
        if (c.DataFingerprint != _dataFingerprint)
            throw new CheckpointMismatchException($"checkpoint '{path}' was written for different training data (fingerprint {Short(c.DataFingerprint)}, this data is {Short(_dataFingerprint)}): other files, contents, tokenizer or data options. Resume with the same data, or start afresh without --resume.");
        LoraAdapter? lora = _model.Lora;
        Span<float> weights = lora != null ? lora.Parameters.Values : _model.Parameters.Values;
        if (c.IsLora != (lora != null) || c.WeightCount != weights.Length)
            throw new CheckpointMismatchException($"checkpoint '{path}' holds {c.WeightCount} {(c.IsLora ? "adapter" : "model")} weights; this run trains {weights.Length} {(lora != null ? "adapter" : "model")} weights.");
        if (c.Step > Options.Steps)
            throw new CheckpointMismatchException($"checkpoint '{path}' is at step {c.Step}, past this run's {Options.Steps} steps.");
        c.ReadWeights(weights);
        c.ReadOptimizer(Trainer.Optimizer);
        if (Trainer.Optimizer.Step != c.Step)
            throw new InvalidDataException($"{path}: the optimizer state is at step {Trainer.Optimizer.Step} but the checkpoint at step {c.Step}; the file is inconsistent.");
        if (lora != null)
        {
            lora.DropoutSeed = c.DropoutSeed;
            lora.DropoutCounter = c.DropoutCounter;
        }
    }

    private static string Short(string fingerprint) => fingerprint.Length > 12 ? fingerprint[..12] : fingerprint;

    /// <summary>"key: checkpoint → now" for each option that differs.</summary>
    private static string Differences(string stored, string current)
    {
        static Dictionary<string, string> Parse(string text)
        {
            var map = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (string l in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                int eq = l.IndexOf('=', StringComparison.Ordinal);
                if (eq > 0) map[l[..eq]] = l[(eq + 1)..];
            }
            return map;
        }
        Dictionary<string, string> a = Parse(stored), b = Parse(current);
        var diffs = new List<string>();
        foreach (string key in a.Keys.Union(b.Keys))
        {
            string? x = a.GetValueOrDefault(key), y = b.GetValueOrDefault(key);
            if (x != y) diffs.Add($"{key}: {x ?? "(none)"} in the checkpoint, {y ?? "(none)"} now");
        }
        return diffs.Count == 0 ? "unreadable option list" : string.Join("; ", diffs);
    }

    /// <summary>A growable byte buffer to build one log line without per-step stream allocations.</summary>
    private sealed class ArrayBufferWriterStream : MemoryStream
    {
        public ReadOnlySpan<byte> Written => GetBuffer().AsSpan(0, (int)Length);

        public void Clear() => SetLength(0);
    }
}

/// <summary>A checkpoint that belongs to another model, data set or set of options than the run asked to resume.</summary>
public sealed class CheckpointMismatchException : Exception
{
    public CheckpointMismatchException()
    {
    }

    public CheckpointMismatchException(string message) : base(message)
    {
    }

    public CheckpointMismatchException(string message, Exception innerException) : base(message, innerException)
    {
    }
}
