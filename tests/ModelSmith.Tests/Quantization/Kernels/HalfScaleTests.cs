using System.Runtime.Intrinsics;
using ModelSmith.Quantization.Kernels;

namespace ModelSmith.Tests.Quantization.Kernels;

[Trait("Category", "Kernels")]
public sealed class HalfScaleTests
{
    [Fact]
    public void Every_half_widens_to_the_exact_float_scalar_and_vector()
    {
        var lanes = new int[16];
        for (int h = 0; h < 65536; h += 16)
        {
            for (int i = 0; i < 16; i++) lanes[i] = h + i;
            Vector256<float> widened = HalfScale.ToSingle(Vector256.Create(lanes));
            Vector512<float> widened512 = HalfScale.ToSingle(Vector512.Create(lanes));
            for (int i = 0; i < 16; i++)
            {
                float expected = (float)BitConverter.UInt16BitsToHalf((ushort)(h + i));
                int bits = BitConverter.SingleToInt32Bits(expected);
                Assert.Equal(bits, BitConverter.SingleToInt32Bits(HalfScale.ToSingle((ushort)(h + i))));
                if (i < 8) Assert.Equal(bits, BitConverter.SingleToInt32Bits(widened.GetElement(i)));
                Assert.Equal(bits, BitConverter.SingleToInt32Bits(widened512.GetElement(i)));
            }
        }
    }
}
