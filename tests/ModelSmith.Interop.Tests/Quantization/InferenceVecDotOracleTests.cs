using ModelSmith.Formats;
using ModelSmith.Quantization;
using ModelSmith.Quantization.Kernels;
using ModelSmith.Tensors;
using Xunit.Abstractions;

namespace ModelSmith.Interop.Tests.Quantization;

/// <summary>
/// Our quantized matmul against the vec_dot kernels of the libggml-cpu build llama.cpp runs on this CPU:
/// the same activation quants bit for bit, and each output equal to ggml's within the float-order
/// difference of its SIMD kernels (ours follow the generic ones).
/// </summary>
[Trait("Category", "Interop")]
public sealed class InferenceVecDotOracleTests(ITestOutputHelper output)
{
    public static TheoryData<GgmlType> Types => new()
    {
        GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1,
        GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K,
    };

    [Theory]
    [MemberData(nameof(Types))]
    public void Quantized_matmul_matches_ggml_cpu_vec_dot(GgmlType type)
    {
        const int rows = 16, cols = 1024;
        var rng = new Random(42);
        var values = new float[rows * cols];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(rng.NextDouble() * 2 - 1) * 0.1f;
        var x = new float[cols];
        for (int i = 0; i < cols; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        var bytes = new byte[rows * BlockQuantizer.RowSize(type, cols)];
        BlockQuantizer.Quantize(type, values, rows, cols, bytes);

        Assert.Equal(VecDotReference.VecDotType(type), InferenceGgmlCpu.VecDotType(type));
        byte[] theirActivations = InferenceGgmlCpu.QuantizeActivations(type, x);
        byte[] ourActivations = VecDotReference.QuantizeActivations(VecDotReference.VecDotType(type), x);
        Assert.True(theirActivations.AsSpan().SequenceEqual(ourActivations), $"{type}: activations quantized differently from ggml's from_float");

        var y = new float[rows];
        using (var pool = new ComputePool(2))
            QuantizedMatMul.Forward(x, new WeightMatrix(type, rows, cols, bytes), [], 1, y, pool);
        int rowBytes = bytes.Length / rows;
        double worst = 0;
        for (int r = 0; r < rows; r++)
        {
            float theirs = InferenceGgmlCpu.Dot(type, bytes.AsSpan(r * rowBytes, rowBytes), theirActivations, cols);
            worst = Math.Max(worst, Math.Abs(theirs - y[r]) / Math.Max(1e-30, Math.Abs(theirs)));
            Assert.True(Math.Abs(theirs - y[r]) <= 1e-4 * Math.Abs(theirs) + 1e-6, $"{type} row {r}: ours {y[r]:R}, ggml {theirs:R}");
        }
        output.WriteLine($"{type}: worst relative difference from ggml's vec_dot {worst:E2}");
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void Quantized_matmul_matches_ggml_mul_mat(GgmlType type)
    {
        foreach ((int rows, int tokens) in new[] { (128, 1), (256, 1), (768, 1), (256, 7), (768, 64) })
        {
            const int cols = 768;
            var rng = new Random(rows + tokens);
            var values = new float[rows * cols];
            for (int i = 0; i < values.Length; i++) values[i] = (float)(rng.NextDouble() * 2 - 1) * 0.1f;
            var x = new float[tokens * cols];
            for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
            var bytes = new byte[rows * BlockQuantizer.RowSize(type, cols)];
            BlockQuantizer.Quantize(type, values, rows, cols, bytes);
            float[] theirs = InferenceGgmlCpu.MulMat(type, bytes, rows, cols, x, tokens, threads: 1);
            var y = new float[rows * tokens];
            using (var pool = new ComputePool(2))
                QuantizedMatMul.Forward(x, new WeightMatrix(type, rows, cols, bytes), [], tokens, y, pool);
            double worst = 0, scale = 0;
            for (int i = 0; i < y.Length; i++)
            {
                worst = Math.Max(worst, Math.Abs(theirs[i] - y[i]));
                scale = Math.Max(scale, Math.Abs(theirs[i]));
            }
            output.WriteLine($"{type} rows={rows} tokens={tokens}: max |ours - ggml_mul_mat| / max |y| = {worst / scale:E2}");
            Assert.True(worst <= 1e-5 * scale, $"{type} rows={rows} tokens={tokens}: max |ours - ggml| {worst:E2} of max |y| {scale:E2}");
        }
    }
}
