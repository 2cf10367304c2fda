using ModelSmith.Formats;

namespace ModelSmith.Tensors;

/// <summary>
/// A row-major matrix of <see cref="Rows"/> × <see cref="Cols"/> elements stored in a ggml type, over the
/// tensor's raw bytes. GGUF convention: ne0 = <see cref="Cols"/> (input features, contiguous) and
/// ne1 = <see cref="Rows"/> (output features), so a PyTorch <c>[out, in]</c> weight maps to Rows = out.
/// </summary>
/// <remarks>
/// The bytes may be an array or a memory-mapped file exposed through a <c>MemoryManager</c>; nothing here
/// assumes an array. A matrix is a view: it owns nothing and copying it is cheap.
/// </remarks>
internal readonly struct WeightMatrix
{
    /// <summary>Wraps <paramref name="data"/> (exactly Rows × RowBytes bytes) as a matrix of <paramref name="type"/>.</summary>
    public WeightMatrix(GgmlType type, int rows, int cols, ReadOnlyMemory<byte> data)
    {
        if (rows < 0) throw new ArgumentOutOfRangeException(nameof(rows), rows, "A weight matrix needs a non-negative row count.");
        if (cols < 0) throw new ArgumentOutOfRangeException(nameof(cols), cols, "A weight matrix needs a non-negative column count.");
        RowKernel kernel = RowKernel.For(type);
        if (cols % kernel.BlockSize != 0)
            throw new ArgumentException($"A {type} row holds whole blocks of {kernel.BlockSize} elements, but the matrix has {cols} columns.", nameof(cols));
        long rowBytes = kernel.RowBytes(cols);
        long expected = rowBytes * rows;
        if (data.Length != expected)
            throw new ArgumentException($"A {rows}x{cols} {type} matrix takes {expected} bytes but {data.Length} were given.", nameof(data));
        Type = type;
        Rows = rows;
        Cols = cols;
        RowBytes = (int)rowBytes;
        Data = data;
        Kernel = kernel;
    }

    public GgmlType Type { get; }

    /// <summary>Output features (ne1).</summary>
    public int Rows { get; }

    /// <summary>Input features (ne0), the contiguous dimension.</summary>
    public int Cols { get; }

    /// <summary>Bytes per stored row.</summary>
    public int RowBytes { get; }

    /// <summary>The raw tensor bytes: (Rows, RowBytes).</summary>
    public ReadOnlyMemory<byte> Data { get; }

    /// <summary>The conversion kernel of <see cref="Type"/>.</summary>
    public RowKernel Kernel { get; }

    /// <summary>The stored bytes of row <paramref name="row"/>: (RowBytes).</summary>
    public ReadOnlySpan<byte> RowData(int row)
    {
        if ((uint)row >= (uint)Rows) throw new ArgumentOutOfRangeException(nameof(row), row, $"The matrix has {Rows} rows.");
        return Data.Span.Slice(row * RowBytes, RowBytes);
    }

    /// <summary>Converts row <paramref name="row"/> to float (embedding lookup). dst: (Cols).</summary>
    public void DequantizeRow(int row, Span<float> dst)
    {
        if (dst.Length < Cols) throw new ArgumentException($"Destination holds {dst.Length} floats but a row has {Cols}.", nameof(dst));
        Kernel.ToSingle(RowData(row), dst[..Cols]);
    }

    /// <summary>
    /// A new matrix holding <paramref name="values"/> stored as <paramref name="type"/> (rounded as ggml
    /// rounds). values: (rows, cols).
    /// </summary>
    public static WeightMatrix FromSingles(ReadOnlySpan<float> values, int rows, int cols, GgmlType type = GgmlType.F32)
    {
        if (values.Length != (long)rows * cols)
            throw new ArgumentException($"A {rows}x{cols} matrix needs {(long)rows * cols} values but {values.Length} were given.", nameof(values));
        RowKernel kernel = RowKernel.For(type);
        var bytes = new byte[kernel.RowBytes(cols) * rows];
        kernel.FromSingle(values, bytes);
        return new WeightMatrix(type, rows, cols, bytes);
    }
}
