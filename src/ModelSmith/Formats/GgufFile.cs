using System.Buffers.Binary;
using System.Text;

namespace ModelSmith.Formats;

/// <summary>
/// A GGUF file opened for reading: the header and metadata are parsed eagerly and checked against the
/// file's real size; tensor data stays in a read-only memory map and is touched only when asked for.
/// Versions 2 and 3 (little-endian) are read. Every count, length and offset in the header is checked
/// before it is used, so a hostile or truncated file gets a <see cref="ModelFormatException"/> that names
/// the byte offset, never an oversized allocation or a read past the end.
/// </summary>
public sealed unsafe class GgufFile : IDisposable
{
    /// <summary>"GGUF" read as a little-endian uint32.</summary>
    public const uint Magic = 0x46554747;

    /// <summary>Alignment of tensor data when the file does not set general.alignment.</summary>
    public const int DefaultAlignment = 32;

    /// <summary>ggml's GGML_MAX_DIMS.</summary>
    public const int MaxDimensions = 4;

    /// <summary>Longest tensor name ggml accepts, in UTF-8 bytes (GGML_MAX_NAME less the terminating NUL).</summary>
    public const int MaxTensorNameBytes = 63;

    /// <summary>Largest general.alignment accepted (ggml itself uses 32; anything far above is a corrupt header).</summary>
    public const int MaxAlignment = 1 << 20;

    private const int MaxArrayNesting = 8;

    private readonly MappedFile _file;
    private readonly byte* _base;
    private readonly Dictionary<string, GgufValue> _metadata;
    private readonly Dictionary<string, GgufTensorInfo> _tensorsByName;

    private GgufFile(MappedFile file)
    {
        _file = file;
        Path = file.Path;
        _base = file.Pointer;
        Length = file.Length;
        _metadata = new Dictionary<string, GgufValue>(StringComparer.Ordinal);
        _tensorsByName = new Dictionary<string, GgufTensorInfo>(StringComparer.Ordinal);
        MetadataKeys = [];
        Tensors = [];
    }

    /// <summary>The file this was read from.</summary>
    public string Path { get; }

    /// <summary>File size in bytes.</summary>
    public long Length { get; }

    /// <summary>GGUF version (2 or 3).</summary>
    public uint Version { get; private set; }

    /// <summary>Alignment of tensor data (general.alignment, default 32).</summary>
    public int Alignment { get; private set; } = DefaultAlignment;

    /// <summary>Absolute offset where the tensor data section starts.</summary>
    public long DataOffset { get; private set; }

    /// <summary>Metadata keys in file order.</summary>
    public IReadOnlyList<string> MetadataKeys { get; private set; }

    /// <summary>Metadata by key.</summary>
    public IReadOnlyDictionary<string, GgufValue> Metadata => _metadata;

    /// <summary>Tensor entries in file order.</summary>
    public IReadOnlyList<GgufTensorInfo> Tensors { get; private set; }

    /// <summary>Opens and validates <paramref name="path"/>. Throws <see cref="ModelFormatException"/> on any defect.</summary>
    public static GgufFile Open(string path)
    {
        MappedFile mapped = MappedFile.Open(path, 24, "GGUF");
        try
        {
            var file = new GgufFile(mapped);
            file.Parse();
            return file;
        }
        catch
        {
            mapped.Dispose();
            throw;
        }
    }

    /// <summary>True when the metadata holds <paramref name="key"/>.</summary>
    public bool HasKey(string key) => _metadata.ContainsKey(key);

    /// <summary>The value for <paramref name="key"/>, or null.</summary>
    public GgufValue? Get(string key) => _metadata.GetValueOrDefault(key);

    /// <summary>The value for a key that must be present.</summary>
    public GgufValue Require(string key) => _metadata.TryGetValue(key, out GgufValue? v)
        ? v
        : throw new ModelFormatException(Path, -1, $"metadata key '{key}' is missing; the file was not written for this architecture or is incomplete.");

    public string GetString(string key) => TypedOrThrow(key, v => v.AsString());

    public string? GetStringOrNull(string key) => _metadata.TryGetValue(key, out GgufValue? v) ? TypedOrThrow(key, _ => v.AsString()) : null;

    public long GetInteger(string key) => TypedOrThrow(key, v => v.AsInt64());

    public long GetInteger(string key, long fallback) => _metadata.ContainsKey(key) ? GetInteger(key) : fallback;

    public double GetFloat(string key) => TypedOrThrow(key, v => v.AsDouble());

    public double GetFloat(string key, double fallback) => _metadata.ContainsKey(key) ? GetFloat(key) : fallback;

