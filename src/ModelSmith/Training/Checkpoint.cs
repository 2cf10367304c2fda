using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using ModelSmith.Formats;
using ModelSmith.Training.Data;

namespace ModelSmith.Training;

/// <summary>
/// Everything a <see cref="TrainingRun"/> needs to continue exactly where it stopped, in one file: the
/// fingerprints of the model, options and data it belongs to, the step, the data loader's position, the LoRA
/// dropout stream, the trained weights (the whole model, or the adapters only), the AdamW moments, and the length
/// of the training log at that step.
/// </summary>
/// <remarks>
/// Layout (little-endian): magic "SMCK", version, the header fields (strings are length-prefixed UTF-8), the weights
/// as a count and raw floats, the AdamW state (<see cref="AdamW.SaveState"/>) up to the end, and a SHA-256 of every
/// byte before it, so that a truncated or damaged file is refused rather than half loaded. Weights and moments are
/// streamed straight from and into the training buffers (no copy of the model in memory), so a checkpoint may be
/// larger than an array. <see cref="Save"/> writes through <see cref="AtomicFile"/> (temp file, flush to disk,
/// rename): a crash at any moment leaves the previous checkpoint in place and usable.
/// </remarks>
internal sealed class Checkpoint
{
    private const uint Magic = 0x4B434D53; // "SMCK"
    private const int Version = 1;
    private const int HashBytes = 32;

    private string _path = "";
    private long _weightsOffset, _optimizerOffset;

    public required string ModelFingerprint { get; init; }

    public required string DataFingerprint { get; init; }

    /// <summary>The options that decide the training trajectory, as "key=value" lines (see <see cref="TrainingRunOptions.Describe"/>).</summary>
    public required string Options { get; init; }

    /// <summary>Optimizer steps done.</summary>
    public required long Step { get; init; }

    /// <summary>Bytes of the training log written up to and including <see cref="Step"/>.</summary>
    public required long LogLength { get; init; }

    /// <summary>Tokens processed up to <see cref="Step"/>.</summary>
    public required long Tokens { get; init; }

    /// <summary>Training time up to <see cref="Step"/>, over every earlier session.</summary>
    public required double ElapsedSeconds { get; init; }

    public required DataPosition Position { get; init; }

    /// <summary>True when the weights are LoRA adapters (then the dropout fields apply).</summary>
    public required bool IsLora { get; init; }

    public ulong DropoutSeed { get; init; }

    public long DropoutCounter { get; init; }

    /// <summary>Floats of trained weights the file holds (set by <see cref="Load"/>).</summary>
    public long WeightCount { get; private init; }

    /// <summary>Writes this header with <paramref name="weights"/> and <paramref name="optimizer"/>'s state to <paramref name="path"/>, atomically.</summary>
    public void Save(string path, ReadOnlySpan<float> weights, AdamW optimizer)
    {
        unsafe
        {
            fixed (float* p = weights)
            {
                float* pointer = p;
                int length = weights.Length;
                AtomicFile.Write(path, s => WriteTo(s, new ReadOnlySpan<float>(pointer, length), optimizer));
            }
        }
    }

