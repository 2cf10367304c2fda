using System.Buffers.Binary;

namespace ModelSmith.Quantization;

/// <summary>
/// Q8_K: llama.cpp's activation format for K-quant dot products. Super-blocks of 256 values as signed
/// 8-bit integers with an F32 scale and the sums of each 16 quants (so a dot product can apply the
/// weights' mins without touching the quants). 9.125 bits per value.
///
/// Block layout (292 bytes, ggml-common.h block_q8_K):
/// <code>
///   offset  size  field
///   0       4     d      F32 scale; value j = qs[j]·d
///   4       256   qs     int8 quants
///   260     32    bsums  16 little-endian int16: bsums[j] = Σ qs[16j .. 16j+15]
/// </code>
/// </summary>
internal static class Q8_K
{
    public const int BlockSize = QuantMath.QK_K;
    public const int TypeSize = 292;

    private const int QsOffset = 4;
    private const int BsumsOffset = 260;

    /// <summary>
    /// quantize_row_q8_K_ref: iscale = −127/max (max = the signed value of largest magnitude),
    /// q = min(127, round(iscale·x)), d = 1/iscale. An all-zero super-block gets d = 0 and zero quants;
    /// ggml leaves its bsums unwritten, here they are zero.
    /// </summary>
    public static void QuantizeRow(ReadOnlySpan<float> x /* (k), k % 256 == 0 */, Span<byte> y /* (k/256·292) */)
    {
        int nb = x.Length / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            ReadOnlySpan<float> xb = x.Slice(i * BlockSize, BlockSize);
            Span<byte> block = y.Slice(i * TypeSize, TypeSize);
            float max = QuantMath.MaxMagnitude(xb, out float amax);
            if (amax == 0)
            {
                block.Clear();
                continue;
            }
            float iscale = -127f / max;
            Span<byte> qs = block.Slice(QsOffset, BlockSize);
            for (int j = 0; j < BlockSize; j++)
            {
                qs[j] = (byte)(sbyte)Math.Min(127, QuantMath.NearestInt(iscale * xb[j]));
            }
            for (int j = 0; j < 16; j++)
            {
                int sum = 0;
                for (int ii = 0; ii < 16; ii++)
                {
                    sum += (sbyte)qs[16 * j + ii];
                }
                BinaryPrimitives.WriteInt16LittleEndian(block.Slice(BsumsOffset + 2 * j, 2), (short)sum);
            }
            BinaryPrimitives.WriteSingleLittleEndian(block[..4], 1 / iscale);
        }
    }

    /// <summary>dequantize_row_q8_K: y = d·q.</summary>
    public static void DequantizeRow(ReadOnlySpan<byte> x /* (k/256·292) */, Span<float> y /* (k) */)
    {
        int nb = y.Length / BlockSize;
        for (int i = 0; i < nb; i++)
        {
            ReadOnlySpan<byte> block = x.Slice(i * TypeSize, TypeSize);
            Span<float> yb = y.Slice(i * BlockSize, BlockSize);
            float d = BinaryPrimitives.ReadSingleLittleEndian(block[..4]);
            for (int j = 0; j < BlockSize; j++)
            {
                yb[j] = d * (sbyte)block[QsOffset + j];
            }
        }
    }
}
