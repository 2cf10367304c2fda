using ModelSmith.Tests.Quantization;
using System.Security.Cryptography;
using ModelSmith.Formats;
using Xunit.Abstractions;

namespace ModelSmith.Interop.Tests.Quantization;

/// <summary>
/// The golden SHA-256 hashes that the unit tests (QuantizerGoldenTests) pin for our quantizer are the
/// hashes of llama.cpp's reference quantizer output on the same seeded matrix, so the unit suite guards
/// exactness on machines without llama.cpp.
/// </summary>
[Trait("Category", "Interop")]
public sealed class GoldenHashTests(ITestOutputHelper output)
{
    public const int Rows = 12;
    public const int Cols = 512;
    public const ulong Seed = 2024;

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
    public void Golden_hash_of_the_unit_tests_is_llama_cpp_output(GgmlType type, string expected)
    {
        float[] x = new TestWeights(Seed).Mixed(Rows, Cols);
        var bytes = new byte[GgmlTypeInfo.ByteCount(type, (long)Rows * Cols)];
        GgmlQuants.QuantizeRowRef(type, x, bytes);
        string hash = Convert.ToHexStringLower(SHA256.HashData(bytes));
        output.WriteLine($"{{ GgmlType.{type}, \"{hash}\" }},");
        Assert.Equal(expected, hash);
    }
}
