using ModelSmith.Quantization;

namespace ModelSmith.Tests.Quantization.Kernels;

/// <summary>
/// The vector fast paths of the quantizers against their scalar references, bit for bit, over many row
/// lengths and the distributions that stress them: normals, outliers, zero rows and zero groups, tiny and
/// subnormal values (where 1/d overflows), positive-only and constant groups, and ties of magnitude.
/// Where 256-bit vectors are off, the fast paths are the references and these tests still pass.
/// </summary>
[Trait("Category", "Kernels")]
public sealed class QuantizerFastPathTests
{
    /// <summary>Rows of <paramref name="cols"/> values, one per distribution kind, from a seed.</summary>
    private static float[] Rows(int kinds, int cols, ulong seed)
    {
        var rng = new TestWeights(seed);
        var x = new float[kinds * cols];
        for (int r = 0; r < kinds; r++)
        {
            Span<float> row = x.AsSpan(r * cols, cols);
            for (int c = 0; c < cols; c++)
            {
                row[c] = (r % 12) switch
                {
                    0 => rng.Normal(),
                    1 => 0.02f * rng.Normal() * (rng.Uniform() < 0.01f ? 100f : 1f),
                    2 => 0f,
                    3 => (c / 16 % 3 == 1) ? 0f : rng.Normal(),
                    4 => 1e-20f * rng.Normal(),
                    5 => rng.Uniform() + 0.125f,
                    6 => 1e-39f * rng.Normal(), // subnormal: 1/d overflows in Q8_0/Q4_0
                    7 => (c / 32 % 2 == 0) ? -0.75f : 0.5f, // constant groups: flat and one-sided
                    8 => (c % 5 == 0 ? -1f : 1f) * (c % 3), // ties of magnitude, both signs
                    9 => MathF.Round(rng.Normal() * 4f) * 0.25f, // values on a grid: rounding ties
                    10 => c % 37 == 0 ? 7f : 0f, // sparse
                    _ => -rng.Uniform() - 0.5f, // negative-only
                };
            }
        }
        return x;
    }

    [Fact]
    public void Q8_0_vector_rows_equal_the_reference_for_every_length() =>
        AssertRowsEqualReference("Q8_0", Q8_0.QuantizeRow, Q8_0.QuantizeRowReference, 32, Q8_0.TypeSize, maxBlocks: 24, seed: 0);

    [Fact]
    public void Q4_0_vector_rows_equal_the_reference_for_every_length() =>
        AssertRowsEqualReference("Q4_0", Q4_0.QuantizeRow, Q4_0.QuantizeRowReference, 32, Q4_0.TypeSize, maxBlocks: 24, seed: 100);

    [Theory]
    [InlineData(15, -1f, 0.1f, 20)] // Q4_K
    [InlineData(31, -0.5f, 0.1f, 15)] // Q5_K
    [InlineData(15, -1f, 0.1f, 0)] // no search: the first guess only
    public void Qkx2_sub_blocks_in_lanes_equal_the_scalar_search(int nmax, float rmin, float rdelta, int nstep)
    {
        const int superBlocks = 48;
        float[] x = Rows(superBlocks, 256, 7);
        Span<byte> scratch = stackalloc byte[32];
        Span<float> weights = stackalloc float[32];
        var fastLevels = new byte[256];
        var refLevels = new byte[256];
        var fastScales = new float[8];
        var refScales = new float[8];
        var fastMins = new float[8];
        var refMins = new float[8];
        for (int b = 0; b < superBlocks; b++)
        {
            ReadOnlySpan<float> xb = x.AsSpan(256 * b, 256);
            Q4_K.SubBlockScales(nmax, rmin, rdelta, nstep, xb, fastLevels, scratch, weights, fastScales, fastMins, out float fastMaxScale, out float fastMaxMin);
            Q4_K.SubBlockScalesReference(nmax, rmin, rdelta, nstep, xb, refLevels, scratch, weights, refScales, refMins, out float refMaxScale, out float refMaxMin);
            Assert.True(fastLevels.AsSpan().SequenceEqual(refLevels), $"levels of super-block {b}");
            AssertSameBits(refScales, fastScales, $"scales of super-block {b}");
            AssertSameBits(refMins, fastMins, $"mins of super-block {b}");
            AssertSameBits([refMaxScale, refMaxMin], [fastMaxScale, fastMaxMin], $"largest scale and min of super-block {b}");
        }
    }

