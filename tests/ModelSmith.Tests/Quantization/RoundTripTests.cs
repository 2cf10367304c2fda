using ModelSmith.Formats;
using ModelSmith.Quantization;
using Xunit.Abstractions;

namespace ModelSmith.Tests.Quantization;

public class RoundTripTests(ITestOutputHelper output)
{
    public static TheoryData<GgmlType> BlockTypes => new(
        GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1,
        GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.Q8_K);

    /// <summary>
    /// Upper bounds on the RMS reconstruction error of (near-)normal weights relative to their RMS, about
    /// 25% above what llama.cpp's reference quantizers achieve (the measured values are in the test output).
    /// </summary>
    public static TheoryData<GgmlType, double> ErrorBounds => new()
    {
        { GgmlType.Q8_0, 0.0065 },
        { GgmlType.Q4_0, 0.10 },
        { GgmlType.Q4_1, 0.092 },
        { GgmlType.Q5_0, 0.05 },
        { GgmlType.Q5_1, 0.045 },
        { GgmlType.Q2_K, 0.35 },
        { GgmlType.Q3_K, 0.18 },
        { GgmlType.Q4_K, 0.085 },
        { GgmlType.Q5_K, 0.043 },
        { GgmlType.Q6_K, 0.021 },
        { GgmlType.Q8_K, 0.008 },
    };

    [Theory]
    [MemberData(nameof(ErrorBounds))]
    public void Dequantized_normal_weights_stay_within_the_type_error_bound(GgmlType type, double bound)
    {
        const int rows = 16;
        const int cols = 1024;
        float[] x = new TestWeights(7).Normals(rows, cols);
        float[] y = RoundTrip(type, x, rows, cols);
        double relative = Rms(x, y) / Rms(x, new float[x.Length]);
        output.WriteLine($"{type}: relative RMS error {relative:F5} (bound {bound})");
        Assert.True(relative < bound, $"{type}: relative RMS error {relative} exceeds {bound}");
    }

    [Fact]
    public void More_bits_give_less_error()
    {
        const int rows = 8;
        const int cols = 1024;
        float[] x = new TestWeights(8).Normals(rows, cols);
        GgmlType[] byBits = [GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.Q8_0];
        double previous = double.MaxValue;
        foreach (GgmlType type in byBits)
        {
            double error = Rms(x, RoundTrip(type, x, rows, cols));
            Assert.True(error < previous, $"{type} ({BlockQuantizer.BitsPerWeight(type)} bits) is not more accurate than the type before it");
            previous = error;
        }
        // At the same 4.5 and 5.5 bits, the K-quants' finer scales beat the legacy formats.
        Assert.True(Rms(x, RoundTrip(GgmlType.Q4_K, x, rows, cols)) < Rms(x, RoundTrip(GgmlType.Q4_0, x, rows, cols)));
        Assert.True(Rms(x, RoundTrip(GgmlType.Q5_K, x, rows, cols)) < Rms(x, RoundTrip(GgmlType.Q5_0, x, rows, cols)));
    }

    [Theory]
    [MemberData(nameof(BlockTypes))]
    public void All_zero_rows_dequantize_to_exact_zeros(GgmlType type)
    {
        int cols = 2 * GgmlTypeInfo.BlockSize(type);
        float[] y = RoundTrip(type, new float[3 * cols], 3, cols);
        foreach (float v in y)
        {
            Assert.Equal(0f, v);
        }
    }

    [Theory]
    [MemberData(nameof(BlockTypes))]
    public void Negative_zero_and_values_below_the_zero_threshold_behave_as_zero_blocks(GgmlType type)
    {
        int cols = GgmlTypeInfo.BlockSize(type);
        float[] x = new float[cols];
        for (int i = 0; i < cols; i++)
        {
            x[i] = i % 2 == 0 ? -0f : 1e-38f * (i % 5);
        }
        float[] y = RoundTrip(type, x, 1, cols);
        foreach (float v in y)
        {
            Assert.True(MathF.Abs(v) <= 1e-37f, $"{type}: {v} from a block of (almost) zeros");
        }
    }

    [Theory]
    [MemberData(nameof(BlockTypes))]
    public void A_single_outlier_keeps_its_value_and_the_rest_stay_bounded(GgmlType type)
    {
        int cols = 4 * GgmlTypeInfo.BlockSize(type);
        float[] x = new TestWeights(9).Normals(1, cols);
        for (int i = 0; i < cols; i++)
        {
            x[i] *= 0.01f;
        }
        const int at = 37;
        x[at] = 50f;
        float[] y = RoundTrip(type, x, 1, cols);
        // The largest magnitude sets the scale, so it is represented to within a few percent at worst
        // (exactly up to F16 rounding for the symmetric formats)...
        Assert.True(MathF.Abs(y[at] - 50f) < 50f * 0.05f, $"{type}: outlier 50 came back as {y[at]}");
        // ...and the small weights of its block lose at most one quantization step of that scale.
        int block = GgmlTypeInfo.BlockSize(type);
        double step = 50.0 * 2 / Levels(type);
        for (int i = 0; i < cols; i++)
        {
            double limit = i / block == at / block ? step : 0.01;
            Assert.True(Math.Abs(y[i] - x[i]) <= limit, $"{type}: value {i} = {x[i]} came back as {y[i]} (limit {limit})");
        }
    }

