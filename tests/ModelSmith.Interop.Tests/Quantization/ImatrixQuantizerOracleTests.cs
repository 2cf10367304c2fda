using System.Text;
using ModelSmith.Formats;
using ModelSmith.Quantization;
using Xunit.Abstractions;

namespace ModelSmith.Interop.Tests.Quantization;

/// <summary>
/// Our importance-matrix quantizers (BlockQuantizer.Quantize with an importance row) against ggml's own
/// quantize_{type} given the same quant_weights, in the same process: every block of every weight pattern,
/// importance pattern and row length must be byte-identical.
/// </summary>
[Trait("Category", "Interop")]
public sealed class ImatrixQuantizerOracleTests(ITestOutputHelper output)
{
    private const int Rows = 6;

    public static TheoryData<GgmlType> Types => new(ImatrixGgmlExports.Types);

    [Theory]
    [MemberData(nameof(Types))]
    public void Quantized_blocks_with_an_importance_matrix_equal_llama_cpp_for_every_pattern(GgmlType type)
    {
        int block = GgmlTypeInfo.BlockSize(type);
        int[] rowLengths = block == 32 ? [32, 96, 512] : [256, 768];
        long total = 0;
        long identical = 0;
        var report = new StringBuilder();
        int seed = 0;
        foreach (WeightPattern pattern in WeightPatterns.All)
        {
            foreach (int cols in rowLengths)
            {
                foreach (ImportancePattern importancePattern in Enum.GetValues<ImportancePattern>())
                {
                    seed++;
                    float[] x = WeightPatterns.Make(pattern, Rows, cols, seed);
                    float[] importance = MakeImportance(importancePattern, cols, seed);
                    (long blocks, long same, string? first) = Compare(type, x, Rows, cols, importance);
                    total += blocks;
                    identical += same;
                    if (same != blocks)
                    {
                        report.AppendLine($"  {pattern} × {cols}, importance {importancePattern}: {same}/{blocks} identical; first difference {first}");
                    }
                }
            }
        }
        output.WriteLine($"{type} with imatrix: {identical}/{total} blocks identical ({100.0 * identical / total:F3}%)");
        output.WriteLine(report.ToString());
        Assert.True(identical == total, $"{type}: {total - identical} of {total} blocks differ from ggml's quantize_{type} with quant_weights:\n{report}");
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void Without_an_importance_matrix_the_whole_matrix_quantizer_is_the_reference(GgmlType type)
    {
        int cols = GgmlTypeInfo.BlockSize(type) * 4;
        float[] x = WeightPatterns.Make(WeightPattern.Outliers, Rows, cols, seed: 3);
        (long blocks, long same, string? first) = Compare(type, x, Rows, cols, []);
        Assert.True(blocks == same, $"{type}: first difference {first}");
    }

    [Fact]
    public void Threads_do_not_change_the_bytes_of_the_importance_path()
    {
        const int rows = 64;
        const int cols = 2048;
        float[] x = WeightPatterns.Make(WeightPattern.SmallNormal, rows, cols, seed: 11);
        float[] importance = MakeImportance(ImportancePattern.LogNormal, cols, seed: 11);
        foreach (GgmlType type in new[] { GgmlType.Q4_K, GgmlType.Q4_0 })
        {
            int size = rows * BlockQuantizer.RowSize(type, cols);
            var one = new byte[size];
            var two = new byte[size];
            BlockQuantizer.Quantize(type, x, rows, cols, one, threads: 1, importance);
            BlockQuantizer.Quantize(type, x, rows, cols, two, threads: 2, importance);
            Assert.Equal(one, two);
        }
    }

    /// <summary>Kinds of importance rows, shaped like imatrix data (mean squared activations per column).</summary>
    public enum ImportancePattern
    {
        /// <summary>exp(N(0, 1.5²)): the spread real activations have.</summary>
        LogNormal,
        /// <summary>All ones: every column equally important.</summary>
        Ones,
        /// <summary>Log-normal with a fifth of the columns exactly zero (columns no calibration token reached).</summary>
        DeadColumns,
        /// <summary>All zero.</summary>
        Zero,
        /// <summary>10^U(−8, 8): a huge dynamic range.</summary>
        WideRange,
        /// <summary>1e-3 except 2% of columns at 1e4 (outlier features).</summary>
        Spiky,
    }

    public static float[] MakeImportance(ImportancePattern pattern, int cols, int seed)
    {
        var rng = new Random(seed * 131 + (int)pattern);
        var q = new float[cols];
        for (int i = 0; i < cols; i++)
        {
            double u1 = 1.0 - rng.NextDouble();
            double u2 = rng.NextDouble();
            double normal = Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
            q[i] = pattern switch
            {
                ImportancePattern.LogNormal => (float)Math.Exp(1.5 * normal),
                ImportancePattern.Ones => 1f,
                ImportancePattern.DeadColumns => rng.NextDouble() < 0.2 ? 0f : (float)Math.Exp(1.5 * normal),
                ImportancePattern.Zero => 0f,
                ImportancePattern.WideRange => (float)Math.Pow(10, -8 + 16 * rng.NextDouble()),
                ImportancePattern.Spiky => rng.NextDouble() < 0.02 ? 1e4f : 1e-3f,
                _ => throw new ArgumentOutOfRangeException(nameof(pattern)),
            };
        }
        return q;
    }

    private static (long Blocks, long Identical, string? FirstDifference) Compare(GgmlType type, float[] x, int rows, int cols, float[] importance)
    {
        int typeSize = GgmlTypeInfo.TypeSize(type);
        int size = rows * BlockQuantizer.RowSize(type, cols);
        var ours = new byte[size];
        var theirs = new byte[size];
        BlockQuantizer.Quantize(type, x, rows, cols, ours, threads: 1, importance);
        ImatrixGgmlExports.Quantize(type, x, rows, cols, importance, theirs);
        long identical = 0;
        string? first = null;
        for (int b = 0; b < size / typeSize; b++)
        {
            if (ours.AsSpan(b * typeSize, typeSize).SequenceEqual(theirs.AsSpan(b * typeSize, typeSize)))
            {
                identical++;
            }
            else
            {
                first ??= $"block {b}: ours {Convert.ToHexString(ours, b * typeSize, Math.Min(typeSize, 24))}… llama.cpp {Convert.ToHexString(theirs, b * typeSize, Math.Min(typeSize, 24))}…";
            }
        }
        return (size / typeSize, identical, first);
    }
}