    public bool GetBool(string key, bool fallback) => _metadata.ContainsKey(key) ? TypedOrThrow(key, v => v.AsBool()) : fallback;

    /// <summary>The tensor called <paramref name="name"/>, or null.</summary>
    public GgufTensorInfo? FindTensor(string name) => _tensorsByName.GetValueOrDefault(name);

    /// <summary>The tensor called <paramref name="name"/>, which must exist.</summary>
    public GgufTensorInfo RequireTensor(string name) => _tensorsByName.TryGetValue(name, out GgufTensorInfo? t)
        ? t
        : throw new ModelFormatException(Path, -1, $"tensor '{name}' is missing.");

    /// <summary>
    /// The tensor's bytes, straight from the memory map (no copy). Valid until this file is disposed.
    /// </summary>
    public ReadOnlyMemory<byte> GetTensorData(GgufTensorInfo tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        ObjectDisposedException.ThrowIf(_file.IsDisposed, this);
        if (!_tensorsByName.TryGetValue(tensor.Name, out GgufTensorInfo? own) || !ReferenceEquals(own, tensor))
            throw new ArgumentException($"Tensor '{tensor.Name}' does not belong to {Path}.", nameof(tensor));
        long size = tensor.ByteSize;
        if (size > int.MaxValue)
            throw new ModelFormatException(Path, DataOffset + tensor.Offset, $"tensor '{tensor.Name}' is {size} bytes; tensors over 2 GiB are not supported.");
        return _file.Memory(DataOffset + tensor.Offset, (int)size);
    }

    /// <summary>The raw bytes of the whole file (for hashing and byte comparisons).</summary>
    public ReadOnlySpan<byte> GetFileSpan(long offset, int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(offset, Length - length);
        return _file.Span(offset, length);
    }

    /// <summary>Unmaps the file; tensor memory handed out before must not be used after this.</summary>
    public void Dispose() => _file.Dispose();

    private T TypedOrThrow<T>(string key, Func<GgufValue, T> convert)
    {
        GgufValue v = Require(key);
        try
        {
            return convert(v);
        }
        catch (InvalidCastException e)
        {
            throw new ModelFormatException(Path, -1, $"metadata key '{key}' holds {v.Type}, which is not the type expected here ({e.Message}).", e);
        }
    }

