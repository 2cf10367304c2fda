using System.Runtime.InteropServices;
using ModelSmith.Formats;

namespace ModelSmith.Tensors;

/// <summary>
/// A row-major matrix of <see cref="Rows"/> × <see cref="Cols"/> elements stored in a ggml type, over the
/// tensor's raw bytes. GGUF convention: ne0 = <see cref="Cols"/> (input features, contiguous) and
/// ne1 = <see cref="Rows"/> (output features), so a PyTorch <c>[out, in]</c> weight maps to Rows = out.
/// </summary>
/// <remarks>
/// The bytes may be an array or a memory-mapped file exposed through a <c>MemoryManager</c>; nothing here
/// assumes an array. A matrix is a view: it owns nothing and copying it is cheap. The bytes must not
/// change while a matrix is over them (they are weights): an F16 matrix remembers, after its first decode,
/// whether it holds infinities or NaNs (<see cref="HalvesAreFinite"/>).
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
        _finiteScan = type == GgmlType.F16 ? new FiniteScan() : null;
    }

    // Shared by the copies of this matrix; null for types other than F16.
    private readonly FiniteScan? _finiteScan;

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

    /// <summary>
    /// True when the matrix is F16 and none of its values is an infinity or a NaN. The first call scans
    /// the bytes (at memory speed); the answer is kept for every copy of this matrix.
    /// </summary>
    public bool HalvesAreFinite => _finiteScan is not null && _finiteScan.IsFinite(Data.Span);

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

/// <summary>Whether a run of binary16 values holds no infinity or NaN, found once and remembered.</summary>
internal sealed class FiniteScan
{
    private int _state; // 0 not scanned yet, 1 all finite, 2 some infinity or NaN

    /// <summary>bytes: the binary16 values, always the same ones for this instance.</summary>
    public bool IsFinite(ReadOnlySpan<byte> bytes)
    {
        int state = Volatile.Read(ref _state);
        if (state == 0)
        {
            state = RowConvert.HalvesAreFinite(MemoryMarshal.Cast<byte, ushort>(bytes)) ? 1 : 2;
            Volatile.Write(ref _state, state);
        }
        return state == 1;
    }
}