    [Fact]
    public void Symmetric_formats_reproduce_the_largest_magnitude_up_to_f16_rounding()
    {
        float[] x = new TestWeights(10).Normals(4, 256);
        foreach (GgmlType type in new[] { GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q5_0 })
        {
            float[] y = RoundTrip(type, x, 4, 256);
            for (int b = 0; b < x.Length / 32; b++)
            {
                int arg = b * 32;
                for (int j = b * 32; j < b * 32 + 32; j++)
                {
                    if (MathF.Abs(x[j]) > MathF.Abs(x[arg])) arg = j;
                }
                Assert.True(MathF.Abs(y[arg] - x[arg]) <= MathF.Abs(x[arg]) / 2048f, $"{type}: block {b} max {x[arg]} came back as {y[arg]}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(BlockTypes))]
    public void Constant_blocks_come_back_close(GgmlType type)
    {
        int cols = GgmlTypeInfo.BlockSize(type);
        foreach (float c in new[] { 0.75f, -0.75f, 0.05f })
        {
            float[] x = Enumerable.Repeat(c, cols).ToArray();
            float[] y = RoundTrip(type, x, 1, cols);
            foreach (float v in y)
            {
                Assert.True(MathF.Abs(v - c) <= MathF.Abs(c) * 0.02f, $"{type}: constant {c} came back as {v}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(BlockTypes))]
    public void Requantizing_dequantized_weights_changes_little(GgmlType type)
    {
        const int rows = 4;
        const int cols = 512;
        float[] x = new TestWeights(11).Normals(rows, cols);
        float[] y = RoundTrip(type, x, rows, cols);
        float[] z = RoundTrip(type, y, rows, cols);
        // A second pass over already-quantized values moves them by much less than the first pass did
        // (the K-quant scale searches may settle on a slightly different scale the second time).
        output.WriteLine($"{type}: second pass moved values by {Rms(y, z) / Rms(x, y):F3} of the first pass error");
        Assert.True(Rms(y, z) <= 0.35 * Rms(x, y), $"{type}: requantizing moved values by {Rms(y, z)}, first pass error {Rms(x, y)}");
    }

    [Theory]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q4_1)]
    [InlineData(GgmlType.Q5_0)]
    [InlineData(GgmlType.Q5_1)]
    public void Requantizing_dequantized_weights_reproduces_the_bytes_of_a_max_scaled_format(GgmlType type)
    {
        // These formats derive the scale from the block's extreme values, which dequantize to the extreme
        // levels, so the same F16 scale and the same levels come back. (Q8_K keeps its scale in F32, where
        // 1/(−127/max) can land one ulp away the second time.)
        const int rows = 4;
        const int cols = 512;
        float[] x = new TestWeights(12).Normals(rows, cols);
        var first = new byte[rows * BlockQuantizer.RowSize(type, cols)];
        BlockQuantizer.Quantize(type, x, rows, cols, first);
        var y = new float[x.Length];
        BlockQuantizer.Dequantize(type, first, rows, cols, y);
        var second = new byte[first.Length];
        BlockQuantizer.Quantize(type, y, rows, cols, second);
        Assert.Equal(first, second);
    }

    private static float[] RoundTrip(GgmlType type, float[] x, int rows, int cols)
    {
        var bytes = new byte[rows * BlockQuantizer.RowSize(type, cols)];
        BlockQuantizer.Quantize(type, x, rows, cols, bytes);
        var y = new float[x.Length];
        BlockQuantizer.Dequantize(type, bytes, rows, cols, y);
        return y;
    }

    private static double Rms(float[] a, float[] b)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++)
        {
            sum += (double)(a[i] - b[i]) * (a[i] - b[i]);
        }
        return Math.Sqrt(sum / a.Length);
    }

    /// <summary>Quantization levels across a block's range (for the step size of an outlier-dominated block).</summary>
    private static int Levels(GgmlType type) => type switch
    {
        GgmlType.Q2_K => 3,
        GgmlType.Q3_K => 7,
        GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q4_K => 15,
        GgmlType.Q5_0 or GgmlType.Q5_1 or GgmlType.Q5_K => 31,
        GgmlType.Q6_K => 63,
        _ => 254,
    };
}