    private void Parse()
    {
        var r = new Reader(_base, Length, Path);
        uint magic = r.UInt32("magic");
        if (magic != Magic)
            throw new ModelFormatException(Path, 0, $"magic is 0x{magic:X8}, expected 0x{Magic:X8} (\"GGUF\"); this is not a GGUF file.");
        long versionAt = r.Position;
        Version = r.UInt32("version");
        if (Version == 1)
            throw new ModelFormatException(Path, versionAt, "GGUF version 1 is not supported; rewrite the file with a current llama.cpp (gguf v3).");
        if (Version is not (2 or 3))
        {
            string hint = BinaryPrimitives.ReverseEndianness(Version) is 2 or 3
                ? "the file is big-endian, which is not supported here"
                : "expected 2 or 3";
            throw new ModelFormatException(Path, versionAt, $"GGUF version {Version}: {hint}.");
        }

        long tensorCountAt = r.Position;
        ulong tensorCount = r.UInt64("tensor count");
        long kvCountAt = r.Position;
        ulong kvCount = r.UInt64("metadata count");

        // Each metadata entry takes at least 8 (key length) + 4 (type) + 1 bytes, each tensor entry at least
        // 8 (name length) + 4 (dims) + 8 (one dim) + 4 (type) + 8 (offset): counts beyond that are lies.
        if (kvCount > (ulong)(r.Remaining / 13))
            throw new ModelFormatException(Path, kvCountAt, $"header claims {kvCount} metadata entries but only {r.Remaining} bytes follow; the file is truncated or its header is corrupt.");
        if (tensorCount > (ulong)(r.Remaining / 32))
            throw new ModelFormatException(Path, tensorCountAt, $"header claims {tensorCount} tensors but only {r.Remaining} bytes follow; the file is truncated or its header is corrupt.");

        // The counts are bounded by the file size above, but a multi-gigabyte file could still claim
        // millions: lists start small and grow with what is actually read.
        var keys = new List<string>((int)Math.Min(kvCount, 1024));
        for (ulong i = 0; i < kvCount; i++)
        {
            long keyAt = r.Position;
            string key = r.String($"key of metadata entry {i}");
            if (key.Length == 0)
                throw new ModelFormatException(Path, keyAt, $"metadata entry {i} has an empty key.");
            long typeAt = r.Position;
            uint type = r.UInt32($"type of '{key}'");
            GgufValue value = ReadValue(ref r, type, typeAt, key, 0);
            if (!_metadata.TryAdd(key, value))
                throw new ModelFormatException(Path, keyAt, $"metadata key '{key}' appears twice.");
            keys.Add(key);
            if (key == "general.alignment") Alignment = CheckAlignment(value, typeAt);
        }
        MetadataKeys = keys;

        var tensors = new List<GgufTensorInfo>((int)Math.Min(tensorCount, 1024));
        var tensorAt = new List<long>(tensors.Capacity);
        for (ulong i = 0; i < tensorCount; i++)
        {
            long infoAt = r.Position;
            string name = r.String($"name of tensor {i}");
            if (Encoding.UTF8.GetByteCount(name) > MaxTensorNameBytes)
                throw new ModelFormatException(Path, infoAt, $"tensor name '{name}' is longer than the {MaxTensorNameBytes} bytes ggml allows.");
            long dimsAt = r.Position;
            uint nDims = r.UInt32($"dimension count of '{name}'");
            if (nDims is 0 or > MaxDimensions)
                throw new ModelFormatException(Path, dimsAt, $"tensor '{name}' claims {nDims} dimensions; ggml supports 1 to {MaxDimensions}.");
            var shape = new long[nDims];
            long elements = 1;
            for (int d = 0; d < nDims; d++)
            {
                long dimAt = r.Position;
                ulong dim = r.UInt64($"dimension {d} of '{name}'");
                if (dim > long.MaxValue || (dim != 0 && elements > long.MaxValue / (long)dim))
                    throw new ModelFormatException(Path, dimAt, $"tensor '{name}' dimension {d} is {dim}; the element count overflows.");
                shape[d] = (long)dim;
                elements *= (long)dim;
            }
            long typeAt = r.Position;
            uint typeId = r.UInt32($"type of '{name}'");
            if (!GgmlTypeInfo.IsKnown(typeId))
                throw new ModelFormatException(Path, typeAt, $"tensor '{name}' has type id {typeId}, which is not a ggml type this reader knows (0-42 minus retired ids).");
            var type = (GgmlType)typeId;
            int block = GgmlTypeInfo.BlockSize(type);
            if (shape[0] % block != 0)
                throw new ModelFormatException(Path, dimsAt, $"tensor '{name}' has rows of {shape[0]} elements, not a multiple of the {type} block size {block}.");
            if (elements / block > long.MaxValue / GgmlTypeInfo.TypeSize(type))
                throw new ModelFormatException(Path, dimsAt, $"tensor '{name}' ({type}, {elements} elements) would take more bytes than a 64-bit size can count.");
            long offsetAt = r.Position;
            ulong offset = r.UInt64($"data offset of '{name}'");
            if (offset > long.MaxValue)
                throw new ModelFormatException(Path, offsetAt, $"tensor '{name}' data offset {offset} is beyond any possible file size.");
            if ((long)offset % Alignment != 0)
                throw new ModelFormatException(Path, offsetAt, $"tensor '{name}' data offset {offset} is not a multiple of the alignment {Alignment}.");
            var tensor = new GgufTensorInfo(name, type, shape, (long)offset);
            if (!_tensorsByName.TryAdd(name, tensor))
                throw new ModelFormatException(Path, infoAt, $"tensor name '{name}' appears twice.");
            tensors.Add(tensor);
            tensorAt.Add(offsetAt);
        }

        DataOffset = AlignUp(r.Position, Alignment);
        if (DataOffset > Length && tensorCount > 0)
            throw new ModelFormatException(Path, r.Position, $"the file ends before its tensor data section (which would start at {DataOffset}); it is truncated.");
        long dataLength = Math.Max(0, Length - DataOffset);

        // Every tensor must lie inside the data section, and no two may overlap.
        var order = new int[tensors.Count];
        for (int i = 0; i < order.Length; i++) order[i] = i;
        Array.Sort(order, (a, b) => tensors[a].Offset.CompareTo(tensors[b].Offset));
        long previousEnd = 0;
        string? previousName = null;
        long previousAt = 0;
        foreach (int i in order)
        {
            GgufTensorInfo t = tensors[i];
            long size = t.ByteSize;
            if (t.Offset > dataLength || size > dataLength - t.Offset)
                throw new ModelFormatException(Path, tensorAt[i],
                    $"tensor '{t.Name}' ({t.Type} {t.ShapeText}, {size} bytes at data offset {t.Offset}) extends past the end of the file ({dataLength} data bytes); the file is truncated or the header lies.");
            if (t.Offset < previousEnd)
                throw new ModelFormatException(Path, tensorAt[i], $"tensor '{t.Name}' at data offset {t.Offset} overlaps tensor '{previousName}', which ends at {previousEnd}.");
            previousEnd = t.Offset + size;
            previousName = t.Name;
            previousAt = tensorAt[i];
        }

        // Writers pad every tensor, the last included, to the alignment (llama.cpp and gguf-py both do, and
        // gguf_init_from_file reads the padded size): a file that stops inside that padding was cut short.
        if (tensors.Count > 0 && AlignUp(previousEnd, Alignment) > dataLength)
            throw new ModelFormatException(Path, previousAt,
                $"the file ends {dataLength - previousEnd} bytes into the {AlignUp(previousEnd, Alignment) - previousEnd} bytes of padding after tensor '{previousName}'; it is truncated.");
        Tensors = tensors;
    }

