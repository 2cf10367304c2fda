using System.Text;
using LLama.Native;
using ModelSmith.Formats;
using ModelSmith.Quantization;
using Xunit.Abstractions;

namespace ModelSmith.Interop.Tests.Quantization;

/// <summary>
/// The whole path a user takes: an F32 GGUF written by our GgufWriter, quantized by llama.cpp's
/// llama_model_quantize (pure, so every matrix gets the requested type), read back with our GgufFile;
/// each tensor's bytes are compared with our quantizer's output for the same F32 weights, and our
/// dequantization of llama.cpp's bytes with ggml's own dequantize_row_*.
/// </summary>
[Trait("Category", "Interop")]
public sealed class LlamaQuantizeFileTests(ITestOutputHelper output, LlamaQuantizeFileTests.Model model) : IClassFixture<LlamaQuantizeFileTests.Model>
{
    /// <summary>The synthetic F32 model, written once for all cases.</summary>
    public sealed class Model : IDisposable
    {
        public Model()
        {
            Directory = System.IO.Directory.CreateTempSubdirectory("modelsmith-quant-").FullName;
            Path = System.IO.Path.Combine(Directory, "synthetic-f32.gguf");
            Matrices = SyntheticLlama.Write(Path);
        }

        public string Directory { get; }

        public string Path { get; }

        public Dictionary<string, (float[] Values, int Rows, int Cols)> Matrices { get; }

        public void Dispose() => System.IO.Directory.Delete(Directory, recursive: true);
    }

    public static TheoryData<LLamaFtype, GgmlType> FileTypes => new()
    {
        { LLamaFtype.MOSTLY_Q8_0, GgmlType.Q8_0 },
        { LLamaFtype.MOSTLY_Q4_0, GgmlType.Q4_0 },
        { LLamaFtype.MOSTLY_Q4_1, GgmlType.Q4_1 },
        { LLamaFtype.MOSTLY_Q5_0, GgmlType.Q5_0 },
        { LLamaFtype.MOSTLY_Q5_1, GgmlType.Q5_1 },
        { LLamaFtype.MOSTLY_Q2_K, GgmlType.Q2_K },
        { LLamaFtype.MOSTLY_Q3_K_M, GgmlType.Q3_K },
        { LLamaFtype.MOSTLY_Q4_K_M, GgmlType.Q4_K },
        { LLamaFtype.MOSTLY_Q5_K_M, GgmlType.Q5_K },
        { LLamaFtype.MOSTLY_Q6_K, GgmlType.Q6_K },
    };

    private readonly Model _model = model;

    [Theory]
    [MemberData(nameof(FileTypes))]
    public void Llama_cpp_quantized_file_has_our_bytes_in_every_tensor(LLamaFtype ftype, GgmlType type)
    {
        string quantized = Path.Combine(_model.Directory, $"synthetic-{type}.gguf");
        LlamaCppOracle.Quantize(_model.Path, quantized, ftype, threads: 2, pure: true);
        try
        {
            using var file = GgufFile.Open(quantized);
            long blocks = 0;
            long identical = 0;
            var report = new StringBuilder();
            int typeSize = GgmlTypeInfo.TypeSize(type);
            foreach ((string name, (float[] values, int rows, int cols)) in _model.Matrices)
            {
                GgufTensorInfo tensor = file.RequireTensor(name);
                Assert.True(tensor.Type == type, $"llama.cpp stored {name} as {tensor.Type}, expected {type} (pure quantization)");
                ReadOnlySpan<byte> theirs = file.GetTensorData(tensor).Span;
                var ours = new byte[rows * BlockQuantizer.RowSize(type, cols)];
                BlockQuantizer.Quantize(type, values, rows, cols, ours, threads: 2);
                Assert.Equal(ours.Length, theirs.Length);
                long tensorIdentical = 0;
                for (int b = 0; b < ours.Length / typeSize; b++)
                {
                    if (ours.AsSpan(b * typeSize, typeSize).SequenceEqual(theirs.Slice(b * typeSize, typeSize)))
                    {
                        tensorIdentical++;
                    }
                }
                blocks += ours.Length / typeSize;
                identical += tensorIdentical;
                report.AppendLine($"  {name,-24} {rows,4}×{cols,-4} {tensorIdentical}/{ours.Length / typeSize}");

                // Our dequantization of llama.cpp's bytes is ggml's, bit for bit.
                var ourValues = new float[cols];
                var ggmlValues = new float[cols];
                int rowSize = BlockQuantizer.RowSize(type, cols);
                for (int r = 0; r < rows; r++)
                {
                    ReadOnlySpan<byte> row = theirs.Slice(r * rowSize, rowSize);
                    BlockQuantizer.DequantizeRow(type, row, ourValues);
                    GgmlQuants.DequantizeRow(type, row, ggmlValues);
                    Assert.True(ourValues.AsSpan().SequenceEqual(ggmlValues), $"{name} row {r}: our dequantization differs from ggml's");
                }
            }
            output.WriteLine($"{ftype} → {type}: {identical}/{blocks} blocks identical ({100.0 * identical / blocks:F2}%), {new FileInfo(quantized).Length} bytes");
            output.WriteLine(report.ToString());
            Assert.Equal(blocks, identical);
        }
        finally
        {
            File.Delete(quantized);
        }
    }
}
