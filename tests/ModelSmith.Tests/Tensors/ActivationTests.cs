using ModelSmith.Tensors;
using static ModelSmith.Tests.Tensors.KernelTestData;

namespace ModelSmith.Tests.Tensors;

[Trait("Category", "Kernels")]
public class ActivationTests
{
    private delegate void Unary(ReadOnlySpan<float> x, Span<float> y);

    private static void CheckUnary(Unary fast, Unary reference, float rel, float abs, string name)
    {
        foreach (int n in Lengths)
        {
            float[] x = Uniform(n, n, -12f, 12f);
            var expected = new float[n];
            var actual = new float[n];
            reference(x, expected);
            fast(x, actual);
            AssertClose(expected, actual, rel, abs, $"{name} n={n}");
            fast(x, x);
            AssertBitEqual(actual, x, $"{name} in place n={n}");
        }
    }

    [Fact]
    public void Silu_matches_reference_for_every_length() => CheckUnary(Activations.Silu, Activations.Reference.Silu, 5e-7f, 1e-30f, "silu");

    [Fact]
    public void Gelu_tanh_matches_reference_for_every_length() => CheckUnary(Activations.GeluTanh, Activations.Reference.GeluTanh, 1e-6f, 1e-7f, "gelu tanh");

    [Fact]
    public void Gelu_erf_matches_reference_for_every_length() => CheckUnary(Activations.GeluErf, Activations.Reference.GeluErf, 5e-7f, 1e-30f, "gelu erf");

    [Fact]
    public void Ggml_gelu_is_bit_identical_to_reference_for_every_length()
    {
        CheckUnary(Activations.GeluGgml, Activations.Reference.GeluGgml, 0f, 0f, "gelu ggml");
        float[] wide = Uniform(1000, 9, -16f, 16f);
        var expected = new float[wide.Length];
        var actual = new float[wide.Length];
        Activations.Reference.GeluGgml(wide, expected);
        Activations.GeluGgml(wide, actual);
        AssertBitEqual(expected, actual, "gelu ggml over the clamps");
    }

    [Fact]
    public void Swiglu_matches_reference_for_every_length()
    {
        foreach (int n in Lengths)
        {
            float[] g = Uniform(n, n, -12f, 12f), u = Uniform(n, n + 1, -3f, 3f);
            var expected = new float[n];
            var actual = new float[n];
            Activations.Reference.SwiGlu(g, u, expected);
            Activations.SwiGlu(g, u, actual);
            AssertClose(expected, actual, 5e-7f, 1e-30f, $"swiglu n={n}");
        }
    }

    [Fact]
    public void Activations_behave_at_the_extremes()
    {
        float[] x = [-200f, -88f, -10f, 0f, 10f, 88f, 200f, float.NaN];
        var y = new float[x.Length];
        foreach (Unary f in new Unary[] { Activations.Silu, Activations.GeluTanh, Activations.GeluErf, Activations.GeluGgml })
        {
            f(x, y);
            Assert.Equal(0f, y[0], 6);
            Assert.Equal(0f, y[3]);
            Assert.Equal(200f, y[6], 3);
            Assert.True(float.IsNaN(y[7]) || f == Activations.GeluGgml, "NaN in, NaN out");
            Assert.All(y[..7], v => Assert.True(float.IsFinite(v)));
        }
    }

    [Fact]
    public void Erf_matches_tabulated_values()
    {
        // erf(z) = 1 − erfc(z); values from standard tables.
        (double z, double erfc)[] table = [(0.1, 0.8875370839817151), (0.5, 0.4795001221869535), (1.0, 0.15729920705028513), (2.0, 0.004677734981047266), (3.0, 2.209049699858544e-05), (4.0, 1.541725790028002e-08)];
        foreach ((double z, double erfc) in table)
            Assert.True(Math.Abs(Activations.ErfcAbs((float)z) - erfc) <= 2e-7 * erfc, $"erfc({z}) = {Activations.ErfcAbs((float)z)}, expected {erfc}");
    }

    [Fact]
    public void Ggml_gelu_is_the_tanh_gelu_at_binary16_precision_with_its_clamps()
    {
        float[] x = Uniform(5000, 4, -11f, 11f);
        var table = new float[x.Length];
        Activations.GeluGgml(x, table);
        for (int i = 0; i < x.Length; i++)
        {
            float v = x[i];
            if (v <= -10f) Assert.Equal(0f, table[i]);
            else if (v >= 10f) Assert.Equal(v, table[i]);
            else
            {
                // Exactly: the binary16 of gelu at the binary16 input.
                float rounded = (float)(Half)v;
                Assert.Equal((float)(Half)Activations.Reference.GeluTanh(rounded), table[i]);
                Assert.True(MathF.Abs(table[i] - Activations.Reference.GeluTanh(v)) <= 2e-3f * MathF.Abs(v) + 1e-4f);
            }
        }
    }
}
