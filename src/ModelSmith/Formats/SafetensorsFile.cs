using System.Buffers;
using System.Buffers.Binary;
using System.Text.Json;
using System.Text.Unicode;

namespace ModelSmith.Formats;

/// <summary>
/// A safetensors file opened for reading. Layout: a little-endian u64 header length N, N bytes of UTF-8
/// JSON, then the data buffer. The JSON maps each tensor name to {"dtype", "shape", "data_offsets":
/// [begin, end]} (offsets relative to the data buffer) and may hold "__metadata__", a map of strings.
/// <para>
/// Everything is checked as the reference implementation checks it, with every error a
/// <see cref="ModelFormatException"/> naming the byte offset: N at most 100,000,000 and inside the file, the
/// header valid UTF-8 and JSON, each tensor's dtype known and its end − begin equal to elements × dtype
/// size, and the tensors, taken in offset order, covering the data buffer exactly (no gap, no overlap, no
/// trailing bytes). The data stays in a read-only memory map; tensors are handed out without copying.
/// </para>
/// </summary>
public sealed class SafetensorsFile : IDisposable
{
    /// <summary>Largest header the reference implementation accepts.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    /// <summary>The one header key that is not a tensor.</summary>
    public const string MetadataKey = "__metadata__";

    private readonly MappedFile _file;
    private readonly Dictionary<string, string> _metadata = new(StringComparer.Ordinal);
    private readonly List<string> _metadataKeys = [];
    private readonly Dictionary<string, SafetensorsTensorInfo> _tensorsByName = new(StringComparer.Ordinal);
    private SafetensorsTensorInfo[] _tensors = [];

    private SafetensorsFile(MappedFile file) => _file = file;

    /// <summary>The file this was read from.</summary>
    public string Path => _file.Path;

    /// <summary>File size in bytes.</summary>
    public long Length => _file.Length;

    /// <summary>N, the header's length in bytes (including any space padding).</summary>
    public long HeaderLength { get; private set; }

    /// <summary>Absolute offset of the data buffer: 8 + N.</summary>
    public long DataOffset => 8 + HeaderLength;

    /// <summary>The "__metadata__" strings, empty when the header has none.</summary>
    public IReadOnlyDictionary<string, string> Metadata => _metadata;

    /// <summary>Metadata keys in header order.</summary>
    public IReadOnlyList<string> MetadataKeys => _metadataKeys;

    /// <summary>Tensors in data order (ascending offsets), as the reference implementation lists them.</summary>
    public IReadOnlyList<SafetensorsTensorInfo> Tensors => _tensors;

    /// <summary>Opens and validates <paramref name="path"/>. Throws <see cref="ModelFormatException"/> on any defect.</summary>
    public static SafetensorsFile Open(string path)
    {
        MappedFile mapped = MappedFile.Open(path, 8, "safetensors");
        try
        {
            var file = new SafetensorsFile(mapped);
            file.Parse();
            return file;
        }
        catch
        {
            mapped.Dispose();
            throw;
        }
    }

    /// <summary>The tensor called <paramref name="name"/>, or null.</summary>
    public SafetensorsTensorInfo? FindTensor(string name) => _tensorsByName.GetValueOrDefault(name);

    /// <summary>The tensor called <paramref name="name"/>, which must exist.</summary>
    public SafetensorsTensorInfo RequireTensor(string name) => _tensorsByName.TryGetValue(name, out SafetensorsTensorInfo? t)
        ? t
        : throw new ModelFormatException(Path, -1, $"tensor '{name}' is missing; the file holds {_tensors.Length} tensors, none by that name.");

    /// <summary>The tensor's bytes, straight from the memory map (no copy). Valid until this file is disposed.</summary>
    public ReadOnlyMemory<byte> GetTensorData(SafetensorsTensorInfo tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (!_tensorsByName.TryGetValue(tensor.Name, out SafetensorsTensorInfo? own) || !ReferenceEquals(own, tensor))
            throw new ArgumentException($"Tensor '{tensor.Name}' does not belong to {Path}.", nameof(tensor));
        if (tensor.ByteSize > int.MaxValue)
            throw new ModelFormatException(Path, DataOffset + tensor.Begin, $"tensor '{tensor.Name}' is {tensor.ByteSize} bytes; tensors over 2 GiB are not supported.");
        return _file.Memory(DataOffset + tensor.Begin, (int)tensor.ByteSize);
    }

