using ModelSmith.Training;

namespace ModelSmith.Tests.Training;

[Trait("Category", "Kernels")]
public unsafe class RowMathTests
{
    [Fact]
    public void Exp_is_within_two_ulp_over_its_range_and_the_same_at_every_width()
    {
        var x = new List<float>();
        for (float v = -87f; v <= 88f; v += 0.01234f) x.Add(v);
        x.AddRange([0f, -0f, 1e-30f, -1e-30f, 0.5f, -0.5f, 88f, -87.33f]);
        float[] xs = x.ToArray();
        var y = new float[xs.Length];
        fixed (float* px = xs, py = y) RowMath.SumExp(px, xs.Length, 0f, 1f, py);
        for (int i = 0; i < xs.Length; i++)
        {
            double exact = Math.Exp(xs[i]);
            double ulp = (double)MathF.BitIncrement((float)exact) - (float)exact;
            Assert.True(Math.Abs(y[i] - exact) <= 2 * ulp, $"exp({xs[i]}) = {y[i]}, exact {exact}");
            Assert.Equal(F1.Exp(xs[i]), y[i]); // the scalar tail computes what a vector lane computes
        }
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(17, 40)]
    [InlineData(100, 100)]
    public void Softmax_of_a_prefix_sums_to_one_and_zeroes_the_rest(int length, int n)
    {
        var rng = new Random(length);
        var row = new float[n];
        for (int i = 0; i < n; i++) row[i] = (float)(rng.NextDouble() * 20 - 10);
        float[] x = (float[])row.Clone();
        fixed (float* p = row) RowMath.SoftmaxPrefix(p, length, n, 0.7f);
        double max = double.NegativeInfinity, sum = 0;
        for (int i = 0; i < length; i++) max = Math.Max(max, x[i] * 0.7);
        for (int i = 0; i < length; i++) sum += Math.Exp(x[i] * 0.7 - max);
        for (int i = 0; i < length; i++) Assert.Equal(Math.Exp(x[i] * 0.7 - max) / sum, row[i], 1e-6);
        for (int i = length; i < n; i++) Assert.Equal(0f, row[i]);
    }
}
