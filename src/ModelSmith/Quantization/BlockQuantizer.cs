using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using ModelSmith.Formats;

namespace ModelSmith.Quantization;

/// <summary>
/// Converts rows of floats to and from ggml's tensor element types: the block formats with llama.cpp's
/// reference quantizers (byte for byte what llama.cpp writes without an importance matrix) and
/// dequantizers, plus the plain F32, F16 and BF16 encodings.
/// A matrix is <c>rows</c> rows of <c>cols</c> values (ggml's ne1 × ne0); each row is quantized on its
/// own into <see cref="RowSize"/> bytes, so rows can be processed in parallel with identical results.
/// </summary>
public static class BlockQuantizer
{
    /// <summary>Every type <see cref="Quantize(GgmlType, ReadOnlySpan{float}, int, int, Span{byte})"/> and
    /// <see cref="Dequantize"/> accept.</summary>
    public static IReadOnlyList<GgmlType> SupportedTypes { get; } =
    [
        GgmlType.F32, GgmlType.F16, GgmlType.BF16,
        GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1,
        GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.Q8_K,
    ];

    /// <summary>Rows shorter than this many values are never split across threads.</summary>
    private const long MinValuesPerThread = 1 << 16;

    /// <summary>Values per piece of work when a matrix is quantized on several threads (llama.cpp's chunk: 32·512).</summary>
    private const long ValuesPerChunk = 1 << 14;

    public static bool IsSupported(GgmlType type) => type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16
        or GgmlType.Q8_0 or GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1
        or GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K or GgmlType.Q8_K;

    /// <summary>Bits per weight of <paramref name="type"/>, scales included (e.g. Q4_K: 4.5, Q6_K: 6.5625).</summary>
    public static double BitsPerWeight(GgmlType type)
    {
        RequireSupported(type);
        return GgmlTypeInfo.BitsPerWeight(type);
    }

    /// <summary>Bytes one row of <paramref name="cols"/> values takes in <paramref name="type"/>.</summary>
    public static int RowSize(GgmlType type, int cols)
    {
        RequireSupported(type);
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
        int block = GgmlTypeInfo.BlockSize(type);
        if (cols % block != 0)
        {
            throw new ArgumentException(
                $"A row of {cols} values is not a whole number of {type} blocks of {block}; {type} needs a row length that is a multiple of {block}.",
                nameof(cols));
        }
        return checked(cols / block * GgmlTypeInfo.TypeSize(type));
    }

    /// <summary>Quantizes <paramref name="src"/> on one thread. See the overload with a thread count.</summary>
    public static void Quantize(GgmlType type, ReadOnlySpan<float> src /* (rows, cols) */, int rows, int cols, Span<byte> dst /* (rows, RowSize) */) =>
        Quantize(type, src, rows, cols, dst, threads: 1);

    /// <summary>
    /// Quantizes a (rows, cols) row-major matrix into rows·<see cref="RowSize"/> bytes, llama.cpp's
    /// reference quantizer for block types (quantize_row_*_ref; no importance matrix), round to nearest
    /// even for F16/BF16. Values for a block type must be finite: a NaN or infinity is rejected with its
    /// row and column (llama.cpp would write blocks that its own validation then refuses).
    /// <paramref name="threads"/> &gt; 1 splits the rows over that many threads; the bytes are the same.
    /// </summary>
    public static unsafe void Quantize(GgmlType type, ReadOnlySpan<float> src /* (rows, cols) */, int rows, int cols, Span<byte> dst /* (rows, RowSize) */, int threads)
    {
        int rowSize = CheckShapes(type, src.Length, rows, cols, dst.Length, "dst");
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        bool check = GgmlTypeInfo.BlockSize(type) > 1;
        fixed (float* s = src)
        fixed (byte* d = dst)
        {
            float* sp = s;
            byte* dp = d;
            bool finite = ForEachPiece(sp, rows, cols, Workers(rows, cols, threads), check, (first, end) =>
            {
                for (int r = first; r < end; r++)
                {
                    QuantizeRow(type, new ReadOnlySpan<float>(sp + (long)r * cols, cols), new Span<byte>(dp + (long)r * rowSize, rowSize));
                }
            });
            if (!finite)
            {
                RequireFinite(src, cols);
            }
        }
    }