    /// <summary>Unmaps the file; tensor memory handed out before must not be used after this.</summary>
    public void Dispose() => _file.Dispose();

    private void Parse()
    {
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(_file.Span(0, 8));
        if (n > MaxHeaderBytes)
            throw new ModelFormatException(Path, 0, $"header length is {n} bytes, over the format's limit of {MaxHeaderBytes}; the file is corrupt or not a safetensors file.");
        if ((long)n > Length - 8)
            throw new ModelFormatException(Path, 0, $"header length is {n} bytes but only {Length - 8} bytes follow the length field; the file is truncated or its header length is wrong.");
        HeaderLength = (long)n;
        ReadOnlySpan<byte> header = _file.Span(8, (int)n);

        int bad = FirstInvalidUtf8(header);
        if (bad >= 0)
            throw new ModelFormatException(Path, 8 + bad, "the header is not valid UTF-8; the format requires UTF-8 JSON.");

        var entries = new List<Entry>();
        ParseHeader(header, entries);
        Validate(entries);
    }

    /// <summary>What the header says about one tensor, and where it says it (offsets into the file).</summary>
    private sealed record Entry(string Name, SafetensorsDtype Dtype, long[] Shape, ulong Begin, ulong End, long NameAt, long ShapeAt, long OffsetsAt);

