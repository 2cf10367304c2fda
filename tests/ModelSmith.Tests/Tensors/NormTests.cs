using ModelSmith.Tensors;
using static ModelSmith.Tests.Tensors.KernelTestData;

namespace ModelSmith.Tests.Tensors;

[Trait("Category", "Kernels")]
public class NormTests
{
    [Fact]
    public void Rms_norm_matches_reference_for_every_length()
    {
        foreach (int n in Lengths)
        {
            float[] x = Uniform(n, n, -3f, 3f), w = Uniform(n, n + 1);
            var expected = new float[n];
            var actual = new float[n];
            RmsNorm.Reference.Forward(x, w, 1e-5f, expected);
            RmsNorm.Forward(x, w, 1e-5f, actual);
            AssertClose(expected, actual, 2.5e-7f, 0, $"rms norm n={n}");

            RmsNorm.Reference.Forward(x, [], 1e-6f, expected);
            RmsNorm.Forward(x, [], 1e-6f, x);
            AssertClose(expected, x, 2.5e-7f, 0, $"rms norm without weight, in place, n={n}");
        }
    }

    [Fact]
    public void Rms_norm_output_has_unit_root_mean_square()
    {
        float[] x = Uniform(768, 1, -20f, 20f);
        var y = new float[768];
        RmsNorm.Forward(x, [], 0f, y);
        double ms = 0;
        foreach (float v in y) ms += (double)v * v;
        Assert.Equal(1.0, ms / y.Length, 5);
    }

    [Fact]
    public void Layer_norm_matches_reference_for_every_length()
    {
        foreach (int n in Lengths)
        {
            float[] x = Uniform(n, n, 2f, 5f), w = Uniform(n, n + 1), b = Uniform(n, n + 2);
            var expected = new float[n];
            var actual = new float[n];
            LayerNorm.Reference.Forward(x, w, b, 1e-5f, expected);
            LayerNorm.Forward(x, w, b, 1e-5f, actual);
            AssertClose(expected, actual, 1e-6f, 1e-6f, $"layer norm n={n}");

            LayerNorm.Reference.Forward(x, [], [], 1e-5f, expected);
            LayerNorm.Forward(x, [], [], 1e-5f, x);
            AssertClose(expected, x, 1e-6f, 1e-6f, $"layer norm without affine, in place, n={n}");
        }
    }

    [Fact]
    public void Layer_norm_output_has_zero_mean_and_unit_variance()
    {
        float[] x = Uniform(1000, 3, 100f, 110f);
        var y = new float[1000];
        LayerNorm.Forward(x, [], [], 0f, y);
        double mean = y.Average(v => (double)v);
        double variance = y.Average(v => ((double)v - mean) * ((double)v - mean));
        Assert.Equal(0.0, mean, 5);
        Assert.Equal(1.0, variance, 4);
    }

    [Fact]
    public void Norms_reject_mismatched_weights()
    {
        Assert.Throws<ArgumentException>(() => RmsNorm.Forward(new float[4], new float[3], 1e-5f, new float[4]));
        Assert.Throws<ArgumentException>(() => LayerNorm.Forward(new float[4], new float[4], new float[5], 1e-5f, new float[4]));
        Assert.Throws<ArgumentException>(() => RmsNorm.Forward(new float[4], [], 1e-5f, new float[3]));
    }
}
