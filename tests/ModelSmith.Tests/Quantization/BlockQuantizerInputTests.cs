using ModelSmith.Formats;
using ModelSmith.Quantization;

namespace ModelSmith.Tests.Quantization;

public class BlockQuantizerInputTests
{
    [Fact]
    public void A_row_length_that_is_not_whole_blocks_is_refused_with_the_block_size()
    {
        var e = Assert.Throws<ArgumentException>(() => BlockQuantizer.Quantize(GgmlType.Q4_K, new float[2 * 172], 2, 172, new byte[1000]));
        Assert.Contains("172", e.Message, StringComparison.Ordinal);
        Assert.Contains("multiple of 256", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<ArgumentException>(() => BlockQuantizer.RowSize(GgmlType.Q8_0, 48));
        Assert.Contains("multiple of 32", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_non_finite_weight_is_refused_with_its_row_and_column()
    {
        var x = new float[3 * 64];
        x[64 + 5] = float.NaN;
        var e = Assert.Throws<ArgumentException>(() => BlockQuantizer.Quantize(GgmlType.Q8_0, x, 3, 64, new byte[3 * 68]));
        Assert.Contains("row 1, column 5", e.Message, StringComparison.Ordinal);
        x[64 + 5] = float.NegativeInfinity;
        e = Assert.Throws<ArgumentException>(() => BlockQuantizer.Quantize(GgmlType.Q6_K, new float[256].Concat([float.PositiveInfinity]).Concat(new float[255]).ToArray(), 2, 256, new byte[420]));
        Assert.Contains("row 1, column 0", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void On_several_threads_the_first_non_finite_weight_is_the_one_reported()
    {
        // 1024 rows of 256: many pieces of rows over the workers; the later bad value sits in an earlier-finishing piece as often as not.
        const int rows = 1024;
        const int cols = 256;
        var x = new float[rows * cols];
        x[700 * cols + 3] = float.PositiveInfinity;
        x[900 * cols + 9] = float.NaN;
        foreach (GgmlType type in new[] { GgmlType.Q8_0, GgmlType.Q4_K })
        {
            var e = Assert.Throws<ArgumentException>(() => BlockQuantizer.Quantize(type, x, rows, cols, new byte[rows * BlockQuantizer.RowSize(type, cols)], threads: 4));
            Assert.Contains("row 700, column 3", e.Message, StringComparison.Ordinal);
            e = Assert.Throws<ArgumentException>(() => BlockQuantizer.Quantize(type, x, rows, cols, new byte[rows * BlockQuantizer.RowSize(type, cols)], threads: 4, new float[cols]));
            Assert.Contains("row 700, column 3", e.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Buffers_of_the_wrong_size_are_refused_naming_the_expected_size()
    {
        var e = Assert.Throws<ArgumentException>(() => BlockQuantizer.Quantize(GgmlType.Q4_0, new float[64], 2, 32, new byte[35]));
        Assert.Contains("36 bytes", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<ArgumentException>(() => BlockQuantizer.Quantize(GgmlType.Q4_0, new float[63], 2, 32, new byte[36]));
        Assert.Contains("holds 63", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<ArgumentException>(() => BlockQuantizer.Dequantize(GgmlType.Q6_K, new byte[209], 1, 256, new float[256]));
        Assert.Contains("210 bytes", e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => BlockQuantizer.Quantize(GgmlType.IQ4_XS, new float[256], 1, 256, new byte[136]));
        Assert.Throws<ArgumentOutOfRangeException>(() => BlockQuantizer.Quantize(GgmlType.Q8_0, new float[32], 1, 32, new byte[34], threads: 0));
    }

    [Fact]
    public void An_empty_matrix_is_a_no_op()
    {
        BlockQuantizer.Quantize(GgmlType.Q4_K, [], 0, 256, []);
        BlockQuantizer.Dequantize(GgmlType.Q4_K, [], 0, 256, []);
    }

    [Fact]
    public void Plain_float_types_round_trip_as_ggml_stores_them()
    {
        float[] x = [1f, -2.5f, 1e-8f, 65504f, 70000f, 0.1f, float.NaN, -0f];
        var bytes = new byte[x.Length * 4];
        var y = new float[x.Length];

        BlockQuantizer.Quantize(GgmlType.F32, x, 1, x.Length, bytes);
        BlockQuantizer.Dequantize(GgmlType.F32, bytes, 1, x.Length, y);
        Assert.Equal(x, y);

        BlockQuantizer.Quantize(GgmlType.F16, x, 1, x.Length, bytes.AsSpan(0, 2 * x.Length));
        BlockQuantizer.Dequantize(GgmlType.F16, bytes.AsSpan(0, 2 * x.Length), 1, x.Length, y);
        Assert.Equal([1f, -2.5f, (float)(Half)1e-8f, 65504f, float.PositiveInfinity, (float)(Half)0.1f, float.NaN, -0f], y);

        BlockQuantizer.Quantize(GgmlType.BF16, x, 1, x.Length, bytes.AsSpan(0, 2 * x.Length));
        BlockQuantizer.Dequantize(GgmlType.BF16, bytes.AsSpan(0, 2 * x.Length), 1, x.Length, y);
        Assert.Equal(1f, y[0]);
        Assert.Equal(-2.5f, y[1]);
        Assert.Equal(70144f, y[4]);          // 70000 rounds to the nearest of 69888 and 70144 in BF16's 8-bit mantissa
        Assert.Equal(0.10009765625f, y[5]);
        Assert.True(float.IsNaN(y[6]));
    }
}