    private void ParseHeader(ReadOnlySpan<byte> header, List<Entry> entries)
    {
        if (header.IndexOfAnyExcept(" \t\r\n"u8) < 0)
            throw new ModelFormatException(Path, 8, "the header is empty; expected a JSON object describing the tensors.");
        var reader = new Utf8JsonReader(header, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow, AllowTrailingCommas = false });
        try
        {
            reader.Read();
            if (reader.TokenType != JsonTokenType.StartObject)
                throw At(ref reader, $"the header is {JsonText.Describe(reader.TokenType)}; expected a JSON object describing the tensors.");
            var names = new HashSet<string>(StringComparer.Ordinal);
            while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
            {
                long nameAt = 8 + reader.TokenStartIndex;
                string name = GetString(ref reader, "a header key");
                if (!names.Add(name))
                    throw new ModelFormatException(Path, nameAt, $"'{name}' appears twice in the header.");
                reader.Read();
                if (name == MetadataKey) ReadMetadata(ref reader);
                else entries.Add(ReadTensor(ref reader, name, nameAt));
            }
            // With the whole header in hand the reader itself refuses anything but whitespace after the object.
            while (reader.Read()) { }
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(Path, 8 + JsonText.OffsetOf(e, header), $"the header is not valid JSON: {JsonText.Reason(e)}", e);
        }
    }

    private void ReadMetadata(ref Utf8JsonReader reader)
    {
        if (reader.TokenType == JsonTokenType.Null) return;
        if (reader.TokenType != JsonTokenType.StartObject)
            throw At(ref reader, $"{MetadataKey} is {JsonText.Describe(reader.TokenType)}; the format requires an object of strings.");
        while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
        {
            long keyAt = 8 + reader.TokenStartIndex;
            string key = GetString(ref reader, $"a {MetadataKey} key");
            reader.Read();
            if (reader.TokenType != JsonTokenType.String)
                throw At(ref reader, $"{MetadataKey} value of '{key}' is {JsonText.Describe(reader.TokenType)}; the format allows only strings there.");
            string value = GetString(ref reader, $"the {MetadataKey} value of '{key}'");
            if (!_metadata.TryAdd(key, value))
                throw new ModelFormatException(Path, keyAt, $"{MetadataKey} key '{key}' appears twice.");
            _metadataKeys.Add(key);
        }
    }

    private Entry ReadTensor(ref Utf8JsonReader reader, string name, long nameAt)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
            throw At(ref reader, $"tensor '{name}' is described by {JsonText.Describe(reader.TokenType)}; expected an object with dtype, shape and data_offsets.");
        SafetensorsDtype? dtype = null;
        long[]? shape = null;
        ulong[]? offsets = null;
        long shapeAt = -1, offsetsAt = -1;
        while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
        {
            long fieldAt = 8 + reader.TokenStartIndex;
            if (reader.ValueTextEquals("dtype"u8))
            {
                if (dtype != null) throw Twice(fieldAt, name, "dtype");
                reader.Read();
                if (reader.TokenType != JsonTokenType.String)
                    throw At(ref reader, $"dtype of tensor '{name}' is {JsonText.Describe(reader.TokenType)}; expected a string such as \"F32\".");
                string text = GetString(ref reader, $"the dtype of tensor '{name}'");
                if (!SafetensorsDtypeInfo.TryParse(text, out SafetensorsDtype parsed))
                    throw At(ref reader, $"tensor '{name}' has dtype \"{text}\", which the safetensors format does not define (known: {SafetensorsDtypeInfo.KnownNames}).");
                dtype = parsed;
            }
            else if (reader.ValueTextEquals("shape"u8))
            {
                if (shape != null) throw Twice(fieldAt, name, "shape");
                reader.Read();
                shapeAt = 8 + reader.TokenStartIndex;
                shape = ReadIntegers(ref reader, name, "shape", -1);
            }
            else if (reader.ValueTextEquals("data_offsets"u8))
            {
                if (offsets != null) throw Twice(fieldAt, name, "data_offsets");
                reader.Read();
                offsetsAt = 8 + reader.TokenStartIndex;
                long[] pair = ReadIntegers(ref reader, name, "data_offsets", 2);
                offsets = [(ulong)pair[0], (ulong)pair[1]];
            }
            else
            {
                // Unknown members are ignored, as the reference implementation ignores them.
                reader.Read();
                reader.Skip();
            }
        }
        if (dtype == null || shape == null || offsets == null)
        {
            string missing = dtype == null ? "dtype" : shape == null ? "shape" : "data_offsets";
            throw new ModelFormatException(Path, nameAt, $"tensor '{name}' has no {missing}; each tensor needs dtype, shape and data_offsets.");
        }
        return new Entry(name, dtype.Value, shape, offsets[0], offsets[1], nameAt, shapeAt, offsetsAt);
    }

    /// <summary>A JSON array of non-negative integers; exactly <paramref name="count"/> of them unless it is -1.</summary>
    private long[] ReadIntegers(ref Utf8JsonReader reader, string name, string field, int count)
    {
        string expected = count < 0 ? "an array of non-negative integers" : $"an array of {count} non-negative integers";
        if (reader.TokenType != JsonTokenType.StartArray)
            throw At(ref reader, $"{field} of tensor '{name}' is {JsonText.Describe(reader.TokenType)}; expected {expected}.");
        var values = new List<long>(4);
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType != JsonTokenType.Number || !reader.TryGetUInt64(out ulong v) || v > long.MaxValue)
            {
                string shown = reader.TokenType == JsonTokenType.Number ? System.Text.Encoding.UTF8.GetString(reader.ValueSpan) : JsonText.Describe(reader.TokenType);
                throw At(ref reader, $"{field} of tensor '{name}' holds {shown}; expected {expected} (at most 2^63 - 1).");
            }
            if (count >= 0 && values.Count == count)
                throw At(ref reader, $"{field} of tensor '{name}' holds more than {count} numbers; expected [begin, end].");
            values.Add((long)v);
        }
        if (count >= 0 && values.Count != count)
            throw At(ref reader, $"{field} of tensor '{name}' holds {values.Count} numbers; expected [begin, end].");
        return [.. values];
    }

    private void Validate(List<Entry> entries)
    {
        long dataLength = Length - DataOffset;
        var tensors = new SafetensorsTensorInfo[entries.Count];
        for (int i = 0; i < entries.Count; i++)
        {
            Entry e = entries[i];
            string shapeText = "[" + string.Join(", ", e.Shape) + "]";
            long elements = 1;
            foreach (long d in e.Shape)
            {
                if (d != 0 && elements > long.MaxValue / d)
                    throw new ModelFormatException(Path, e.ShapeAt, $"tensor '{e.Name}' shape {shapeText} has more elements than 64 bits can count.");
                elements *= d;
            }
            int bits = SafetensorsDtypeInfo.BitSize(e.Dtype);
            if (elements > long.MaxValue / bits)
                throw new ModelFormatException(Path, e.ShapeAt, $"tensor '{e.Name}' ({e.Dtype} {shapeText}) has more bits than 64 bits can count.");
            if (elements * bits % 8 != 0)
                throw new ModelFormatException(Path, e.ShapeAt, $"tensor '{e.Name}' ({e.Dtype} {shapeText}) is {elements * bits} bits, which does not end on a byte boundary.");
            long bytes = elements * bits / 8;
            if (e.End < e.Begin)
                throw new ModelFormatException(Path, e.OffsetsAt, $"tensor '{e.Name}' data_offsets [{e.Begin}, {e.End}] end before they begin.");
            if (e.End > (ulong)dataLength)
                throw new ModelFormatException(Path, e.OffsetsAt,
                    $"tensor '{e.Name}' data_offsets [{e.Begin}, {e.End}] reach past the end of the data buffer ({dataLength} bytes); the file is truncated or its header lies.");
            if (e.End - e.Begin != (ulong)bytes)
                throw new ModelFormatException(Path, e.OffsetsAt,
                    $"tensor '{e.Name}' is {e.Dtype} {shapeText}, which takes {bytes} bytes, but its data_offsets [{e.Begin}, {e.End}] span {e.End - e.Begin}.");
            tensors[i] = new SafetensorsTensorInfo(e.Name, e.Dtype, e.Shape, (long)e.Begin, (long)e.End);
        }

        // The reference sorts by (begin, end) and then requires each tensor to start where the previous one
        // ended and the last to end at the end of the file: the tensors tile the data buffer exactly.
        var order = new int[tensors.Length];
        for (int i = 0; i < order.Length; i++) order[i] = i;
        Array.Sort(order, (a, b) =>
        {
            int c = tensors[a].Begin.CompareTo(tensors[b].Begin);
            if (c == 0) c = tensors[a].End.CompareTo(tensors[b].End);
            return c != 0 ? c : a.CompareTo(b);
        });
        long previousEnd = 0;
        string? previous = null;
        var sorted = new SafetensorsTensorInfo[tensors.Length];
        for (int k = 0; k < order.Length; k++)
        {
            SafetensorsTensorInfo t = tensors[order[k]];
            long at = entries[order[k]].OffsetsAt;
            string after = previous == null ? "the start of the data buffer" : $"the end of tensor '{previous}'";
            if (t.Begin > previousEnd)
                throw new ModelFormatException(Path, at,
                    $"tensor '{t.Name}' starts at data byte {t.Begin}, leaving a gap of {t.Begin - previousEnd} bytes after {after} ({previousEnd}); the data must be covered exactly, with no gaps.");
            if (t.Begin < previousEnd)
                throw new ModelFormatException(Path, at, $"tensor '{t.Name}' data [{t.Begin}, {t.End}] overlaps tensor '{previous}', which ends at {previousEnd}.");
            previousEnd = t.End;
            previous = t.Name;
            sorted[k] = t;
            _tensorsByName.Add(t.Name, t);
        }
        if (previousEnd != dataLength)
            throw new ModelFormatException(Path, DataOffset + previousEnd,
                $"the last {dataLength - previousEnd} bytes of the file belong to no tensor (the tensors end at data byte {previousEnd} of {dataLength}); the header is incomplete or the file has trailing bytes.");
        _tensors = sorted;
    }

    private ModelFormatException At(ref Utf8JsonReader reader, string problem) => new(Path, 8 + reader.TokenStartIndex, problem);

    private ModelFormatException Twice(long at, string name, string field) => new(Path, at, $"tensor '{name}' gives {field} twice.");

    /// <summary>The current string token, unescaped; an escape that decodes to a lone surrogate is a format error.</summary>
    private string GetString(ref Utf8JsonReader reader, string what)
    {
        try
        {
            return reader.GetString()!;
        }
        catch (InvalidOperationException e)
        {
            throw new ModelFormatException(Path, 8 + reader.TokenStartIndex, $"{what} is not a valid Unicode string ({e.Message}).", e);
        }
    }

    /// <summary>Index of the first byte that is not part of a valid UTF-8 sequence, or -1.</summary>
    private static int FirstInvalidUtf8(ReadOnlySpan<byte> bytes)
    {
        if (Utf8.IsValid(bytes)) return -1;
        Span<char> scratch = stackalloc char[1024];
        int offset = 0;
        while (true)
        {
            OperationStatus status = Utf8.ToUtf16(bytes[offset..], scratch, out int read, out _, replaceInvalidSequences: false, isFinalBlock: true);
            offset += read;
            if (status != OperationStatus.DestinationTooSmall) return status == OperationStatus.Done ? -1 : offset;
        }
    }
}