    /// <summary>general.alignment must be a UInt32 power of two no larger than <see cref="MaxAlignment"/>.</summary>
    private int CheckAlignment(GgufValue value, long typeAt)
    {
        if (value.Type != GgufValueType.UInt32)
            throw new ModelFormatException(Path, typeAt, $"general.alignment is {value.Type}; GGUF requires UInt32.");
        uint a = (uint)value.Value;
        if (a == 0 || (a & (a - 1)) != 0 || a > MaxAlignment)
            throw new ModelFormatException(Path, typeAt + 4, $"general.alignment is {a}; it must be a power of two no larger than {MaxAlignment} (1 MiB).");
        return (int)a;
    }

    private GgufValue ReadValue(ref Reader r, uint type, long typeAt, string key, int depth)
    {
        switch ((GgufValueType)type)
        {
            case GgufValueType.UInt8: return GgufValue.FromUInt8(r.Byte(key));
            case GgufValueType.Int8: return GgufValue.FromInt8((sbyte)r.Byte(key));
            case GgufValueType.UInt16: return GgufValue.FromUInt16(r.UInt16(key));
            case GgufValueType.Int16: return GgufValue.FromInt16((short)r.UInt16(key));
            case GgufValueType.UInt32: return GgufValue.FromUInt32(r.UInt32(key));
            case GgufValueType.Int32: return GgufValue.FromInt32((int)r.UInt32(key));
            case GgufValueType.UInt64: return GgufValue.FromUInt64(r.UInt64(key));
            case GgufValueType.Int64: return GgufValue.FromInt64((long)r.UInt64(key));
            case GgufValueType.Float32: return GgufValue.FromFloat32(BitConverter.UInt32BitsToSingle(r.UInt32(key)));
            case GgufValueType.Float64: return GgufValue.FromFloat64(BitConverter.UInt64BitsToDouble(r.UInt64(key)));
            case GgufValueType.Bool:
            {
                long at = r.Position;
                byte b = r.Byte(key);
                if (b > 1) throw new ModelFormatException(Path, at, $"'{key}' is a bool holding {b}; only 0 and 1 are valid.");
                return GgufValue.FromBool(b == 1);
            }
            case GgufValueType.String: return GgufValue.FromString(r.String(key));
            case GgufValueType.Array: return ReadArray(ref r, key, depth);
            default:
                throw new ModelFormatException(Path, typeAt, $"'{key}' has value type {type}, which GGUF does not define (0-12).");
        }
    }

