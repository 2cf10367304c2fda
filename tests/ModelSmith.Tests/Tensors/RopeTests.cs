using ModelSmith.Tensors;
using static ModelSmith.Tests.Tensors.KernelTestData;

namespace ModelSmith.Tests.Tensors;

[Trait("Category", "Kernels")]
public class RopeTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Rope_is_bit_identical_to_the_reference_for_head_sizes_and_positions(bool neox)
    {
        RopeMode mode = neox ? RopeMode.Neox : RopeMode.Normal;
        foreach ((int headDim, int dims, int heads) in new[] { (2, 2, 3), (6, 6, 2), (10, 6, 3), (32, 32, 2), (64, 64, 4), (96, 64, 1), (128, 128, 2), (130, 130, 1) })
        {
            var table = new RopeTable(dims, 10000f, 4100, mode);
            foreach (int position in new[] { 0, 1, 2, 17, 511, 4095, 4099 })
            {
                float[] x = Uniform(heads * headDim, headDim * 7 + position);
                float[] expected = (float[])x.Clone();
                Rope.Reference.Apply(expected, headDim, position, dims, 10000f, mode);
                Rope.Apply(x, headDim, position, table);
                AssertBitEqual(expected, x, $"{mode} head {headDim} dims {dims} pos {position}");
            }
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Inverse_rotation_undoes_the_rotation_and_norms_are_kept(bool neox)
    {
        RopeMode mode = neox ? RopeMode.Neox : RopeMode.Normal;
        var table = new RopeTable(64, 500000f, 2048, mode);
        float[] x = Uniform(4 * 64, 1);
        float[] y = (float[])x.Clone();
        Rope.Apply(y, 64, 1234, table);
        for (int h = 0; h < 4; h++)
        {
            double n0 = 0, n1 = 0;
            for (int i = 0; i < 64; i++)
            {
                n0 += (double)x[h * 64 + i] * x[h * 64 + i];
                n1 += (double)y[h * 64 + i] * y[h * 64 + i];
            }
            Assert.Equal(n0, n1, 5);
        }
        float[] expectedInverse = (float[])y.Clone();
        Rope.Reference.Apply(expectedInverse, 64, 1234, 64, 500000f, mode, inverse: true);
        Rope.ApplyInverse(y, 64, 1234, table);
        AssertBitEqual(expectedInverse, y, "inverse");
        AssertClose(x, y, 1e-5f, 1e-6f, "round trip");
    }

    [Fact]
    public void Normal_mode_rotates_adjacent_pairs_and_neox_mode_rotates_halves()
    {
        // At position 1 the first pair turns by exactly 1 radian.
        float c = MathF.Cos(1f), s = MathF.Sin(1f);
        float[] x = [1f, 0f, 0f, 0f];
        Rope.Apply(x, 4, 1, new RopeTable(4, 10000f, 2, RopeMode.Normal));
        Assert.Equal([c, s], x[..2]);
        float[] y = [1f, 0f, 0f, 0f];
        Rope.Apply(y, 4, 1, new RopeTable(4, 10000f, 2, RopeMode.Neox));
        Assert.Equal(c, y[0]);
        Assert.Equal(s, y[2]);
    }

    [Fact]
    public void Angles_are_the_iterated_float_product_as_in_ggml()
    {
        const int dims = 128;
        var cos = new float[dims / 2];
        var sin = new float[dims / 2];
        RopeTable.Angles(3000, dims, 10000f, cos, sin);
        float scale = MathF.Pow(10000f, -2f / dims);
        float theta = 3000f;
        for (int i = 0; i < dims / 2; i++)
        {
            Assert.Equal(MathF.Cos(theta), cos[i]);
            Assert.Equal(MathF.Sin(theta), sin[i]);
            theta *= scale;
        }
    }

    [Fact]
    public void Bad_rope_arguments_are_rejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new RopeTable(7, 10000f, 10, RopeMode.Normal));
        Assert.Throws<ArgumentOutOfRangeException>(() => new RopeTable(8, 0f, 10, RopeMode.Normal));
        var table = new RopeTable(8, 10000f, 10, RopeMode.Normal);
        Assert.Throws<ArgumentOutOfRangeException>(() => Rope.Apply(new float[8], 8, 10, table));
        Assert.Throws<ArgumentException>(() => Rope.Apply(new float[12], 8, 0, table));
        Assert.Throws<ArgumentException>(() => Rope.Apply(new float[12], 6, 0, table));
    }
}
