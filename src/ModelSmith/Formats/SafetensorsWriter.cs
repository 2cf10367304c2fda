using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace ModelSmith.Formats;

/// <summary>
/// Builds a safetensors file laid out byte for byte as the reference implementation (huggingface/safetensors,
/// which the Python library calls) lays it out: tensors sorted by dtype rank descending (the order of
/// <see cref="SafetensorsDtype"/>), then by name (UTF-8 bytes); data packed back to back in that order with
/// no padding; a compact JSON header with "__metadata__" first (when there is any) and each tensor as
/// {"dtype","shape","data_offsets"}; strings escaped as serde_json escapes them; the header padded with
/// spaces to a multiple of 8 bytes. The reference writes metadata from a hash map in no fixed order; this
/// writer keeps insertion order, so the same inputs always give the same bytes.
/// Writing to a path goes through a temp file renamed into place, so a failed write leaves the old file.
/// </summary>
public sealed class SafetensorsWriter
{
    private readonly List<string> _metadataKeys = [];
    private readonly Dictionary<string, string> _metadata = new(StringComparer.Ordinal);
    private readonly List<PendingTensor> _tensors = [];
    private readonly HashSet<string> _tensorNames = new(StringComparer.Ordinal);

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Metadata keys in the order they will be written.</summary>
    public IReadOnlyList<string> MetadataKeys => _metadataKeys;

