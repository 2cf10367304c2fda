using System.Runtime.Intrinsics;
using ModelSmith.Quantization.Kernels;

namespace ModelSmith.Tests.Quantization.Kernels;

[Trait("Category", "Kernels")]
public sealed class HalfScaleTests
{
    [Fact]
    public void Every_half_widens_to_the_exact_float_scalar_and_vector()
    {
        var lanes = new int[8];
        for (int h = 0; h < 65536; h += 8)
        {
            for (int i = 0; i < 8; i++) lanes[i] = h + i;
            Vector256<float> widened = HalfScale.ToSingle(Vector256.Create(lanes));
            for (int i = 0; i < 8; i++)
            {
                float expected = (float)BitConverter.UInt16BitsToHalf((ushort)(h + i));
                int bits = BitConverter.SingleToInt32Bits(expected);
                Assert.Equal(bits, BitConverter.SingleToInt32Bits(HalfScale.ToSingle((ushort)(h + i))));
                Assert.Equal(bits, BitConverter.SingleToInt32Bits(widened.GetElement(i)));
            }
        }
    }
}
