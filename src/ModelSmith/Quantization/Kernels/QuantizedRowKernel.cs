using ModelSmith.Formats;
using ModelSmith.Tensors;

namespace ModelSmith.Quantization.Kernels;

/// <summary>
/// The <see cref="RowKernel"/> of a block-quantized type, so a <see cref="WeightMatrix"/> can hold it:
/// rows convert to float with ggml's dequantize_row_* (embedding lookups) and from float with its reference
/// quantizer. Matmuls on these types go to <see cref="QuantizedMatMul"/>, which multiplies the blocks
/// directly.
/// </summary>
internal sealed class QuantizedRowKernel : RowKernel
{
    private static readonly QuantizedRowKernel[] s_kernels =
    [
        new(GgmlType.Q8_0), new(GgmlType.Q4_0), new(GgmlType.Q4_1), new(GgmlType.Q5_0), new(GgmlType.Q5_1),
        new(GgmlType.Q2_K), new(GgmlType.Q3_K), new(GgmlType.Q4_K), new(GgmlType.Q5_K), new(GgmlType.Q6_K),
    ];

    private QuantizedRowKernel(GgmlType type) => Type = type;

    public override GgmlType Type { get; }

    /// <summary>True for the block types with a quantized matmul.</summary>
    public static bool Supports(GgmlType type) => QuantKernel.Supports(type);

    /// <summary>The kernel of <paramref name="type"/>; <see cref="Supports"/> must hold.</summary>
    public static QuantizedRowKernel Of(GgmlType type)
    {
        foreach (QuantizedRowKernel k in s_kernels)
        {
            if (k.Type == type) return k;
        }
        throw new NotSupportedException($"{type} has no quantized row kernel.");
    }

    /// <summary>dequantize_row_* of whole blocks. src: the bytes of N elements, dst: (N).</summary>
    public override void ToSingle(ReadOnlySpan<byte> src, Span<float> dst) => BlockQuantizer.DequantizeRow(Type, src, dst);

    /// <summary>quantize_row_*_ref of whole blocks. src: (N), finite, dst: the bytes of N elements.</summary>
    public override void FromSingle(ReadOnlySpan<float> src, Span<byte> dst) => BlockQuantizer.QuantizeRow(Type, src, dst);
}
