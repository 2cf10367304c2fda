using System.Text;
using ModelSmith.Formats;
using ModelSmith.Quantization;
using Xunit.Abstractions;

namespace ModelSmith.Interop.Tests.Quantization;

/// <summary>
/// Our block formats against llama.cpp's own row functions (quantize_row_*_ref, dequantize_row_*,
/// GGML_FP32_TO_FP16), called in the same process: every block of every weight pattern and row length.
/// </summary>
[Trait("Category", "Interop")]
public sealed class BlockFormatOracleTests(ITestOutputHelper output)
{
    private const int Rows = 16;

    public static TheoryData<GgmlType> Types => new(GgmlQuants.BlockTypes);

    [Theory]
    [MemberData(nameof(Types))]
    public void Quantized_blocks_equal_llama_cpp_reference_quantizer_for_every_pattern_and_row_length(GgmlType type)
    {
        int block = GgmlTypeInfo.BlockSize(type);
        int[] rowLengths = block == 32 ? [32, 96, 256, 1024] : [256, 768, 2816];
        long total = 0;
        long identical = 0;
        double ourError = 0;
        double theirError = 0;
        var report = new StringBuilder();
        foreach (WeightPattern pattern in WeightPatterns.All)
        {
            foreach (int cols in rowLengths)
            {
                float[] x = WeightPatterns.Make(pattern, Rows, cols, seed: cols);
                var tally = CompareRows(type, x, Rows, cols);
                total += tally.Blocks;
                identical += tally.Identical;
                ourError += tally.OurError;
                theirError += tally.TheirError;
                if (tally.Identical != tally.Blocks)
                {
                    report.AppendLine($"  {pattern} × {cols}: {tally.Identical}/{tally.Blocks} identical; first difference {tally.FirstDifference}");
                }
            }
        }
        output.WriteLine($"{type}: {identical}/{total} blocks identical ({100.0 * identical / total:F3}%); squared error of differing blocks ours {ourError:G4}, llama.cpp {theirError:G4}");
        output.WriteLine(report.ToString());
        Assert.True(identical == total, $"{type}: {total - identical} of {total} blocks differ from llama.cpp's reference quantizer:\n{report}");
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void Extreme_magnitudes_quantize_exactly_like_llama_cpp(GgmlType type)
    {
        // Float subnormals (the scales underflow F16 and 1/d overflows to infinity), values whose scales
        // overflow F16, and blocks mixing 1e30 with 1e-30: outside any real model, but llama.cpp still writes
        // well-defined bytes and ours must be the same.
        int cols = GgmlTypeInfo.BlockSize(type) == 32 ? 256 : 512;
        var rng = new Random(7);
        var x = new float[4 * cols];
        for (int i = 0; i < cols; i++)
        {
            x[i] = (float)(rng.NextDouble() * 2 - 1) * 1e-39f;
            x[cols + i] = (float)(rng.NextDouble() * 2 - 1) * 1e30f;
            x[2 * cols + i] = (float)(rng.NextDouble() * 2 - 1) * (i % 7 == 0 ? 1e30f : 1e-30f);
            x[3 * cols + i] = (float)(rng.NextDouble() * 2 - 1) * 3e5f;
        }
        var tally = CompareRows(type, x, 4, cols);
        output.WriteLine($"{type}: {tally.Identical}/{tally.Blocks} identical; first difference {tally.FirstDifference}");
        Assert.Equal(tally.Blocks, tally.Identical);
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void Dequantized_values_equal_llama_cpp_bit_for_bit(GgmlType type)
    {
        int cols = GgmlTypeInfo.BlockSize(type) * 8;
        int rowSize = BlockQuantizer.RowSize(type, cols);
        var bytes = new byte[rowSize];
        var ours = new float[cols];
        var theirs = new float[cols];
        int rowsChecked = 0;

        // Blocks llama.cpp writes for real weights...
        foreach (WeightPattern pattern in WeightPatterns.All)
        {
            float[] x = WeightPatterns.Make(pattern, 4, cols, seed: 3);
            for (int r = 0; r < 4; r++)
            {
                GgmlQuants.QuantizeRowRef(type, x.AsSpan(r * cols, cols), bytes);
                CompareDequantized(type, bytes, ours, theirs, $"{pattern} row {r}");
                rowsChecked++;
            }
        }
        // ...and arbitrary bytes, so that every bit of every field is decoded (F16 scales include
        // subnormals, infinities and NaNs).
        var rng = new Random(11);
        for (int i = 0; i < 200; i++)
        {
            rng.NextBytes(bytes);
            CompareDequantized(type, bytes, ours, theirs, $"random bytes #{i}");
            rowsChecked++;
        }
        output.WriteLine($"{type}: {rowsChecked} rows of {cols} values dequantize bit for bit as llama.cpp does");
    }

    [Fact]
    public void Half_conversion_rounds_like_ggml_for_ties_subnormals_overflow_and_nan()
    {
        var values = new List<float>();
        // Every tie between consecutive F16 values (and one float ulp either side), both signs.
        for (int h = 0; h < 0x7C00; h++)
        {
            float lo = (float)BitConverter.UInt16BitsToHalf((ushort)h);
            float hi = h + 1 == 0x7C00 ? 65520f : (float)BitConverter.UInt16BitsToHalf((ushort)(h + 1));
            float mid = (lo + hi) / 2;
            foreach (float v in new[] { lo, mid, MathF.BitDecrement(mid), MathF.BitIncrement(mid) })
            {
                values.Add(v);
                values.Add(-v);
            }
        }
        // Random bit patterns over the whole float range, and the special values.
        var rng = new Random(5);
        for (int i = 0; i < 1 << 20; i++)
        {
            values.Add(BitConverter.Int32BitsToSingle(rng.Next() ^ (rng.Next(2) << 31)));
        }
        values.AddRange([0f, -0f, float.Epsilon, 65504f, 65519.996f, 65520f, 1e10f, float.MaxValue, float.PositiveInfinity,
            float.NegativeInfinity, float.NaN, BitConverter.Int32BitsToSingle(0x7F800001), BitConverter.Int32BitsToSingle(-1)]);

        float[] x = values.ToArray();
        var theirs = new ushort[x.Length];
        GgmlQuants.Fp32ToFp16Row(x, theirs);
        int checkedCount = 0;
        for (int i = 0; i < x.Length; i++)
        {
            ushort ours = QuantMath.FloatToHalfBits(x[i]);
            Assert.True(ours == theirs[i], $"F16 of {x[i]:R} (0x{BitConverter.SingleToUInt32Bits(x[i]):X8}): ours 0x{ours:X4}, ggml 0x{theirs[i]:X4}");
            checkedCount++;
        }
        output.WriteLine($"{checkedCount} floats convert to the same F16 bits as ggml_fp32_to_fp16_row");
    }

    [Fact]
    public void Bfloat16_conversion_rounds_like_ggml()
    {
        var rng = new Random(9);
        var x = new float[1 << 20];
        for (int i = 0; i < x.Length; i++)
        {
            x[i] = BitConverter.Int32BitsToSingle(rng.Next() ^ (rng.Next(2) << 31));
        }
        // Ties to even in both directions, NaNs with payloads, infinities.
        x[0] = BitConverter.Int32BitsToSingle(0x3F808000);
        x[1] = BitConverter.Int32BitsToSingle(0x3F818000);
        x[2] = BitConverter.Int32BitsToSingle(0x7F800001);
        x[3] = BitConverter.Int32BitsToSingle(0x7FFFFFFF);
        x[4] = float.PositiveInfinity;
        x[5] = BitConverter.Int32BitsToSingle(0x7F7FFFFF);
        var theirs = new ushort[x.Length];
        GgmlQuants.Fp32ToBf16RowRef(x, theirs);
        for (int i = 0; i < x.Length; i++)
        {
            ushort ours = BlockQuantizer.FloatToBFloat16Bits(x[i]);
            Assert.True(ours == theirs[i], $"BF16 of 0x{BitConverter.SingleToUInt32Bits(x[i]):X8}: ours 0x{ours:X4}, ggml 0x{theirs[i]:X4}");
        }
    }

    internal readonly record struct Tally(long Blocks, long Identical, double OurError, double TheirError, string FirstDifference);

    /// <summary>Quantizes each row with ours and llama.cpp's reference and compares block by block; for
    /// blocks that differ, sums each side's squared reconstruction error.</summary>
    internal static Tally CompareRows(GgmlType type, float[] x /* (rows, cols) */, int rows, int cols)
    {
        int typeSize = GgmlTypeInfo.TypeSize(type);
        int block = GgmlTypeInfo.BlockSize(type);
        int rowSize = BlockQuantizer.RowSize(type, cols);
        var ours = new byte[rowSize];
        var theirs = new byte[rowSize];
        var ourValues = new float[block];
        var theirValues = new float[block];
        long blocks = 0;
        long identical = 0;
        double ourError = 0;
        double theirError = 0;
        string first = "none";
        for (int r = 0; r < rows; r++)
        {
            ReadOnlySpan<float> row = x.AsSpan(r * cols, cols);
            // ggml leaves Q8_K's bsums of an all-zero block unwritten; ours writes zeros.
            Array.Clear(theirs);
            BlockQuantizer.QuantizeRow(type, row, ours);
            GgmlQuants.QuantizeRowRef(type, row, theirs);
            for (int b = 0; b < cols / block; b++)
            {
                blocks++;
                var o = ours.AsSpan(b * typeSize, typeSize);
                var t = theirs.AsSpan(b * typeSize, typeSize);
                if (o.SequenceEqual(t))
                {
                    identical++;
                    continue;
                }
                if (first == "none")
                {
                    int at = o.CommonPrefixLength(t);
                    first = $"row {r} block {b} byte {at}: ours 0x{o[at]:X2}, llama.cpp 0x{t[at]:X2}";
                }
                BlockQuantizer.DequantizeRow(type, o, ourValues);
                BlockQuantizer.DequantizeRow(type, t, theirValues);
                for (int j = 0; j < block; j++)
                {
                    double w = row[b * block + j];
                    ourError += (ourValues[j] - w) * (ourValues[j] - w);
                    theirError += (theirValues[j] - w) * (theirValues[j] - w);
                }
            }
        }
        return new Tally(blocks, identical, ourError, theirError, first);
    }

    private static void CompareDequantized(GgmlType type, byte[] bytes, float[] ours, float[] theirs, string what)
    {
        BlockQuantizer.DequantizeRow(type, bytes, ours);
        GgmlQuants.DequantizeRow(type, bytes, theirs);
        for (int j = 0; j < ours.Length; j++)
        {
            bool same = BitConverter.SingleToInt32Bits(ours[j]) == BitConverter.SingleToInt32Bits(theirs[j])
                || (float.IsNaN(ours[j]) && float.IsNaN(theirs[j]));
            Assert.True(same, $"{type} {what}, value {j}: ours {ours[j]:R}, llama.cpp {theirs[j]:R}");
        }
    }
}
