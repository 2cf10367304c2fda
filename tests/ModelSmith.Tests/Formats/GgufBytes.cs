using System.Text;
using ModelSmith.Formats;

namespace ModelSmith.Tests.Formats;

/// <summary>
/// Builds GGUF files byte by byte so that tests can write what GgufWriter never would: lying counts,
/// bad types, broken strings. <see cref="Position"/> marks where each defect lands, for offset assertions.
/// </summary>
internal sealed class GgufBytes
{
    private readonly List<byte> _bytes = [];

    public long Position => _bytes.Count;

    public GgufBytes Header(ulong tensorCount, ulong kvCount, uint version = 3, uint magic = GgufFile.Magic)
    {
        return U32(magic).U32(version).U64(tensorCount).U64(kvCount);
    }

    public GgufBytes U8(byte v) { _bytes.Add(v); return this; }

    public GgufBytes U32(uint v) => Raw(BitConverter.GetBytes(v));

    public GgufBytes U64(ulong v) => Raw(BitConverter.GetBytes(v));

    public GgufBytes Raw(byte[] bytes) { _bytes.AddRange(bytes); return this; }

    /// <summary>A GGUF string: u64 byte length, then the bytes (not necessarily valid UTF-8).</summary>
    public GgufBytes Str(byte[] bytes) => U64((ulong)bytes.Length).Raw(bytes);

    public GgufBytes Str(string s) => Str(Encoding.UTF8.GetBytes(s));

    public GgufBytes KeyU32(string key, uint value) => Str(key).U32((uint)GgufValueType.UInt32).U32(value);

    public GgufBytes KeyString(string key, string value) => Str(key).U32((uint)GgufValueType.String).Str(value);

    public GgufBytes Tensor(string name, long[] shape, GgmlType type, ulong offset) => Tensor(Encoding.UTF8.GetBytes(name), shape, (uint)type, offset);

    public GgufBytes Tensor(byte[] name, long[] shape, uint type, ulong offset) => Tensor(name, shape, type, offset, out _);

    /// <summary>A tensor entry; <paramref name="offsetAt"/> is where its data offset field lands.</summary>
    public GgufBytes Tensor(string name, long[] shape, GgmlType type, ulong offset, out long offsetAt) =>
        Tensor(Encoding.UTF8.GetBytes(name), shape, (uint)type, offset, out offsetAt);

    public GgufBytes Tensor(byte[] name, long[] shape, uint type, ulong offset, out long offsetAt)
    {
        Str(name).U32((uint)shape.Length);
        foreach (long d in shape) U64((ulong)d);
        U32(type);
        offsetAt = Position;
        return U64(offset);
    }

    /// <summary>Zero bytes up to the next multiple of <paramref name="alignment"/>.</summary>
    public GgufBytes Pad(int alignment = GgufFile.DefaultAlignment)
    {
        while (_bytes.Count % alignment != 0) _bytes.Add(0);
        return this;
    }

    public GgufBytes Zeros(int count) => Raw(new byte[count]);

    public byte[] ToArray() => [.. _bytes];
}
