using System.Buffers.Binary;
using System.Text;

namespace ModelSmith.Formats;

/// <summary>
/// Builds a GGUF v3 file: metadata in insertion order, tensor entries in insertion order, tensor data laid
/// out in the same order, each tensor starting on the alignment boundary and zero-padded after, exactly as
/// llama.cpp's gguf writer lays files out. The same inputs always give the same bytes.
/// Writing to a path goes through a temp file that is flushed and renamed into place, so an interrupted
/// write never leaves a half-written model where a good one was.
/// </summary>
public sealed class GgufWriter
{
    private readonly List<string> _keys = [];
    private readonly Dictionary<string, GgufValue> _metadata = new(StringComparer.Ordinal);
    private readonly List<PendingTensor> _tensors = [];
    private readonly HashSet<string> _tensorNames = new(StringComparer.Ordinal);

    /// <summary>Metadata keys in the order they will be written.</summary>
    public IReadOnlyList<string> Keys => _keys;

    /// <summary>Alignment of tensor data: general.alignment when set, else 32.</summary>
    public int Alignment => _metadata.TryGetValue("general.alignment", out GgufValue? a) ? (int)(uint)a.Value : GgufFile.DefaultAlignment;

    /// <summary>Sets a metadata value; a key already present keeps its position.</summary>
    public GgufWriter Set(string key, GgufValue value)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        ArgumentNullException.ThrowIfNull(value);
        if (key == "general.alignment")
        {
            if (value.Type != GgufValueType.UInt32 || (uint)value.Value == 0 || ((uint)value.Value & ((uint)value.Value - 1)) != 0
                || (uint)value.Value > GgufFile.MaxAlignment)
                throw new ArgumentException($"general.alignment must be a UInt32 power of two no larger than {GgufFile.MaxAlignment}.", nameof(value));
            if (_tensors.Count > 0) throw new InvalidOperationException("Set general.alignment before adding tensors.");
        }
        if (_metadata.TryAdd(key, value)) _keys.Add(key);
        else _metadata[key] = value;
        return this;
    }

    public GgufWriter Set(string key, string value) => Set(key, GgufValue.FromString(value));

    public GgufWriter Set(string key, uint value) => Set(key, GgufValue.FromUInt32(value));

    public GgufWriter Set(string key, int value) => Set(key, GgufValue.FromInt32(value));

    public GgufWriter Set(string key, float value) => Set(key, GgufValue.FromFloat32(value));

    public GgufWriter Set(string key, bool value) => Set(key, GgufValue.FromBool(value));

    /// <summary>Removes a metadata key if present.</summary>
    public bool Remove(string key)
    {
        if (!_metadata.Remove(key)) return false;
        _keys.Remove(key);
        return true;
    }

    public GgufValue? Get(string key) => _metadata.GetValueOrDefault(key);

    /// <summary>
    /// Adds a tensor. <paramref name="shape"/> is innermost first (ne0 = row length); <paramref name="data"/>
    /// must hold exactly the bytes that type and shape imply. The memory is read when the file is written.
    /// </summary>
    public GgufWriter AddTensor(string name, GgmlType type, ReadOnlySpan<long> shape, ReadOnlyMemory<byte> data)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (Encoding.UTF8.GetByteCount(name) > GgufFile.MaxTensorNameBytes)
            throw new ArgumentException($"Tensor name '{name}' is longer than the {GgufFile.MaxTensorNameBytes} UTF-8 bytes llama.cpp accepts.", nameof(name));
        if (shape.Length is 0 or > GgufFile.MaxDimensions)
            throw new ArgumentException($"Tensor '{name}' has {shape.Length} dimensions; 1 to {GgufFile.MaxDimensions} are allowed.", nameof(shape));
        long elements = 1;
        foreach (long d in shape)
        {
            if (d < 0) throw new ArgumentException($"Tensor '{name}' has a negative dimension.", nameof(shape));
            if (d != 0 && elements > long.MaxValue / d)
                throw new ArgumentException($"Tensor '{name}' shape [{string.Join(", ", shape.ToArray())}] has more elements than a long can count.", nameof(shape));
            elements *= d;
        }
        int block = GgmlTypeInfo.BlockSize(type);
        if (shape[0] % block != 0)
            throw new ArgumentException($"Tensor '{name}' rows of {shape[0]} are not a multiple of the {type} block size {block}.", nameof(shape));
        if (elements / block > int.MaxValue / GgmlTypeInfo.TypeSize(type))
            throw new ArgumentException($"Tensor '{name}' ({type}, {elements} elements) is over 2 GiB, more than one memory block can hold.", nameof(shape));
        long bytes = GgmlTypeInfo.ByteCount(type, elements);
        if (data.Length != bytes)
            throw new ArgumentException($"Tensor '{name}' ({type}, {elements} elements) needs {bytes} bytes but {data.Length} were given.", nameof(data));
        if (!_tensorNames.Add(name)) throw new ArgumentException($"Tensor '{name}' was already added.", nameof(name));
        _tensors.Add(new PendingTensor(name, type, shape.ToArray(), data));
        return this;
    }

    /// <summary>Adds an F32 tensor from floats.</summary>
    public GgufWriter AddTensor(string name, ReadOnlySpan<long> shape, float[] values)
    {
        ArgumentNullException.ThrowIfNull(values);
        var bytes = new byte[values.Length * sizeof(float)];
        System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).CopyTo(bytes);
        return AddTensor(name, GgmlType.F32, shape, bytes);
    }

    /// <summary>A writer holding every key and tensor of <paramref name="file"/> in file order (tensor data still mapped from it).</summary>
    public static GgufWriter From(GgufFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        var writer = new GgufWriter();
        foreach (string key in file.MetadataKeys) writer.Set(key, file.Metadata[key]);
        foreach (GgufTensorInfo t in file.Tensors) writer.AddTensor(t.Name, t.Type, t.Shape, file.GetTensorData(t));
        return writer;
    }

    /// <summary>Writes the file atomically: to a temp file beside <paramref name="path"/>, flushed, then renamed over it.</summary>
    public void Write(string path) => AtomicFile.Write(path, Write);

    /// <summary>Writes the whole file to <paramref name="stream"/>.</summary>
    public void Write(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        int alignment = Alignment;
        var header = new MemoryStream();
        var w = new BinaryWriter(header, Encoding.UTF8, leaveOpen: true);
        w.Write(GgufFile.Magic);
        w.Write(3u);
        w.Write((ulong)_tensors.Count);
        w.Write((ulong)_keys.Count);
        foreach (string key in _keys)
        {
            WriteString(w, key);
            GgufValue value = _metadata[key];
            w.Write((uint)value.Type);
            WriteValue(w, value);
        }
        long offset = 0;
        foreach (PendingTensor t in _tensors)
        {
            WriteString(w, t.Name);
            w.Write((uint)t.Shape.Length);
            foreach (long d in t.Shape) w.Write((ulong)d);
            w.Write((uint)t.Type);
            w.Write((ulong)offset);
            offset = GgufFile.AlignUp(offset + t.Data.Length, alignment);
        }
        w.Flush();
        Pad(header, alignment);
        header.Position = 0;
        header.CopyTo(stream);

        long written = 0;
        foreach (PendingTensor t in _tensors)
        {
            stream.Write(t.Data.Span);
            written += t.Data.Length;
            long padded = GgufFile.AlignUp(written, alignment);
            WriteZeros(stream, padded - written);
            written = padded;
        }
    }

    private static void WriteValue(BinaryWriter w, GgufValue value)
    {
        switch (value.Value)
        {
            case byte v: w.Write(v); break;
            case sbyte v: w.Write(v); break;
            case ushort v: w.Write(v); break;
            case short v: w.Write(v); break;
            case uint v: w.Write(v); break;
            case int v: w.Write(v); break;
            case ulong v: w.Write(v); break;
            case long v: w.Write(v); break;
            case float v: w.Write(v); break;
            case double v: w.Write(v); break;
            case bool v: w.Write((byte)(v ? 1 : 0)); break;
            case string v: WriteString(w, v); break;
            case Array a: WriteArray(w, value.ElementType, a); break;
            default: throw new InvalidOperationException($"Cannot write a GGUF value of CLR type {value.Value.GetType()}.");
        }
    }

    private static void WriteArray(BinaryWriter w, GgufValueType elementType, Array a)
    {
        w.Write((uint)elementType);
        w.Write((ulong)a.Length);
        switch (a)
        {
            case byte[] v: w.Write(v); break;
            case string[] v: foreach (string s in v) WriteString(w, s); break;
            case bool[] v: foreach (bool b in v) w.Write((byte)(b ? 1 : 0)); break;
            case GgufValue[] v: foreach (GgufValue e in v) WriteArray(w, e.ElementType, (Array)e.Value); break;
            default:
                foreach (object? e in a) WriteValue(w, Box(e!, elementType));
                break;
        }
    }

    private static GgufValue Box(object e, GgufValueType type) => type switch
    {
        GgufValueType.Int8 => GgufValue.FromInt8((sbyte)e),
        GgufValueType.UInt16 => GgufValue.FromUInt16((ushort)e),
        GgufValueType.Int16 => GgufValue.FromInt16((short)e),
        GgufValueType.UInt32 => GgufValue.FromUInt32((uint)e),
        GgufValueType.Int32 => GgufValue.FromInt32((int)e),
        GgufValueType.UInt64 => GgufValue.FromUInt64((ulong)e),
        GgufValueType.Int64 => GgufValue.FromInt64((long)e),
        GgufValueType.Float32 => GgufValue.FromFloat32((float)e),
        GgufValueType.Float64 => GgufValue.FromFloat64((double)e),
        _ => throw new InvalidOperationException($"Unexpected GGUF array element type {type}."),
    };

    private static void WriteString(BinaryWriter w, string s)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static void Pad(Stream s, int alignment)
    {
        long padded = GgufFile.AlignUp(s.Length, alignment);
        s.Position = s.Length;
        WriteZeros(s, padded - s.Length);
    }

    private static void WriteZeros(Stream s, long count)
    {
        Span<byte> zeros = stackalloc byte[64];
        zeros.Clear();
        while (count > 0)
        {
            int n = (int)Math.Min(count, zeros.Length);
            s.Write(zeros[..n]);
            count -= n;
        }
    }

    private sealed record PendingTensor(string Name, GgmlType Type, long[] Shape, ReadOnlyMemory<byte> Data);
}
