using System.Security.Cryptography;
using ModelSmith.Formats;
using ModelSmith.Quantization;

namespace ModelSmith.Tests.Quantization;

/// <summary>Also run by test.sh with AVX-512 and AVX2 switched off (Category=Kernels): the JIT may pick other
/// instructions there (e.g. for System.Half conversions), and the bytes must not change.</summary>
[Trait("Category", "Kernels")]
public class QuantizerGoldenTests
{
    private const int Rows = 12;
    private const int Cols = 512;
    private const ulong Seed = 2024;

    /// <summary>SHA-256 of llama.cpp's quantize_row_*_ref output for <c>new TestWeights(2024).Mixed(12, 512)</c>;
    /// the interop suite (GoldenHashTests) checks these against llama.cpp itself.</summary>
    public static TheoryData<GgmlType, string> Golden => new()
    {
        { GgmlType.Q8_0, "07001bfa47bc5898a80ce46c2815f3dd3f2bd6a5767d4259e2e98f61747cb215" },
        { GgmlType.Q4_0, "b9f79ab29ef2b757b1ad9ce9b5d8a141d8455a851243cdd636ec0fc6e1f4312f" },
        { GgmlType.Q4_1, "efda4e7c4105b5bd234ad0873110b7ca3488e63d24d4a895fb2db49570e0a39f" },
        { GgmlType.Q5_0, "57672fc9b294159787af6f06be2ce44037f9ba74ac73d80e0e72d49045319d62" },
        { GgmlType.Q5_1, "cbb96001907621084e86dad02d79765a1d69e66c506a4e85ee5f2d33eb83c542" },
        { GgmlType.Q2_K, "4491c2ce48dedabe951a53bb61ea3bca1bdcf30ececf2f098ef00fb01a827156" },
        { GgmlType.Q3_K, "672590cde25457e563cd842ea9458aedbfa6896a5bcf4329804ca9c3b522d0a3" },
        { GgmlType.Q4_K, "118388afa9e861174ff9601bd72fe6af7c612ffb7713f024c91140df496d2b6f" },
        { GgmlType.Q5_K, "734dc1c1370a21b76310338465aa2f6fd2342b63bc9631a1d9abf5fceffa35fe" },
        { GgmlType.Q6_K, "091ab217aec44c52da57ccd4f44cf471d74f8c78a55e9337531456126cba187d" },
        { GgmlType.Q8_K, "8badc61dbddd949a34c7f27936e10e7ff4dd03c7ad62a7e6646cc417a8664541" },
    };

    [Theory]
    [MemberData(nameof(Golden))]
    public void Quantized_bytes_hash_to_llama_cpp_golden_value(GgmlType type, string expected)
    {
        float[] x = new TestWeights(Seed).Mixed(Rows, Cols);
        var bytes = new byte[Rows * BlockQuantizer.RowSize(type, Cols)];
        BlockQuantizer.Quantize(type, x, Rows, Cols, bytes);
        Assert.Equal(expected, Convert.ToHexStringLower(SHA256.HashData(bytes)));
    }

    [Theory]
    [MemberData(nameof(Golden))]
    public void Quantizing_on_several_threads_gives_the_same_bytes(GgmlType type, string expected)
    {
        // Enough values that the work is really split (at least 64Ki values per thread).
        const int rows = 288;
        float[] x = new TestWeights(Seed).Mixed(rows, Cols);
        var one = new byte[rows * BlockQuantizer.RowSize(type, Cols)];
        var four = new byte[one.Length];
        BlockQuantizer.Quantize(type, x, rows, Cols, one, threads: 1);
        BlockQuantizer.Quantize(type, x, rows, Cols, four, threads: 4);
        Assert.Equal(one, four);
        Assert.Equal(expected, Convert.ToHexStringLower(SHA256.HashData(one.AsSpan(0, Rows * BlockQuantizer.RowSize(type, Cols)))));

        var valuesOne = new float[x.Length];
        var valuesFour = new float[x.Length];
        BlockQuantizer.Dequantize(type, one, rows, Cols, valuesOne, threads: 1);
        BlockQuantizer.Dequantize(type, one, rows, Cols, valuesFour, threads: 4);
        Assert.Equal(valuesOne, valuesFour);
    }
}
