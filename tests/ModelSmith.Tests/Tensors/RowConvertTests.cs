using ModelSmith.Tensors;
using static ModelSmith.Tests.Tensors.KernelTestData;

namespace ModelSmith.Tests.Tensors;

[Trait("Category", "Kernels")]
public class RowConvertTests
{
    private static ushort[] AllPatterns()
    {
        var all = new ushort[1 << 16];
        for (int i = 0; i < all.Length; i++) all[i] = (ushort)i;
        return all;
    }

    [Fact]
    public void Half_to_single_is_exact_for_every_bit_pattern()
    {
        ushort[] all = AllPatterns();
        var expected = new float[all.Length];
        var actual = new float[all.Length];
        RowConvert.Reference.HalfToSingle(all, expected);
        RowConvert.HalfToSingle(all, actual);
        for (int i = 0; i < all.Length; i++)
        {
            if (float.IsNaN(expected[i]))
            {
                Assert.True(float.IsNaN(actual[i]), $"half 0x{i:x4} must widen to NaN");
                Assert.Equal(float.IsNegative(expected[i]), float.IsNegative(actual[i]));
            }
            else
            {
                Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]), $"half 0x{i:x4}: {actual[i]:R} vs {expected[i]:R}");
                Assert.Equal(BitConverter.SingleToInt32Bits(expected[i]), BitConverter.SingleToInt32Bits(RowConvert.HalfToSingle((ushort)i)));
            }
        }
    }

    [Fact]
    public void Half_nan_payload_survives_widening()
    {
        float f = RowConvert.HalfToSingle(0x7e01);
        Assert.Equal(0x7fc02000, BitConverter.SingleToInt32Bits(f));
    }

    [Fact]
    public void BFloat16_to_single_is_exact_for_every_bit_pattern()
    {
        ushort[] all = AllPatterns();
        var expected = new float[all.Length];
        var actual = new float[all.Length];
        RowConvert.Reference.BFloat16ToSingle(all, expected);
        RowConvert.BFloat16ToSingle(all, actual);
        for (int i = 0; i < all.Length; i++)
            Assert.Equal(BitConverter.SingleToInt32Bits(expected[i]), BitConverter.SingleToInt32Bits(actual[i]));
    }

    private static float[] NarrowingInputs()
    {
        var values = new List<float>(Uniform(4000, 11, -70000f, 70000f));
        values.AddRange(Uniform(2000, 12, -1e-6f, 1e-6f));
        values.AddRange(
        [
            0f, -0f, 1f, -1f, 65504f, 65519.99f, 65520f, -65520f, 1e-8f, 5.96e-8f, 2.98e-8f, 2.9802326e-8f,
            float.PositiveInfinity, float.NegativeInfinity, float.NaN, float.Epsilon, -float.Epsilon,
            float.MaxValue, float.MinValue, 1.00390625f, 1.01171875f, BitConverter.Int32BitsToSingle(0x3f808000),
            BitConverter.Int32BitsToSingle(0x3f818000), BitConverter.Int32BitsToSingle(0x7f7f8000),
            BitConverter.Int32BitsToSingle(0x7fa00000), BitConverter.Int32BitsToSingle(unchecked((int)0xffc00001)),
        ]);
        return [.. values];
    }

    [Fact]
    public void Single_to_half_rounds_to_nearest_even_for_every_length()
    {
        float[] src = NarrowingInputs();
        foreach (int n in Lengths.Append(src.Length))
        {
            ReadOnlySpan<float> s = src.AsSpan(src.Length - n);
            var expected = new ushort[n];
            var actual = new ushort[n];
            RowConvert.Reference.SingleToHalf(s, expected);
            RowConvert.SingleToHalf(s, actual);
            for (int i = 0; i < n; i++)
            {
                if (float.IsNaN(s[i])) Assert.True((actual[i] & 0x7c00) == 0x7c00 && (actual[i] & 0x3ff) != 0);
                else Assert.True(expected[i] == actual[i], $"{s[i]:R}: 0x{actual[i]:x4} vs 0x{expected[i]:x4}");
            }
        }
    }

    [Fact]
    public void Single_to_bfloat16_follows_ggml_for_every_length()
    {
        float[] src = NarrowingInputs();
        foreach (int n in Lengths.Append(src.Length))
        {
            ReadOnlySpan<float> s = src.AsSpan(src.Length - n);
            var expected = new ushort[n];
            var actual = new ushort[n];
            RowConvert.Reference.SingleToBFloat16(s, expected);
            RowConvert.SingleToBFloat16(s, actual);
            Assert.Equal(expected, actual);
        }
    }

    [Fact]
    public void Bfloat16_narrowing_rounds_ties_to_even_and_quiets_nans()
    {
        Assert.Equal(0x3f80, RowConvert.Reference.SingleToBFloat16(BitConverter.Int32BitsToSingle(0x3f808000)));
        Assert.Equal(0x3f82, RowConvert.Reference.SingleToBFloat16(BitConverter.Int32BitsToSingle(0x3f818000)));
        Assert.Equal(0x3f81, RowConvert.Reference.SingleToBFloat16(BitConverter.Int32BitsToSingle(0x3f808001)));
        Assert.Equal(0x7fe0, RowConvert.Reference.SingleToBFloat16(BitConverter.Int32BitsToSingle(0x7fa00000)));
        Assert.Equal(0x7f80, RowConvert.Reference.SingleToBFloat16(float.PositiveInfinity));
        Assert.Equal(0x0000, RowConvert.Reference.SingleToBFloat16(float.Epsilon));
        Assert.Equal(0x0002, RowConvert.Reference.SingleToBFloat16(BitConverter.Int32BitsToSingle(0x00018000)));
        Assert.Equal(0x0001, RowConvert.Reference.SingleToBFloat16(BitConverter.Int32BitsToSingle(0x00008001)));
    }

    [Fact]
    public void Halves_are_finite_unless_one_at_any_position_of_any_length_is_infinite_or_nan()
    {
        ushort[] finite = [0x0000, 0x8000, 0x03ff, 0x83ff, 0x7bff, 0xfbff, 0x3c00, 0x7800];
        ushort[] special = [0x7c00, 0xfc00, 0x7e00, 0xfe01, 0x7fff, 0xffff];
        for (int n = 0; n <= 257; n++)
        {
            var bits = new ushort[n];
            for (int i = 0; i < n; i++) bits[i] = finite[(i + n) % finite.Length];
            Assert.True(RowConvert.HalvesAreFinite(bits), $"{n} finite halves");
            for (int at = 0; at < n; at++)
            {
                ushort kept = bits[at];
                bits[at] = special[(at + n) % special.Length];
                Assert.False(RowConvert.HalvesAreFinite(bits), $"{n} halves, 0x{bits[at]:x4} at {at}");
                bits[at] = kept;
            }
        }
    }

    [Fact]
    public void Conversions_reject_a_short_destination()
    {
        Assert.Throws<ArgumentException>(() => RowConvert.HalfToSingle(new ushort[5], new float[4]));
        Assert.Throws<ArgumentException>(() => RowConvert.SingleToBFloat16(new float[5], new ushort[4]));
    }
}