    /// <summary>Sets a "__metadata__" entry; a key already present keeps its position.</summary>
    public SafetensorsWriter SetMetadata(string key, string value)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(value);
        CheckEncodable(key, nameof(key));
        CheckEncodable(value, nameof(value));
        if (_metadata.TryAdd(key, value)) _metadataKeys.Add(key);
        else _metadata[key] = value;
        return this;
    }

    /// <summary>
    /// Adds a tensor. <paramref name="shape"/> is outermost first (PyTorch order); <paramref name="data"/>
    /// must hold exactly the bytes dtype and shape imply. The memory is read when the file is written.
    /// </summary>
    public SafetensorsWriter AddTensor(string name, SafetensorsDtype dtype, ReadOnlySpan<long> shape, ReadOnlyMemory<byte> data)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (name == SafetensorsFile.MetadataKey)
            throw new ArgumentException($"'{SafetensorsFile.MetadataKey}' is reserved for metadata and cannot name a tensor.", nameof(name));
        CheckEncodable(name, nameof(name));
        if (!Enum.IsDefined(dtype)) throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Not a safetensors dtype.");
        long elements = 1;
        foreach (long d in shape)
        {
            if (d < 0) throw new ArgumentException($"Tensor '{name}' has a negative dimension.", nameof(shape));
            if (d != 0 && elements > long.MaxValue / d)
                throw new ArgumentException($"Tensor '{name}' has more elements than a long can count.", nameof(shape));
            elements *= d;
        }
        long bytes = SafetensorsDtypeInfo.ByteCount(dtype, elements);
        if (bytes < 0)
            throw new ArgumentException($"Tensor '{name}' ({dtype}, {elements} elements) does not fill a whole number of bytes.", nameof(shape));
        if (data.Length != bytes)
            throw new ArgumentException($"Tensor '{name}' ({dtype}, {elements} elements) needs {bytes} bytes but {data.Length} were given.", nameof(data));
        if (!_tensorNames.Add(name)) throw new ArgumentException($"Tensor '{name}' was already added.", nameof(name));
        _tensors.Add(new PendingTensor(name, StrictUtf8.GetBytes(name), dtype, shape.ToArray(), data));
        return this;
    }

    /// <summary>Adds an F32 tensor from floats.</summary>
    public SafetensorsWriter AddTensor(string name, ReadOnlySpan<long> shape, float[] values)
    {
        ArgumentNullException.ThrowIfNull(values);
        var bytes = new byte[values.Length * sizeof(float)];
        System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).CopyTo(bytes);
        return AddTensor(name, SafetensorsDtype.F32, shape, bytes);
    }

    /// <summary>A writer holding every metadata entry and tensor of <paramref name="file"/> (tensor data still mapped from it).</summary>
    public static SafetensorsWriter From(SafetensorsFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        var writer = new SafetensorsWriter();
        foreach (string key in file.MetadataKeys) writer.SetMetadata(key, file.Metadata[key]);
        foreach (SafetensorsTensorInfo t in file.Tensors) writer.AddTensor(t.Name, t.Dtype, t.Shape, file.GetTensorData(t));
        return writer;
    }

    /// <summary>Writes the file atomically: to a temp file beside <paramref name="path"/>, flushed, then renamed over it.</summary>
    public void Write(string path) => AtomicFile.Write(path, Write);

    /// <summary>Writes the whole file to <paramref name="stream"/>.</summary>
    public void Write(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        List<PendingTensor> ordered = Ordered();
        byte[] header = BuildHeader(ordered);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
        stream.Write(length);
        stream.Write(header);
        foreach (PendingTensor t in ordered) stream.Write(t.Data.Span);
    }

    /// <summary>The reference layout order: dtype rank descending, then name by UTF-8 bytes.</summary>
    private List<PendingTensor> Ordered()
    {
        var ordered = new List<PendingTensor>(_tensors);
        ordered.Sort((a, b) =>
        {
            int c = b.Dtype.CompareTo(a.Dtype);
            return c != 0 ? c : a.Utf8Name.AsSpan().SequenceCompareTo(b.Utf8Name);
        });
        return ordered;
    }

    /// <summary>The JSON header, space-padded to a multiple of 8 bytes.</summary>
    private byte[] BuildHeader(List<PendingTensor> ordered)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = SerdeJsonEncoder.Instance, Indented = false }))
        {
            json.WriteStartObject();
            if (_metadataKeys.Count > 0)
            {
                json.WriteStartObject(SafetensorsFile.MetadataKey);
                foreach (string key in _metadataKeys) json.WriteString(key, _metadata[key]);
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (PendingTensor t in ordered)
            {
                json.WriteStartObject(t.Name);
                json.WriteString("dtype"u8, SafetensorsDtypeInfo.Name(t.Dtype));
                json.WriteStartArray("shape"u8);
                foreach (long d in t.Shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets"u8);
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + t.Data.Length);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += t.Data.Length;
            }
            json.WriteEndObject();
        }
        int padded = (buffer.WrittenCount + 7) / 8 * 8;
        if (padded > SafetensorsFile.MaxHeaderBytes)
            throw new InvalidOperationException($"The header would be {padded} bytes, over the format's limit of {SafetensorsFile.MaxHeaderBytes}; write fewer tensors or shorter metadata per file.");
        var header = new byte[padded];
        buffer.WrittenSpan.CopyTo(header);
        header.AsSpan(buffer.WrittenCount).Fill((byte)' ');
        return header;
    }

    /// <summary>Refuses strings that have no UTF-8 form (lone surrogates), which no reader could decode.</summary>
    private static void CheckEncodable(string s, string parameter)
    {
        try
        {
            StrictUtf8.GetByteCount(s);
        }
        catch (EncoderFallbackException e)
        {
            throw new ArgumentException($"'{s}' contains a lone surrogate and cannot be written as UTF-8.", parameter, e);
        }
    }

    private sealed record PendingTensor(string Name, byte[] Utf8Name, SafetensorsDtype Dtype, long[] Shape, ReadOnlyMemory<byte> Data);

    /// <summary>
    /// Escapes JSON strings exactly as serde_json does: '"' and '\' with a backslash, \b \t \n \f \r by name,
    /// the other control characters below U+0020 as \u00XX with lowercase hex, everything else (all of
    /// Unicode, '/', '&lt;', '+' ...) written as plain UTF-8.
    /// </summary>
    private sealed unsafe class SerdeJsonEncoder : JavaScriptEncoder
    {
        public static readonly SerdeJsonEncoder Instance = new();

        public override int MaxOutputCharactersPerInputCharacter => 6;

        public override bool WillEncode(int unicodeScalar) => unicodeScalar < 0x20 || unicodeScalar == '"' || unicodeScalar == '\\';

        public override int FindFirstCharacterToEncode(char* text, int textLength)
        {
            for (int i = 0; i < textLength; i++)
                if (WillEncode(text[i])) return i;
            return -1;
        }

        public override bool TryEncodeUnicodeScalar(int unicodeScalar, char* buffer, int bufferLength, out int numberOfCharactersWritten)
        {
            ReadOnlySpan<char> escape = unicodeScalar switch
            {
                '"' => "\\\"",
                '\\' => "\\\\",
                '\b' => "\\b",
                '\t' => "\\t",
                '\n' => "\\n",
                '\f' => "\\f",
                '\r' => "\\r",
                < 0x20 => $"\\u00{unicodeScalar:x2}",
                _ => new Rune(unicodeScalar).ToString(),
            };
            if (escape.Length > bufferLength)
            {
                numberOfCharactersWritten = 0;
                return false;
            }
            escape.CopyTo(new Span<char>(buffer, bufferLength));
            numberOfCharactersWritten = escape.Length;
            return true;
        }
    }
}
