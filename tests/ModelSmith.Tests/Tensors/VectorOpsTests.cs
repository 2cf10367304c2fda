using ModelSmith.Tensors;
using static ModelSmith.Tests.Tensors.KernelTestData;

namespace ModelSmith.Tests.Tensors;

[Trait("Category", "Kernels")]
public class VectorOpsTests
{
    [Fact]
    public void Dot_matches_reference_for_every_length()
    {
        foreach (int n in Lengths)
        {
            float[] a = Uniform(n, n), b = Uniform(n, n + 1000);
            float sumAbs = 0;
            for (int i = 0; i < n; i++) sumAbs += MathF.Abs(a[i] * b[i]);
            float expected = VectorOps.Reference.Dot(a, b);
            float actual = VectorOps.Dot(a, b);
            Assert.True(MathF.Abs(actual - expected) <= 1e-6f * sumAbs + 1e-30f, $"n={n}: {actual} vs {expected}");
        }
    }

    [Fact]
    public void Axpy_matches_reference_for_every_length()
    {
        foreach (int n in Lengths)
        {
            float[] x = Uniform(n, n), y = Uniform(n, n + 7), expected = (float[])y.Clone();
            VectorOps.Reference.Axpy(0.37f, x, expected);
            VectorOps.Axpy(0.37f, x, y);
            AssertClose(expected, y, 2e-7f, 1e-7f, $"axpy n={n}");
        }
    }

    [Fact]
    public void Scale_add_and_multiply_are_exact_for_every_length()
    {
        foreach (int n in Lengths)
        {
            float[] a = Uniform(n, n), b = Uniform(n, n + 3);
            var expected = new float[n];
            var actual = new float[n];

            VectorOps.Reference.Scale(a, -1.75f, expected);
            VectorOps.Scale(a, -1.75f, actual);
            AssertBitEqual(expected, actual, $"scale n={n}");

            VectorOps.Reference.Add(a, b, expected);
            VectorOps.Add(a, b, actual);
            AssertBitEqual(expected, actual, $"add n={n}");

            VectorOps.Reference.Multiply(a, b, expected);
            VectorOps.Multiply(a, b, actual);
            AssertBitEqual(expected, actual, $"multiply n={n}");
        }
    }

    [Fact]
    public void Operations_work_in_place()
    {
        float[] a = Uniform(100, 1), b = Uniform(100, 2);
        var expected = new float[100];
        VectorOps.Reference.Add(a, b, expected);
        VectorOps.Add(a, b, a);
        AssertBitEqual(expected, a, "add in place");

        float[] c = Uniform(37, 3), expectedScaled = new float[37];
        VectorOps.Reference.Scale(c, 3f, expectedScaled);
        VectorOps.Scale(c, 3f, c);
        AssertBitEqual(expectedScaled, c, "scale in place");
    }

    [Fact]
    public void Partially_overlapping_output_is_rejected()
    {
        var buffer = new float[64];
        Assert.Throws<ArgumentException>(() => VectorOps.Scale(buffer.AsSpan(0, 32), 2f, buffer.AsSpan(1, 32)));
        Assert.Throws<ArgumentException>(() => VectorOps.Axpy(1f, buffer.AsSpan(0, 32), buffer.AsSpan(2, 32)));
        Assert.Throws<ArgumentException>(() => VectorOps.Add(buffer.AsSpan(0, 8), buffer.AsSpan(0, 9), buffer.AsSpan(20, 9)));
    }

    [Fact]
    public void Max_and_sum_match_reference_for_every_length()
    {
        foreach (int n in Lengths)
        {
            float[] x = Uniform(n, n, -100f, 100f);
            if (n > 0)
            {
                x[n / 2] = 250f;
                Assert.Equal(VectorOps.Reference.Max(x), VectorOps.Max(x));
            }
            float sumAbs = 0;
            foreach (float v in x) sumAbs += MathF.Abs(v);
            float expected = VectorOps.Reference.Sum(x);
            Assert.True(MathF.Abs(VectorOps.Sum(x) - expected) <= 1e-7f * sumAbs + 1e-30f, $"sum n={n}");
        }
    }

    [Fact]
    public void Max_propagates_nan_and_rejects_empty_input()
    {
        float[] x = Uniform(40, 5);
        x[33] = float.NaN;
        Assert.True(float.IsNaN(VectorOps.Max(x)));
        Assert.Throws<ArgumentException>(() => VectorOps.Max([]));
    }

    [Fact]
    public void Sum_accumulates_in_double_like_ggml()
    {
        // 1 + 2^-24 added 2^20 times: a float accumulator would stay at its start value.
        var x = new float[1 << 20];
        Array.Fill(x, 1f / (1 << 24));
        x[0] = 1f;
        Assert.Equal(1f + (((1 << 20) - 1) / (float)(1 << 24)), VectorOps.Sum(x), 6);
    }
}