    /// <summary>Writes the whole checkpoint, hash included, to <paramref name="stream"/>.</summary>
    public void WriteTo(Stream stream, ReadOnlySpan<float> weights, AdamW optimizer)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(optimizer);
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("Checkpoints are stored little-endian.");
        using var hashing = new HashingStream(stream);
        using (var w = new BinaryWriter(hashing, Encoding.UTF8, leaveOpen: true))
        {
            w.Write(Magic);
            w.Write(Version);
            w.Write(ModelFingerprint);
            w.Write(DataFingerprint);
            w.Write(Options);
            w.Write(Step);
            w.Write(LogLength);
            w.Write(Tokens);
            w.Write(ElapsedSeconds);
            w.Write(Position.Epoch);
            w.Write(Position.Index);
            w.Write(Position.EpochState);
            w.Write(IsLora);
            w.Write(DropoutSeed);
            w.Write(DropoutCounter);
            w.Write((long)weights.Length);
        }
        for (int at = 0; at < weights.Length; at += 1 << 18)
            hashing.Write(MemoryMarshal.AsBytes(weights.Slice(at, Math.Min(1 << 18, weights.Length - at))));
        optimizer.SaveState(hashing);
        stream.Write(hashing.Hash());
    }

    /// <summary>
    /// Reads and verifies the checkpoint at <paramref name="path"/> (one pass over the file for the hash) and returns
    /// its header; <see cref="ReadWeights"/> and <see cref="ReadOptimizer"/> then load the rest. Errors name the file
    /// and say what is wrong (not a checkpoint, another version, truncated or damaged).
    /// </summary>
    public static Checkpoint Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("Checkpoints are stored little-endian.");
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan);
        long length = file.Length;
        Span<byte> start = stackalloc byte[8];
        if (length < 8 + HashBytes || file.Read(start) != 8 || BinaryPrimitives.ReadUInt32LittleEndian(start) != Magic)
            throw new InvalidDataException($"{path}: not a ModelSmith training checkpoint (bad magic or too short).");
        int version = BinaryPrimitives.ReadInt32LittleEndian(start[4..]);
        if (version != Version)
            throw new InvalidDataException($"{path}: checkpoint version {version} is not supported (this build reads {Version}); start the run afresh without --resume.");

        using (var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256))
        {
            file.Position = 0;
            byte[] buffer = new byte[1 << 20];
            for (long left = length - HashBytes; left > 0;)
            {
                int read = file.Read(buffer, 0, (int)Math.Min(buffer.Length, left));
                if (read <= 0) throw new InvalidDataException($"{path}: the checkpoint ends early.");
                hash.AppendData(buffer, 0, read);
                left -= read;
            }
            Span<byte> stored = stackalloc byte[HashBytes];
            file.ReadExactly(stored);
            if (!stored.SequenceEqual(hash.GetHashAndReset()))
                throw new InvalidDataException($"{path}: the checkpoint is truncated or damaged (its SHA-256 does not match); it cannot be resumed. Start afresh without --resume.");
        }

        file.Position = 8;
        using var r = new BinaryReader(file, Encoding.UTF8, leaveOpen: true);
        try
        {
            string model = r.ReadString(), data = r.ReadString(), options = r.ReadString();
            long step = r.ReadInt64(), logLength = r.ReadInt64(), tokens = r.ReadInt64();
            double elapsed = r.ReadDouble();
            var position = new DataPosition(r.ReadInt32(), r.ReadInt64(), r.ReadUInt64());
            bool lora = r.ReadBoolean();
            ulong dropoutSeed = r.ReadUInt64();
            long dropoutCounter = r.ReadInt64();
            long count = r.ReadInt64();
            long weightsOffset = file.Position;
            if (count < 0 || count > (length - HashBytes - weightsOffset) / sizeof(float))
                throw new InvalidDataException($"{path}: the checkpoint claims {count} weights, more than the file holds.");
            return new Checkpoint
            {
                ModelFingerprint = model,
                DataFingerprint = data,
                Options = options,
                Step = step,
                LogLength = logLength,
                Tokens = tokens,
                ElapsedSeconds = elapsed,
                Position = position,
                IsLora = lora,
                DropoutSeed = dropoutSeed,
                DropoutCounter = dropoutCounter,
                WeightCount = count,
                _path = path,
                _weightsOffset = weightsOffset,
                _optimizerOffset = weightsOffset + count * sizeof(float),
            };
        }
        catch (EndOfStreamException e)
        {
            throw new InvalidDataException($"{path}: the checkpoint ends early.", e);
        }
    }

    /// <summary>Reads the stored weights into <paramref name="weights"/> (exactly <see cref="WeightCount"/> floats).</summary>
    public void ReadWeights(Span<float> weights)
    {
        if (weights.Length != WeightCount)
            throw new ArgumentException($"{_path}: the checkpoint holds {WeightCount} weights, not {weights.Length}.", nameof(weights));
        using var file = new FileStream(_path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan);
        file.Position = _weightsOffset;
        for (int at = 0; at < weights.Length; at += 1 << 18)
            file.ReadExactly(MemoryMarshal.AsBytes(weights.Slice(at, Math.Min(1 << 18, weights.Length - at))));
    }

    /// <summary>Restores <paramref name="optimizer"/>'s moments and step count from the file.</summary>
    public void ReadOptimizer(AdamW optimizer)
    {
        ArgumentNullException.ThrowIfNull(optimizer);
        using var file = new FileStream(_path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan);
        file.Position = _optimizerOffset;
        optimizer.LoadState(file);
        if (file.Position != file.Length - HashBytes)
            throw new InvalidDataException($"{_path}: the optimizer state does not end where the checkpoint's hash begins; the file is inconsistent.");
    }

    /// <summary>Passes writes through to a stream while hashing them (SHA-256).</summary>
    private sealed class HashingStream(Stream inner) : Stream
    {
        private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public byte[] Hash() => _hash.GetHashAndReset();

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            _hash.AppendData(buffer);
            inner.Write(buffer);
        }

        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing) _hash.Dispose();
            base.Dispose(disposing);
        }
    }
}
