namespace ModelSmith.Formats;

/// <summary>
/// One tensor of a safetensors file. <see cref="Shape"/> is outermost first, as PyTorch orders it (a Linear
/// weight is [out, in]; the same tensor in GGUF has shape [in, out]). <see cref="Begin"/> and
/// <see cref="End"/> are the header's data_offsets: byte offsets relative to the first byte after the header.
/// </summary>
public sealed record SafetensorsTensorInfo(string Name, SafetensorsDtype Dtype, long[] Shape, long Begin, long End)
{
    /// <summary>Total number of elements (1 for a scalar of shape []).</summary>
    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (long d in Shape) n *= d;
            return n;
        }
    }

    /// <summary>Bytes the data occupies.</summary>
    public long ByteSize => End - Begin;

    /// <summary>Shape as PyTorch prints it, e.g. "[512, 64]".</summary>
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}
