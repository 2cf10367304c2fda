using ModelSmith.Quantization;

namespace ModelSmith.Tests.Quantization;

public class QuantMathTests
{
    [Fact]
    public void Nearest_int_rounds_half_to_even_within_its_range()
    {
        float[] ties = [0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 4194302.5f, -4194302.5f];
        foreach (float v in ties)
        {
            Assert.Equal((int)MathF.Round(v, MidpointRounding.ToEven), QuantMath.NearestInt(v));
        }
        var rng = new TestWeights(1);
        for (int i = 0; i < 100_000; i++)
        {
            float v = (rng.Uniform() - 0.5f) * (i % 2 == 0 ? 40f : 8_000_000f);
            Assert.Equal((int)MathF.Round(v, MidpointRounding.ToEven), QuantMath.NearestInt(v));
        }
        Assert.Equal(0, QuantMath.NearestInt(-0f));
        Assert.Equal(4194303, QuantMath.NearestInt(4194303f));
    }

    [Fact]
    public void Nearest_int_wraps_like_ggml_beyond_its_range()
    {
        // ggml's trick reads the low 23 mantissa bits of x + 1.5·2^23: outside ±2^22 it wraps, and infinities
        // and NaNs come out as −2^22. The callers clamp these; matching them keeps odd inputs bit-exact.
        Assert.Equal(-4194304, QuantMath.NearestInt(4194304f));
        Assert.Equal(-4194304, QuantMath.NearestInt(float.PositiveInfinity));
        Assert.Equal(-4194304, QuantMath.NearestInt(float.NegativeInfinity));
    }

    [Fact]
    public void Round_half_away_from_zero_matches_c_roundf()
    {
        Assert.Equal(0f, QuantMath.RoundHalfAwayFromZero(0.49999997f));
        Assert.Equal(1f, QuantMath.RoundHalfAwayFromZero(0.5f));
        Assert.Equal(-1f, QuantMath.RoundHalfAwayFromZero(-0.5f));
        Assert.Equal(3f, QuantMath.RoundHalfAwayFromZero(2.5f));
        Assert.Equal(-3f, QuantMath.RoundHalfAwayFromZero(-2.5f));
        Assert.Equal(1f, QuantMath.RoundHalfAwayFromZero(1.4999999f));
        Assert.Equal(127f, QuantMath.RoundHalfAwayFromZero(126.5f));
        Assert.Equal(8388609f, QuantMath.RoundHalfAwayFromZero(8388609f));
    }

    [Fact]
    public void Float_to_int_conversion_gives_the_x86_integer_indefinite_for_nan_and_overflow()
    {
        Assert.Equal(2, QuantMath.TruncateLikeX86(2.9f));
        Assert.Equal(-2, QuantMath.TruncateLikeX86(-2.9f));
        Assert.Equal(int.MinValue, QuantMath.TruncateLikeX86(float.PositiveInfinity));
        Assert.Equal(int.MinValue, QuantMath.TruncateLikeX86(float.NegativeInfinity));
        Assert.Equal(int.MinValue, QuantMath.TruncateLikeX86(float.NaN));
        Assert.Equal(int.MinValue, QuantMath.TruncateLikeX86(3e9f));
        Assert.Equal(int.MinValue, QuantMath.TruncateLikeX86(-2147483648f));
    }

    [Fact]
    [Trait("Category", "Kernels")]
    public void Half_conversion_equals_ggml_software_conversion_on_ties_and_random_floats()
    {
        for (int h = 0; h < 0x7C00; h++)
        {
            float lo = (float)BitConverter.UInt16BitsToHalf((ushort)h);
            float hi = h + 1 == 0x7C00 ? 65520f : (float)BitConverter.UInt16BitsToHalf((ushort)(h + 1));
            float mid = (lo + hi) / 2;
            foreach (float v in new[] { lo, mid, MathF.BitDecrement(mid), MathF.BitIncrement(mid), -mid })
            {
                Assert.Equal(GgmlFp32ToFp16(v), QuantMath.FloatToHalfBits(v));
            }
        }
        var rng = new TestWeights(3);
        for (int i = 0; i < 1 << 20; i++)
        {
            float v = BitConverter.Int32BitsToSingle((int)(rng.Uniform() * 16777216f) << 8 | (int)(rng.Uniform() * 256f));
            Assert.Equal(GgmlFp32ToFp16(v), QuantMath.FloatToHalfBits(v));
        }
        foreach (float v in new[] { float.NaN, -float.NaN, BitConverter.Int32BitsToSingle(0x7FFFFFFF), float.PositiveInfinity, 65520f, 65519.996f, 1e-8f, 2.98e-8f })
        {
            Assert.Equal(GgmlFp32ToFp16(v), QuantMath.FloatToHalfBits(v));
        }
    }

    [Fact]
    public void Six_bit_scales_and_mins_survive_packing()
    {
        byte[] scales = [0, 63, 17, 42, 63, 1, 32, 15];
        byte[] mins = [63, 0, 5, 48, 31, 62, 16, 47];
        var packed = new byte[12];
        QuantMath.PackScaleMinK4(scales, mins, packed);
        for (int j = 0; j < 8; j++)
        {
            QuantMath.GetScaleMinK4(j, packed, out int sc, out int mn);
            Assert.Equal((scales[j], mins[j]), ((byte)sc, (byte)mn));
        }
    }

    /// <summary>
    /// ggml_compute_fp32_to_fp16 (ggml-impl.h, from the FP16 library): scale into the F16 range with two
    /// multiplications whose rounding is the F16 rounding, then pick the bits; NaN becomes 0x7E00.
    /// An independent reference for our System.Half-based conversion.
    /// </summary>
    private static ushort GgmlFp32ToFp16(float f)
    {
        const float scaleToInf = 5.192297e33f;   // 2^112
        const float scaleToZero = 7.70372e-34f;  // 2^-110
        float b = MathF.Abs(f) * scaleToInf * scaleToZero;
        uint w = BitConverter.SingleToUInt32Bits(f);
        uint shl1W = w + w;
        uint sign = w & 0x80000000u;
        uint bias = shl1W & 0xFF000000u;
        if (bias < 0x71000000u) bias = 0x71000000u;
        b = BitConverter.UInt32BitsToSingle((bias >> 1) + 0x07800000u) + b;
        uint bits = BitConverter.SingleToUInt32Bits(b);
        uint expBits = (bits >> 13) & 0x00007C00u;
        uint mantissaBits = bits & 0x00000FFFu;
        uint nonsign = expBits + mantissaBits;
        return (ushort)((sign >> 16) | (shl1W > 0xFF000000u ? 0x7E00u : nonsign));
    }
}
