using ModelSmith.Tensors;
using static ModelSmith.Tests.Tensors.KernelTestData;

namespace ModelSmith.Tests.Tensors;

[Trait("Category", "Kernels")]
public class SoftmaxTests
{
    [Fact]
    public void Softmax_matches_reference_for_every_length()
    {
        foreach (int n in Lengths)
        {
            float[] x = Uniform(n, n, -30f, 30f);
            var expected = new float[n];
            var actual = new float[n];
            Softmax.Reference.Forward(x, expected, n);
            Softmax.Forward(x, actual);
            AssertClose(expected, actual, 1e-6f, 1e-12f, $"softmax n={n}");
            if (n > 0) Assert.Equal(1.0, actual.Sum(v => (double)v), 5);
        }
    }

    [Fact]
    public void Softmax_of_a_prefix_zeroes_the_rest()
    {
        foreach (int length in new[] { 0, 1, 5, 16, 40, 63, 64 })
        {
            float[] x = Uniform(64, length);
            var expected = new float[64];
            Softmax.Reference.Forward(x, expected, length);
            Softmax.Forward(x, x, length);
            AssertClose(expected, x, 1e-6f, 1e-12f, $"prefix {length}");
            for (int i = length; i < 64; i++) Assert.Equal(0f, x[i]);
        }
    }

    [Fact]
    public void Masked_entries_get_exactly_zero_and_large_logits_do_not_overflow()
    {
        float[] x = [1000f, float.NegativeInfinity, 999f, float.NegativeInfinity, 1001f];
        var y = new float[5];
        Softmax.Forward(x, y);
        Assert.Equal(0f, y[1]);
        Assert.Equal(0f, y[3]);
        Assert.True(y[4] > y[0] && y[0] > y[2]);
        Assert.Equal(1.0, y.Sum(v => (double)v), 6);
    }

    [Fact]
    public void Softmax_rejects_a_prefix_longer_than_the_row()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Softmax.Forward(new float[4], new float[4], 5));
    }
}
