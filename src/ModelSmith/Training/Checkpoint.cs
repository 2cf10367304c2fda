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
/// as a count and raw floats, the AdamW state (<see cref="AdamW.SaveState"/>), and a SHA-256 of every byte before
/// it, so that a truncated or damaged file is refused rather than half loaded. <see cref="Save"/> writes through
/// <see cref="AtomicFile"/> (temp file, flush to disk, rename): a crash at any moment leaves the previous checkpoint
/// in place and usable.
/// </remarks>
internal sealed class Checkpoint
{
    private const uint Magic = 0x4B434D53; // "SMCK"
    private const int Version = 1;
    private const int HashBytes = 32;

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

    /// <summary>True when <see cref="Weights"/> are LoRA adapters (then the dropout fields apply).</summary>
    public required bool IsLora { get; init; }

    public ulong DropoutSeed { get; init; }

    public long DropoutCounter { get; init; }

    /// <summary>The trained values: model parameters or adapter parameters, in layout order.</summary>
    public required float[] Weights { get; init; }

    /// <summary>The optimizer state as <see cref="AdamW.SaveState"/> wrote it.</summary>
    public required byte[] OptimizerState { get; init; }

    /// <summary>Writes the checkpoint to <paramref name="path"/> atomically.</summary>
    public void Save(string path) => AtomicFile.Write(path, WriteTo);

    /// <summary>Writes the whole checkpoint, hash included, to <paramref name="stream"/>.</summary>
    public void WriteTo(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var header = new MemoryStream();
        using (var w = new BinaryWriter(header, Encoding.UTF8, leaveOpen: true))
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
            w.Write((long)Weights.Length);
        }
        Append(stream, hash, header.GetBuffer().AsSpan(0, (int)header.Length));
        ReadOnlySpan<byte> weights = MemoryMarshal.AsBytes(Weights.AsSpan());
        for (int at = 0; at < weights.Length; at += 1 << 20)
            Append(stream, hash, weights.Slice(at, Math.Min(1 << 20, weights.Length - at)));
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(length, OptimizerState.Length);
        Append(stream, hash, length);
        Append(stream, hash, OptimizerState);
        stream.Write(hash.GetHashAndReset());
    }

    /// <summary>
    /// Reads and verifies the checkpoint at <paramref name="path"/>. Errors name the file and say what is wrong
    /// (not a checkpoint, another version, truncated or damaged).
    /// </summary>
    public static Checkpoint Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("Checkpoints are stored little-endian.");
        byte[] bytes = File.ReadAllBytes(path);
        if (bytes.Length < 8 + HashBytes || BinaryPrimitives.ReadUInt32LittleEndian(bytes) != Magic)
            throw new InvalidDataException($"{path}: not a ModelSmith training checkpoint (bad magic or too short).");
        int version = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(4));
        if (version != Version)
            throw new InvalidDataException($"{path}: checkpoint version {version} is not supported (this build reads {Version}); start the run afresh without --resume.");
        Span<byte> expected = stackalloc byte[HashBytes];
        SHA256.HashData(bytes.AsSpan(0, bytes.Length - HashBytes), expected);
        if (!expected.SequenceEqual(bytes.AsSpan(bytes.Length - HashBytes)))
            throw new InvalidDataException($"{path}: the checkpoint is truncated or damaged (its SHA-256 does not match); it cannot be resumed. Start afresh without --resume.");

        using var r = new BinaryReader(new MemoryStream(bytes, 8, bytes.Length - 8 - HashBytes), Encoding.UTF8);
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
            if (count < 0 || count > (r.BaseStream.Length - r.BaseStream.Position) / sizeof(float))
                throw new InvalidDataException($"{path}: the checkpoint claims {count} weights, more than the file holds.");
            var weights = new float[count];
            r.BaseStream.ReadExactly(MemoryMarshal.AsBytes(weights.AsSpan()));
            long stateLength = r.ReadInt64();
            if (stateLength < 0 || stateLength != r.BaseStream.Length - r.BaseStream.Position)
                throw new InvalidDataException($"{path}: the optimizer state length {stateLength} does not match the rest of the file.");
            byte[] state = r.ReadBytes((int)stateLength);
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
                Weights = weights,
                OptimizerState = state,
            };
        }
        catch (EndOfStreamException e)
        {
            throw new InvalidDataException($"{path}: the checkpoint ends early.", e);
        }
    }

    private static void Append(Stream stream, IncrementalHash hash, ReadOnlySpan<byte> bytes)
    {
        hash.AppendData(bytes);
        stream.Write(bytes);
    }
}