    /// <summary>
    /// Quantizes as <see cref="Quantize(GgmlType, ReadOnlySpan{float}, int, int, Span{byte}, int)"/> but with
    /// an importance matrix row: <paramref name="importance"/> holds one non-negative weight per column (the
    /// mean squared activation that column meets, from an imatrix), and the block types that llama.cpp
    /// quantizes differently when given one (Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K) take llama.cpp's
    /// quantize_*_impl path, byte for byte. Q8_0, Q8_K and the float types ignore it, as llama.cpp does.
    /// An empty <paramref name="importance"/> is the reference path.
    /// </summary>
    public static unsafe void Quantize(GgmlType type, ReadOnlySpan<float> src /* (rows, cols) */, int rows, int cols, Span<byte> dst /* (rows, RowSize) */,
        int threads, ReadOnlySpan<float> importance /* (cols) or empty */)
    {
        if (importance.IsEmpty || !HasImportancePath(type))
        {
            Quantize(type, src, rows, cols, dst, threads);
            return;
        }
        int rowSize = CheckShapes(type, src.Length, rows, cols, dst.Length, "dst");
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        if (importance.Length != cols)
        {
            throw new ArgumentException($"The importance row holds {importance.Length} values but the matrix has {cols} columns; an imatrix entry must match the tensor's row length.", nameof(importance));
        }
        for (int i = 0; i < importance.Length; i++)
        {
            if (!float.IsFinite(importance[i]))
            {
                throw new ArgumentException($"Importance value {importance[i]} at column {i} is not finite; the imatrix is damaged.", nameof(importance));
            }
        }
        fixed (float* s = src)
        fixed (float* q = importance)
        fixed (byte* d = dst)
        {
            float* sp = s;
            float* qp = q;
            byte* dp = d;
            bool finite = ForEachPiece(sp, rows, cols, Workers(rows, cols, threads), check: true, (first, end) =>
            {
                var qrow = new ReadOnlySpan<float>(qp, cols);
                for (int r = first; r < end; r++)
                {
                    QuantizeRowImportance(type, new ReadOnlySpan<float>(sp + (long)r * cols, cols), qrow, new Span<byte>(dp + (long)r * rowSize, rowSize));
                }
            });
            if (!finite)
            {
                RequireFinite(src, cols);
            }
        }
    }

    /// <summary>True for the types whose quantizer uses an importance matrix (llama.cpp's quantize_*_impl).</summary>
    public static bool HasImportancePath(GgmlType type) => type is GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1
        or GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K;

    /// <summary>Dequantizes <paramref name="src"/> on one thread. See the overload with a thread count.</summary>
    public static void Dequantize(GgmlType type, ReadOnlySpan<byte> src /* (rows, RowSize) */, int rows, int cols, Span<float> dst /* (rows, cols) */) =>
        Dequantize(type, src, rows, cols, dst, threads: 1);

