using ModelSmith.Formats;
using ModelSmith.Quantization;

namespace ModelSmith.Tests.Quantization;

public class BlockLayoutTests
{
    [Fact]
    public void Block_sizes_and_struct_sizes_match_llama_cpp()
    {
        Assert.Equal((32, 34), (Q8_0.BlockSize, Q8_0.TypeSize));
        Assert.Equal((32, 18), (Q4_0.BlockSize, Q4_0.TypeSize));
        Assert.Equal((32, 20), (Q4_1.BlockSize, Q4_1.TypeSize));
        Assert.Equal((32, 22), (Q5_0.BlockSize, Q5_0.TypeSize));
        Assert.Equal((32, 24), (Q5_1.BlockSize, Q5_1.TypeSize));
        Assert.Equal((256, 84), (Q2_K.BlockSize, Q2_K.TypeSize));
        Assert.Equal((256, 110), (Q3_K.BlockSize, Q3_K.TypeSize));
        Assert.Equal((256, 144), (Q4_K.BlockSize, Q4_K.TypeSize));
        Assert.Equal((256, 176), (Q5_K.BlockSize, Q5_K.TypeSize));
        Assert.Equal((256, 210), (Q6_K.BlockSize, Q6_K.TypeSize));
        Assert.Equal((256, 292), (Q8_K.BlockSize, Q8_K.TypeSize));
    }

    [Theory]
    [InlineData(GgmlType.Q8_0, 34)]
    [InlineData(GgmlType.Q4_0, 18)]
    [InlineData(GgmlType.Q4_1, 20)]
    [InlineData(GgmlType.Q5_0, 22)]
    [InlineData(GgmlType.Q5_1, 24)]
    [InlineData(GgmlType.Q2_K, 84)]
    [InlineData(GgmlType.Q3_K, 110)]
    [InlineData(GgmlType.Q4_K, 144)]
    [InlineData(GgmlType.Q5_K, 176)]
    [InlineData(GgmlType.Q6_K, 210)]
    [InlineData(GgmlType.Q8_K, 292)]
    public void Row_size_is_whole_blocks_of_the_ggml_type_size(GgmlType type, int typeSize)
    {
        int block = GgmlTypeInfo.BlockSize(type);
        Assert.Equal(typeSize, GgmlTypeInfo.TypeSize(type));
        Assert.Equal(typeSize, BlockQuantizer.RowSize(type, block));
        Assert.Equal(11 * typeSize, BlockQuantizer.RowSize(type, 11 * block));
        Assert.Equal(0, BlockQuantizer.RowSize(type, 0));
    }

    [Theory]
    [InlineData(GgmlType.F32, 32.0)]
    [InlineData(GgmlType.F16, 16.0)]
    [InlineData(GgmlType.BF16, 16.0)]
    [InlineData(GgmlType.Q8_0, 8.5)]
    [InlineData(GgmlType.Q4_0, 4.5)]
    [InlineData(GgmlType.Q4_1, 5.0)]
    [InlineData(GgmlType.Q5_0, 5.5)]
    [InlineData(GgmlType.Q5_1, 6.0)]
    [InlineData(GgmlType.Q2_K, 2.625)]
    [InlineData(GgmlType.Q3_K, 3.4375)]
    [InlineData(GgmlType.Q4_K, 4.5)]
    [InlineData(GgmlType.Q5_K, 5.5)]
    [InlineData(GgmlType.Q6_K, 6.5625)]
    [InlineData(GgmlType.Q8_K, 9.125)]
    public void Bits_per_weight_include_the_scales(GgmlType type, double bits)
    {
        Assert.Equal(bits, BlockQuantizer.BitsPerWeight(type));
    }

    [Fact]
    public void Every_supported_type_is_listed_and_others_are_refused_by_name()
    {
        foreach (GgmlType type in Enum.GetValues<GgmlType>())
        {
            Assert.Equal(BlockQuantizer.SupportedTypes.Contains(type), BlockQuantizer.IsSupported(type));
        }
        var e = Assert.Throws<ArgumentException>(() => BlockQuantizer.RowSize(GgmlType.IQ2_XXS, 256));
        Assert.Contains("IQ2_XXS", e.Message, StringComparison.Ordinal);
    }
}