    [Fact]
    public void Qx_groups_in_lanes_equal_the_scalar_search()
    {
        const int superBlocks = 48;
        float[] x = Rows(superBlocks, 256, 11);
        var levels = new sbyte[128];
        var refLevels = new sbyte[16];
        var scales = new float[8];
        for (int h = 0; h < superBlocks * 2; h++)
        {
            ReadOnlySpan<float> half = x.AsSpan(128 * h, 128);
            QuantLanes.MakeQxQuants16(32, half, levels, scales);
            for (int g = 0; g < 8; g++)
            {
                float scale = QuantMath.MakeQxQuants(32, half.Slice(16 * g, 16), refLevels);
                Assert.Equal(BitConverter.SingleToInt32Bits(scale), BitConverter.SingleToInt32Bits(scales[g]));
                Assert.True(levels.AsSpan(16 * g, 16).SequenceEqual(refLevels), $"levels of group {g} of half {h}");
            }
        }
    }

    [Fact]
    public void Q6_K_sub_block_scales_equal_the_scalar_search_per_group()
    {
        float[] x = Rows(24, 256, 13);
        var levels = new sbyte[256];
        var refLevels = new sbyte[16];
        var scales = new float[16];
        for (int b = 0; b < 24; b++)
        {
            ReadOnlySpan<float> xb = x.AsSpan(256 * b, 256);
            Q6_K.SubBlockScales(xb, levels, scales, QuantLanes.IsSupported);
            for (int g = 0; g < 16; g++)
            {
                float scale = QuantMath.MakeQxQuants(32, xb.Slice(16 * g, 16), refLevels);
                Assert.Equal(BitConverter.SingleToInt32Bits(scale), BitConverter.SingleToInt32Bits(scales[g]));
                Assert.True(levels.AsSpan(16 * g, 16).SequenceEqual(refLevels), $"levels of group {g} of super-block {b}");
            }
        }
    }

    [Fact]
    public void Q6_K_vector_rows_equal_the_reference_for_every_length() =>
        AssertRowsEqualReference("Q6_K", Q6_K.QuantizeRow, Q6_K.QuantizeRowReference, 256, Q6_K.TypeSize, maxBlocks: 6, seed: 200);

    private delegate void RowQuantizer(ReadOnlySpan<float> row, Span<byte> output);

    /// <summary>
    /// For rows of 1..<paramref name="maxBlocks"/> blocks and every distribution kind, <paramref name="fast"/> writes the
    /// bytes <paramref name="reference"/> writes.
    /// </summary>
    private static void AssertRowsEqualReference(string type, RowQuantizer fast, RowQuantizer reference, int blockSize, int typeSize, int maxBlocks, ulong seed)
    {
        for (int blocks = 1; blocks <= maxBlocks; blocks++)
        {
            int cols = blockSize * blocks;
            float[] x = Rows(12, cols, seed + (ulong)blocks);
            for (int r = 0; r < 12; r++)
            {
                ReadOnlySpan<float> row = x.AsSpan(r * cols, cols);
                var fastBytes = new byte[blocks * typeSize];
                var referenceBytes = new byte[blocks * typeSize];
                fast(row, fastBytes);
                reference(row, referenceBytes);
                Assert.True(fastBytes.AsSpan().SequenceEqual(referenceBytes), $"{type} row kind {r}, {cols} values");
            }
        }
    }

    private static void AssertSameBits(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]),
                $"{what}: element {i} is {actual[i]:R}, the reference {expected[i]:R}");
        }
    }
}
