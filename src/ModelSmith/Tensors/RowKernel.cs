using System.Runtime.InteropServices;
using ModelSmith.Formats;
using ModelSmith.Quantization.Kernels;

namespace ModelSmith.Tensors;

/// <summary>
/// What the matmul needs to know about one ggml storage type: how to turn a run of stored elements into
/// floats, and back. One instance per type, looked up with <see cref="For"/>.
/// </summary>
/// <remarks>
/// The matmul converts a block of weight rows to float once (into per-thread scratch) and then runs the
/// float micro-kernels over it, so every type gets the blocked GEMM and the threaded GEMV without its own
/// dot kernel. A block-quantized type is added by subclassing this with its dequantizer and reference
/// quantizer and adding it to <see cref="For"/>; a type whose dot product is better done on the packed
/// data (e.g. integer dot products against quantized activations) can override <see cref="DotRows"/> and
/// set <see cref="HasDirectDot"/>, which the matmul then uses for decode (one token).
/// </remarks>
internal abstract class RowKernel
{
    public abstract GgmlType Type { get; }

    /// <summary>Elements per block (1 for F32/F16/BF16); row lengths must be a multiple of it.</summary>
    public virtual int BlockSize => GgmlTypeInfo.BlockSize(Type);

    /// <summary>Bytes a row of <paramref name="cols"/> elements takes.</summary>
    public long RowBytes(int cols) => GgmlTypeInfo.ByteCount(Type, cols);

    /// <summary>
    /// Converts stored elements to float. src: the bytes of N elements (whole blocks), dst: (N).
    /// Rows are contiguous, so several rows convert in one call.
    /// </summary>
    public abstract void ToSingle(ReadOnlySpan<byte> src, Span<float> dst);

    /// <summary>Stores floats in this type (rounding or quantizing as ggml does). src: (N), dst: the bytes of N elements.</summary>
    public abstract void FromSingle(ReadOnlySpan<float> src, Span<byte> dst);

    /// <summary>True when <see cref="DotRows"/> is faster than converting rows and using the float kernels.</summary>
    public virtual bool HasDirectDot => false;

    /// <summary>
    /// y[i] = x · row i, for the rows stored back to back in <paramref name="rows"/>.
    /// x: (Cols), rows: (n, RowBytes(Cols)) bytes, y: (n). Only called when <see cref="HasDirectDot"/>.
    /// </summary>
    public virtual void DotRows(ReadOnlySpan<float> x, ReadOnlySpan<byte> rows, int cols, Span<float> y)
        => throw new NotSupportedException($"{Type} has no direct dot kernel; the matmul converts its rows to float instead.");

    /// <summary>The kernel for <paramref name="type"/>, or a clear error if ModelSmith cannot compute with it yet.</summary>
    public static RowKernel For(GgmlType type) => type switch
    {
        GgmlType.F32 => F32RowKernel.Instance,
        GgmlType.F16 => F16RowKernel.Instance,
        GgmlType.BF16 => BF16RowKernel.Instance,
        _ when QuantizedRowKernel.Supports(type) => QuantizedRowKernel.Of(type),
        _ => throw new NotSupportedException($"Tensors stored as {type} cannot be used in a matmul yet (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)."),
    };

    /// <summary>True when <see cref="For"/> has a kernel for <paramref name="type"/>.</summary>
    public static bool IsSupported(GgmlType type) => type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 || QuantizedRowKernel.Supports(type);
}

internal sealed class F32RowKernel : RowKernel
{
    public static readonly F32RowKernel Instance = new();

    public override GgmlType Type => GgmlType.F32;

    public override void ToSingle(ReadOnlySpan<byte> src, Span<float> dst) => MemoryMarshal.Cast<byte, float>(src).CopyTo(dst);

    public override void FromSingle(ReadOnlySpan<float> src, Span<byte> dst) => MemoryMarshal.AsBytes(src).CopyTo(dst);
}

internal sealed class F16RowKernel : RowKernel
{
    public static readonly F16RowKernel Instance = new();

    public override GgmlType Type => GgmlType.F16;

    public override void ToSingle(ReadOnlySpan<byte> src, Span<float> dst) => RowConvert.HalfToSingle(MemoryMarshal.Cast<byte, ushort>(src), dst);

    public override void FromSingle(ReadOnlySpan<float> src, Span<byte> dst) => RowConvert.SingleToHalf(src, MemoryMarshal.Cast<byte, ushort>(dst));
}

internal sealed class BF16RowKernel : RowKernel
{
    public static readonly BF16RowKernel Instance = new();

    public override GgmlType Type => GgmlType.BF16;

    public override void ToSingle(ReadOnlySpan<byte> src, Span<float> dst) => RowConvert.BFloat16ToSingle(MemoryMarshal.Cast<byte, ushort>(src), dst);

    public override void FromSingle(ReadOnlySpan<float> src, Span<byte> dst) => RowConvert.SingleToBFloat16(src, MemoryMarshal.Cast<byte, ushort>(dst));
}