    /// <summary>
    /// Dequantizes rows·<see cref="RowSize"/> bytes into a (rows, cols) row-major matrix, bit for bit as
    /// llama.cpp's dequantize_row_* (to_float) does.
    /// </summary>
    public static unsafe void Dequantize(GgmlType type, ReadOnlySpan<byte> src /* (rows, RowSize) */, int rows, int cols, Span<float> dst /* (rows, cols) */, int threads)
    {
        int rowSize = CheckShapes(type, dst.Length, rows, cols, src.Length, "src");
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        int workers = Workers(rows, cols, threads);
        if (workers == 1)
        {
            for (int r = 0; r < rows; r++)
            {
                DequantizeRow(type, src.Slice(r * rowSize, rowSize), dst.Slice(r * cols, cols));
            }
            return;
        }
        fixed (byte* s = src)
        fixed (float* d = dst)
        {
            byte* sp = s;
            float* dp = d;
            Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, w =>
            {
                (int first, int end) = Range(rows, workers, w);
                for (int r = first; r < end; r++)
                {
                    DequantizeRow(type, new ReadOnlySpan<byte>(sp + (long)r * rowSize, rowSize), new Span<float>(dp + (long)r * cols, cols));
                }
            });
        }
    }

    /// <summary>One row (a whole number of blocks) into its bytes.</summary>
    internal static void QuantizeRow(GgmlType type, ReadOnlySpan<float> x /* (cols) */, Span<byte> y /* (RowSize) */)
    {
        switch (type)
        {
            case GgmlType.F32:
                for (int i = 0; i < x.Length; i++)
                {
                    BinaryPrimitives.WriteSingleLittleEndian(y.Slice(4 * i, 4), x[i]);
                }
                break;
            case GgmlType.F16:
                for (int i = 0; i < x.Length; i++)
                {
                    BinaryPrimitives.WriteUInt16LittleEndian(y.Slice(2 * i, 2), QuantMath.FloatToHalfBits(x[i]));
                }
                break;
            case GgmlType.BF16:
                for (int i = 0; i < x.Length; i++)
                {
                    BinaryPrimitives.WriteUInt16LittleEndian(y.Slice(2 * i, 2), FloatToBFloat16Bits(x[i]));
                }
                break;
            case GgmlType.Q8_0: Q8_0.QuantizeRow(x, y); break;
            case GgmlType.Q4_0: Q4_0.QuantizeRow(x, y); break;
            case GgmlType.Q4_1: Q4_1.QuantizeRow(x, y); break;
            case GgmlType.Q5_0: Q5_0.QuantizeRow(x, y); break;
            case GgmlType.Q5_1: Q5_1.QuantizeRow(x, y); break;
            case GgmlType.Q2_K: Q2_K.QuantizeRow(x, y); break;
            case GgmlType.Q3_K: Q3_K.QuantizeRow(x, y); break;
            case GgmlType.Q4_K: Q4_K.QuantizeRow(x, y); break;
            case GgmlType.Q5_K: Q5_K.QuantizeRow(x, y); break;
            case GgmlType.Q6_K: Q6_K.QuantizeRow(x, y); break;
            case GgmlType.Q8_K: Q8_K.QuantizeRow(x, y); break;
            default: throw Unsupported(type);
        }
    }

    /// <summary>One row into its bytes through the importance path of <paramref name="type"/>.</summary>
    internal static void QuantizeRowImportance(GgmlType type, ReadOnlySpan<float> x /* (cols) */, ReadOnlySpan<float> importance /* (cols) */, Span<byte> y /* (RowSize) */)
    {
        switch (type)
        {
            case GgmlType.Q4_0: Q4_0.QuantizeRowImportance(x, importance, y); break;
            case GgmlType.Q4_1: Q4_1.QuantizeRowImportance(x, importance, y); break;
            case GgmlType.Q5_0: Q5_0.QuantizeRowImportance(x, importance, y); break;
            case GgmlType.Q5_1: Q5_1.QuantizeRowImportance(x, importance, y); break;
            case GgmlType.Q2_K: Q2_K.QuantizeRowImportance(x, importance, y); break;
            case GgmlType.Q3_K: Q3_K.QuantizeRowImportance(x, importance, y); break;
            case GgmlType.Q4_K: Q4_K.QuantizeRowImportance(x, importance, y); break;
            case GgmlType.Q5_K: Q5_K.QuantizeRowImportance(x, importance, y); break;
            case GgmlType.Q6_K: Q6_K.QuantizeRowImportance(x, importance, y); break;
            default: QuantizeRow(type, x, y); break;
        }
    }

    /// <summary>One row's bytes back to floats.</summary>
    internal static void DequantizeRow(GgmlType type, ReadOnlySpan<byte> x /* (RowSize) */, Span<float> y /* (cols) */)
    {
        switch (type)
        {
            case GgmlType.F32:
                for (int i = 0; i < y.Length; i++)
                {
                    y[i] = BinaryPrimitives.ReadSingleLittleEndian(x.Slice(4 * i, 4));
                }
                break;
            case GgmlType.F16:
                for (int i = 0; i < y.Length; i++)
                {
                    y[i] = QuantMath.HalfBitsToFloat(BinaryPrimitives.ReadUInt16LittleEndian(x.Slice(2 * i, 2)));
                }
                break;
            case GgmlType.BF16:
                for (int i = 0; i < y.Length; i++)
                {
                    y[i] = BitConverter.UInt32BitsToSingle((uint)BinaryPrimitives.ReadUInt16LittleEndian(x.Slice(2 * i, 2)) << 16);
                }
                break;
            case GgmlType.Q8_0: Q8_0.DequantizeRow(x, y); break;
            case GgmlType.Q4_0: Q4_0.DequantizeRow(x, y); break;
            case GgmlType.Q4_1: Q4_1.DequantizeRow(x, y); break;
            case GgmlType.Q5_0: Q5_0.DequantizeRow(x, y); break;
            case GgmlType.Q5_1: Q5_1.DequantizeRow(x, y); break;
            case GgmlType.Q2_K: Q2_K.DequantizeRow(x, y); break;
            case GgmlType.Q3_K: Q3_K.DequantizeRow(x, y); break;
            case GgmlType.Q4_K: Q4_K.DequantizeRow(x, y); break;
            case GgmlType.Q5_K: Q5_K.DequantizeRow(x, y); break;
            case GgmlType.Q6_K: Q6_K.DequantizeRow(x, y); break;
            case GgmlType.Q8_K: Q8_K.DequantizeRow(x, y); break;
            default: throw Unsupported(type);
        }
    }

    /// <summary>
    /// ggml's FP32→BF16: the top 16 bits rounded to nearest even; a NaN keeps its top bits with the quiet
    /// bit forced on so it cannot round into an infinity.
    /// </summary>
    internal static ushort FloatToBFloat16Bits(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if ((bits & 0x7FFFFFFF) > 0x7F800000)
        {
            return (ushort)((bits >> 16) | 64);
        }
        return (ushort)((bits + (0x7FFF + ((bits >> 16) & 1))) >> 16);
    }

    private static int CheckShapes(GgmlType type, int floatCount, int rows, int cols, int byteCount, string byteName)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
        int rowSize = RowSize(type, cols);
        long values = (long)rows * cols;
        if (floatCount != values)
        {
            throw new ArgumentException($"{rows}×{cols} values were expected but the float span holds {floatCount}.");
        }
        long bytes = (long)rows * rowSize;
        if (byteCount != bytes)
        {
            throw new ArgumentException($"{rows} rows of {cols} {type} values take {bytes} bytes but {byteName} holds {byteCount}.", byteName);
        }
        return rowSize;
    }

    /// <summary>
    /// Runs <paramref name="body"/>(first, end) on every piece of rows (<see cref="Chunks"/>), on
    /// <paramref name="workers"/> threads that take pieces one at a time (inline when 1). With
    /// <paramref name="check"/>, a piece's values are first checked finite (while they are being brought into
    /// cache anyway), and a piece holding a NaN or infinity is skipped; returns false when one was, so that
    /// the caller can report the first such value (the output is then incomplete).
    /// </summary>
    private static unsafe bool ForEachPiece(float* src /* (rows, cols) */, int rows, int cols, int workers, bool check, Action<int, int> body)
    {
        int chunks = Chunks(rows, cols, workers);
        bool finite = true;
        void Piece(int c)
        {
            (int first, int end) = Range(rows, chunks, c);
            if (check && !AllFinite(new ReadOnlySpan<float>(src + (long)first * cols, (end - first) * cols)))
            {
                finite = false;
                return;
            }
            body(first, end);
        }
        if (workers == 1)
        {
            for (int c = 0; c < chunks && finite; c++)
            {
                Piece(c);
            }
        }
        else
        {
            Parallel.For(0, chunks, new ParallelOptions { MaxDegreeOfParallelism = workers }, Piece);
        }
        return finite;
    }

    /// <summary>True when no value is NaN or infinite: a float is finite unless all its exponent bits are set.</summary>
    private static bool AllFinite(ReadOnlySpan<float> values)
    {
        ReadOnlySpan<int> bits = MemoryMarshal.Cast<float, int>(values);
        int n = bits.Length - bits.Length % Vector256<int>.Count;
        Vector256<int> exponent = Vector256.Create(0x7F800000);
        Vector256<int> any = Vector256<int>.Zero;
        for (int i = 0; i < n; i += Vector256<int>.Count)
        {
            any |= Vector256.Equals(Vector256.Create(bits.Slice(i, Vector256<int>.Count)) & exponent, exponent);
        }
        if (any != Vector256<int>.Zero)
        {
            return false;
        }
        for (int i = n; i < bits.Length; i++)
        {
            if ((bits[i] & 0x7F800000) == 0x7F800000)
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>Throws for the first NaN or infinity in <paramref name="src"/>, naming its row and column.</summary>
    private static void RequireFinite(ReadOnlySpan<float> src, int cols)
    {
        for (int i = 0; i < src.Length; i++)
        {
            if (!float.IsFinite(src[i]))
            {
                throw new ArgumentException(
                    $"Value {src[i]} at row {i / cols}, column {i % cols} is not finite; only finite weights can be quantized.",
                    nameof(src));
            }
        }
    }

    private static int Workers(int rows, int cols, int threads)
    {
        long perThread = Math.Max(1, (long)rows * cols / MinValuesPerThread);
        return (int)Math.Max(1, Math.Min(Math.Min(threads, rows), perThread));
    }

    /// <summary>
    /// Pieces of about <see cref="ValuesPerChunk"/> values (whole rows, at least one per worker) that the
    /// workers take one at a time, as llama.cpp's quantizer hands out chunks: a worker slowed by other load on
    /// its core then does fewer pieces instead of holding up the tensor with its fixed share.
    /// </summary>
    private static int Chunks(int rows, int cols, int workers) =>
        (int)Math.Min(rows, Math.Max(workers, ((long)rows * cols + ValuesPerChunk - 1) / ValuesPerChunk));

    /// <summary>Rows [first, end) of piece (or worker) <paramref name="w"/> of <paramref name="workers"/>.</summary>
    private static (int First, int End) Range(int rows, int workers, int w) =>
        ((int)((long)rows * w / workers), (int)((long)rows * (w + 1) / workers));

    private static void RequireSupported(GgmlType type)
    {
        if (!IsSupported(type))
        {
            throw Unsupported(type);
        }
    }

    private static ArgumentException Unsupported(GgmlType type) =>
        new($"{type} is not a type this quantizer handles; supported: {string.Join(", ", SupportedTypes)}.", nameof(type));
}