    private GgufValue ReadArray(ref Reader r, string key, int depth)
    {
        if (depth >= MaxArrayNesting)
            throw new ModelFormatException(Path, r.Position, $"'{key}' nests arrays deeper than {MaxArrayNesting} levels.");
        long typeAt = r.Position;
        uint elementType = r.UInt32($"element type of '{key}'");
        long countAt = r.Position;
        ulong count = r.UInt64($"length of '{key}'");
        int minSize = (GgufValueType)elementType switch
        {
            GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
            GgufValueType.UInt16 or GgufValueType.Int16 => 2,
            GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
            GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 or GgufValueType.String => 8,
            GgufValueType.Array => 12,
            _ => throw new ModelFormatException(Path, typeAt, $"'{key}' is an array of type {elementType}, which GGUF does not define (0-12)."),
        };
        if (count > (ulong)(r.Remaining / minSize))
            throw new ModelFormatException(Path, countAt, $"'{key}' claims {count} elements of {(GgufValueType)elementType} but only {r.Remaining} bytes follow; the file is truncated or the header lies.");
        if (count > (ulong)(Array.MaxLength / minSize))
            throw new ModelFormatException(Path, countAt, $"'{key}' holds {count} elements of {(GgufValueType)elementType}; arrays over {Array.MaxLength / minSize} elements of that type are not supported.");
        int n = (int)count;
        switch ((GgufValueType)elementType)
        {
            case GgufValueType.UInt8: return GgufValue.FromArray(r.Bytes(n, key).ToArray());
            case GgufValueType.Int8: return GgufValue.FromArray(ReadPrimitives<sbyte>(ref r, n, key));
            case GgufValueType.UInt16: return GgufValue.FromArray(ReadPrimitives<ushort>(ref r, n, key));
            case GgufValueType.Int16: return GgufValue.FromArray(ReadPrimitives<short>(ref r, n, key));
            case GgufValueType.UInt32: return GgufValue.FromArray(ReadPrimitives<uint>(ref r, n, key));
            case GgufValueType.Int32: return GgufValue.FromArray(ReadPrimitives<int>(ref r, n, key));
            case GgufValueType.UInt64: return GgufValue.FromArray(ReadPrimitives<ulong>(ref r, n, key));
            case GgufValueType.Int64: return GgufValue.FromArray(ReadPrimitives<long>(ref r, n, key));
            case GgufValueType.Float32: return GgufValue.FromArray(ReadPrimitives<float>(ref r, n, key));
            case GgufValueType.Float64: return GgufValue.FromArray(ReadPrimitives<double>(ref r, n, key));
            case GgufValueType.Bool:
            {
                long at = r.Position;
                ReadOnlySpan<byte> raw = r.Bytes(n, key);
                var values = new bool[n];
                for (int i = 0; i < n; i++)
                {
                    if (raw[i] > 1) throw new ModelFormatException(Path, at + i, $"'{key}'[{i}] is a bool holding {raw[i]}; only 0 and 1 are valid.");
                    values[i] = raw[i] == 1;
                }
                return GgufValue.FromArray(values);
            }
            case GgufValueType.String:
            {
                var values = new string[n];
                for (int i = 0; i < n; i++) values[i] = r.String(key);
                return GgufValue.FromArray(values);
            }
            default:
            {
                var values = new GgufValue[n];
                for (int i = 0; i < n; i++) values[i] = ReadArray(ref r, key, depth + 1);
                return GgufValue.FromArray(values);
            }
        }
    }

    private static T[] ReadPrimitives<T>(ref Reader r, int count, string what) where T : unmanaged
    {
        ReadOnlySpan<byte> raw = r.Bytes(count * sizeof(T), what);
        var values = new T[count];
        raw.CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("GGUF reading needs a little-endian machine.");
        return values;
    }

    internal static long AlignUp(long value, int alignment) => (value + alignment - 1) / alignment * alignment;

    /// <summary>A bounds-checked cursor over the mapped file.</summary>
    private ref struct Reader
    {
        private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
        private readonly byte* _base;
        private readonly long _length;
        private readonly string _path;

        public Reader(byte* basePointer, long length, string path)
        {
            _base = basePointer;
            _length = length;
            _path = path;
            Position = 0;
        }

        public long Position { get; private set; }

        public readonly long Remaining => _length - Position;

        public ReadOnlySpan<byte> Bytes(int count, string what)
        {
            if (count < 0 || count > Remaining)
                throw new ModelFormatException(_path, Position, $"expected {count} bytes of {what} but the file ends after {Remaining}; it is truncated.");
            var span = new ReadOnlySpan<byte>(_base + Position, count);
            Position += count;
            return span;
        }

        public byte Byte(string what) => Bytes(1, what)[0];

        public ushort UInt16(string what) => BinaryPrimitives.ReadUInt16LittleEndian(Bytes(2, what));

        public uint UInt32(string what) => BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4, what));

        public ulong UInt64(string what) => BinaryPrimitives.ReadUInt64LittleEndian(Bytes(8, what));

        /// <summary>A u64-length-prefixed string, which must be valid UTF-8 (no replacement characters).</summary>
        public string String(string what)
        {
            long at = Position;
            ulong length = UInt64($"length of {what}");
            if (length > (ulong)Remaining)
                throw new ModelFormatException(_path, at, $"{what} claims a string of {length} bytes but only {Remaining} bytes follow; the file is truncated or the header lies.");
            if (length > int.MaxValue)
                throw new ModelFormatException(_path, at, $"{what} is a string of {length} bytes; strings over 2 GiB are not supported.");
            long textAt = Position;
            ReadOnlySpan<byte> bytes = Bytes((int)length, what);
            try
            {
                return StrictUtf8.GetString(bytes);
            }
            catch (DecoderFallbackException e)
            {
                throw new ModelFormatException(_path, textAt + Math.Max(0, e.Index), $"{what} is not valid UTF-8.", e);
            }
        }
    }
}
