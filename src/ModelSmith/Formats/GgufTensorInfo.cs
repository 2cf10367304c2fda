namespace ModelSmith.Formats;

/// <summary>
/// One tensor's entry in a GGUF file. <see cref="Shape"/> is innermost first, as ggml orders it:
/// <c>Shape[0]</c> (ne0) is the contiguous row length, so a PyTorch weight [out, in] has Shape = [in, out].
/// </summary>
public sealed record GgufTensorInfo(string Name, GgmlType Type, long[] Shape, long Offset)
{
    /// <summary>Total number of elements.</summary>
    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (long d in Shape) n *= d;
            return n;
        }
    }

    /// <summary>Bytes the tensor's data occupies (without alignment padding).</summary>
    public long ByteSize => GgmlTypeInfo.ByteCount(Type, ElementCount);

    /// <summary>Row length (ne0).</summary>
    public long Columns => Shape.Length > 0 ? Shape[0] : 1;

    /// <summary>Number of rows: the product of every dimension but the first.</summary>
    public long Rows => Shape.Length == 0 ? 1 : ElementCount / Shape[0];

    /// <summary>Shape as ggml prints it, e.g. "[64, 512]".</summary>
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}
