using System.Runtime.InteropServices;
using ModelSmith.Formats;
using ModelSmith.Models;
using ModelSmith.Quantization;

namespace ModelSmith.Tests.Quantization;

/// <summary>ModelQuantizer on small random models: the file it writes, its refusals, and that it never leaves a partial file.</summary>
public class MixesQuantizerTests
{
    private static readonly ModelConfig s_config = new()
    {
        Architecture = ModelArchitecture.Llama, VocabSize = 300, ContextLength = 64, EmbeddingLength = 256, BlockCount = 2,
        FeedForwardLength = 256, HeadCount = 4, KvHeadCount = 2, HeadDim = 64, RopeDims = 64, NormEpsilon = 1e-5f, TiedOutput = false,
    };

    [Fact]
    public void The_output_has_llama_cpp_metadata_order_and_types()
    {
        using var dir = new TempDirectory();
        string input = dir.File("f32.gguf");
        SyntheticModel.Write(input, s_config);
        QuantizationResult result = ModelQuantizer.Quantize(input, dir.File("q.gguf"), new QuantizeOptions { FileType = QuantFileType.Q4_K_M, Threads = 2 });

        using GgufFile inFile = GgufFile.Open(input);
        using GgufFile q = GgufFile.Open(dir.File("q.gguf"));
        Assert.Equal(15, q.GetInteger("general.file_type"));
        Assert.Equal(2, q.GetInteger("general.quantization_version"));
        Assert.Equal(GgufValueType.UInt32, q.Metadata["general.file_type"].Type);
        Assert.Equal(new[] { "general.quantization_version", "general.file_type" }, q.MetadataKeys.TakeLast(2));
        Assert.Equal(inFile.MetadataKeys.Where(k => k != "general.file_type"), q.MetadataKeys.SkipLast(2));
        Assert.Equal("output.weight", q.Tensors[0].Name);
        Assert.Equal("blk.0.attn_k.weight", q.Tensors.First(t => t.Name.StartsWith("blk.", StringComparison.Ordinal)).Name);
        Assert.Equal(GgmlType.Q6_K, q.RequireTensor("output.weight").Type);
        Assert.Equal(GgmlType.Q4_K, q.RequireTensor("blk.0.attn_v.weight").Type);
        Assert.Equal(GgmlType.Q6_K, q.RequireTensor("blk.1.attn_v.weight").Type); // use_more_bits(1, 2): the last eighth
        Assert.Equal(GgmlType.Q4_K, q.RequireTensor("blk.0.attn_q.weight").Type);
        Assert.Equal(GgmlType.F32, q.RequireTensor("blk.0.attn_norm.weight").Type);
        Assert.Equal(result.FileBytes, new FileInfo(dir.File("q.gguf")).Length);
        Assert.Equal(q.Tensors.Count, result.TensorTimes.Count);
        Assert.InRange(result.Plan.BitsPerWeightAfter, 4.5, 6.6);
    }

    [Fact]
    public void Quantized_tensors_hold_what_the_block_quantizer_makes_of_the_weights()
    {
        using var dir = new TempDirectory();
        string input = dir.File("f32.gguf");
        SyntheticModel.Write(input, s_config);
        ModelQuantizer.Quantize(input, dir.File("q.gguf"), new QuantizeOptions { FileType = QuantFileType.Q5_K_S, Threads = 1 });
        using GgufFile inFile = GgufFile.Open(input);
        using GgufFile q = GgufFile.Open(dir.File("q.gguf"));
        foreach (GgufTensorInfo t in q.Tensors)
        {
            GgufTensorInfo source = inFile.RequireTensor(t.Name);
            ReadOnlySpan<float> values = MemoryMarshal.Cast<byte, float>(inFile.GetTensorData(source).Span);
            int cols = (int)t.Shape[0];
            int rows = (int)(t.ElementCount / cols);
            var expected = new byte[rows * BlockQuantizer.RowSize(t.Type, cols)];
            BlockQuantizer.Quantize(t.Type, values, rows, cols, expected);
            Assert.True(expected.AsSpan().SequenceEqual(q.GetTensorData(t).Span), t.Name);
        }
    }

    [Fact]
    public void Progress_is_reported_once_per_tensor_in_order()
    {
        using var dir = new TempDirectory();
        string input = dir.File("f32.gguf");
        SyntheticModel.Write(input, s_config);
        var reports = new List<QuantizeProgress>();
        QuantizationResult result = ModelQuantizer.Quantize(input, dir.File("q.gguf"), new QuantizeOptions { FileType = QuantFileType.Q8_0, Threads = 1 },
            new SynchronousProgress<QuantizeProgress>(reports.Add));
        Assert.Equal(result.Plan.Tensors.Count, reports.Count);
        Assert.Equal(Enumerable.Range(1, reports.Count), reports.Select(r => r.Index));
        Assert.Equal(result.Plan.Tensors.Select(t => t.Name), reports.Select(r => r.Name));
        Assert.Equal(result.Plan.Elements, reports[^1].ElementsDone);
        Assert.True(reports.Zip(reports.Skip(1)).All(p => p.First.ElementsDone < p.Second.ElementsDone));
    }

    [Fact]
    public void An_already_quantized_model_is_requantized_only_when_allowed_and_then_with_a_warning()
    {
        using var dir = new TempDirectory();
        string input = dir.File("f32.gguf");
        SyntheticModel.Write(input, s_config);
        ModelQuantizer.Quantize(input, dir.File("q8.gguf"), new QuantizeOptions { FileType = QuantFileType.Q8_0, Threads = 1 });
        var e = Assert.Throws<QuantizationException>(() =>
            ModelQuantizer.Quantize(dir.File("q8.gguf"), dir.File("q4.gguf"), new QuantizeOptions { FileType = QuantFileType.Q4_0, Threads = 1 }));
        Assert.Contains("--allow-requantize", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(dir.File("q4.gguf")));

        QuantizationResult result = ModelQuantizer.Quantize(dir.File("q8.gguf"), dir.File("q4.gguf"),
            new QuantizeOptions { FileType = QuantFileType.Q4_0, AllowRequantize = true, Threads = 1 });
        Assert.Contains(result.Plan.Warnings, w => w.StartsWith("requantizing", StringComparison.Ordinal));
        using GgufFile q4 = GgufFile.Open(dir.File("q4.gguf"));
        Assert.Equal(GgmlType.Q4_0, q4.RequireTensor("blk.1.ffn_up.weight").Type);
        Assert.Equal(2, q4.GetInteger("general.file_type"));
    }

    [Fact]
    public void Requantizing_to_the_same_types_copies_the_tensors_without_permission()
    {
        using var dir = new TempDirectory();
        string input = dir.File("f32.gguf");
        SyntheticModel.Write(input, s_config);
        ModelQuantizer.Quantize(input, dir.File("a.gguf"), new QuantizeOptions { FileType = QuantFileType.Q4_K_M, Threads = 1 });
        QuantizationResult again = ModelQuantizer.Quantize(dir.File("a.gguf"), dir.File("b.gguf"), new QuantizeOptions { FileType = QuantFileType.Q4_K_M, Threads = 1 });
        Assert.Empty(again.Plan.Warnings);
        Assert.All(again.Plan.Tensors, t => Assert.False(t.Converted));
        Assert.Equal(File.ReadAllBytes(dir.File("a.gguf")), File.ReadAllBytes(dir.File("b.gguf")));
    }

    [Fact]
    public void An_f16_model_is_quantized_from_its_f16_values()
    {
        using var dir = new TempDirectory();
        SyntheticModel.Write(dir.File("f16.gguf"), s_config, GgmlType.F16);
        ModelQuantizer.Quantize(dir.File("f16.gguf"), dir.File("q.gguf"), new QuantizeOptions { FileType = QuantFileType.Q6_K, Threads = 2 });
        using GgufFile f16 = GgufFile.Open(dir.File("f16.gguf"));
        using GgufFile q = GgufFile.Open(dir.File("q.gguf"));
        GgufTensorInfo t = q.RequireTensor("blk.1.ffn_down.weight");
        var floats = new float[t.ElementCount];
        BlockQuantizer.Dequantize(GgmlType.F16, f16.GetTensorData(f16.RequireTensor(t.Name)).Span, (int)t.Rows, (int)t.Columns, floats);
        var expected = new byte[t.ByteSize];
        BlockQuantizer.Quantize(GgmlType.Q6_K, floats, (int)t.Rows, (int)t.Columns, expected);
        Assert.True(expected.AsSpan().SequenceEqual(q.GetTensorData(t).Span));
    }

    [Fact]
    public void No_fallback_refuses_and_names_the_tensors_that_would_fall_back()
    {
        using var dir = new TempDirectory();
        var odd = s_config with { EmbeddingLength = 96, HeadCount = 4, HeadDim = 24, RopeDims = 24, FeedForwardLength = 192 };
        SyntheticModel.Write(dir.File("f32.gguf"), odd);
        var e = Assert.Throws<QuantizationException>(() => ModelQuantizer.Quantize(dir.File("f32.gguf"), dir.File("q.gguf"),
            new QuantizeOptions { FileType = QuantFileType.Q4_K_M, NoFallback = true }));
        Assert.Contains("--no-fallback", e.Message, StringComparison.Ordinal);
        Assert.Contains("blk.0.attn_q.weight (rows of 96)", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(dir.File("q.gguf")));

        QuantizationResult result = ModelQuantizer.Quantize(dir.File("f32.gguf"), dir.File("q.gguf"), new QuantizeOptions { FileType = QuantFileType.Q4_K_M });
        Assert.Contains(result.Plan.Fallbacks, t => t.Name == "blk.0.attn_q.weight" && t.Wanted == GgmlType.Q4_K && t.To == GgmlType.Q5_0);
    }

    [Fact]
    public void A_failure_while_writing_leaves_the_previous_output_untouched()
    {
        using var dir = new TempDirectory();
        string input = dir.File("bad.gguf");
        using (GgufFile stories = GgufFile.Open(RepoPaths.Stories260K))
        {
            GgufWriter writer = GgufWriter.From(stories);
            var weights = new float[64 * 64];
            weights[777] = float.NaN;
            writer.AddTensor("blk.9.attn_q.weight", [64, 64], weights);
            writer.Write(input);
        }
        File.WriteAllText(dir.File("out.gguf"), "previous contents");
        var e = Assert.Throws<QuantizationException>(() => ModelQuantizer.Quantize(input, dir.File("out.gguf"), new QuantizeOptions { FileType = QuantFileType.Q4_K_M }));
        Assert.Contains("blk.9.attn_q.weight", e.Message, StringComparison.Ordinal);
        Assert.Contains("row 12, column 9", e.Message, StringComparison.Ordinal);
        Assert.Equal("previous contents", File.ReadAllText(dir.File("out.gguf")));
        Assert.Single(Directory.GetFiles(dir.Path, "out.gguf*"));
    }

    [Fact]
    public void The_input_cannot_be_the_output()
    {
        var e = Assert.Throws<QuantizationException>(() => ModelQuantizer.Quantize(RepoPaths.Stories260K, RepoPaths.Stories260K, new QuantizeOptions { FileType = QuantFileType.Q4_K_M }));
        Assert.Contains("new file", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_importance_matrix_for_another_model_is_refused_naming_the_tensor()
    {
        using var dir = new TempDirectory();
        SyntheticModel.Write(dir.File("f32.gguf"), s_config);
        var matrix = new ImportanceMatrix { ChunkSize = 64, ChunkCount = 1 };
        matrix.Set("blk.0.attn_q.weight", new ImatrixEntry(new float[128], [64]));
        var e = Assert.Throws<QuantizationException>(() => ModelQuantizer.Quantize(dir.File("f32.gguf"), dir.File("q.gguf"),
            new QuantizeOptions { FileType = QuantFileType.Q4_K_M, Importance = matrix }));
        Assert.Contains("blk.0.attn_q.weight", e.Message, StringComparison.Ordinal);
        Assert.Contains("128", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_importance_matrix_is_applied_and_recorded_as_llama_quantize_records_it()
    {
        using var dir = new TempDirectory();
        SyntheticModel.Write(dir.File("f32.gguf"), s_config);
        var matrix = new ImportanceMatrix { ChunkSize = 64, ChunkCount = 5 };
        matrix.Datasets.Add("calibration.txt");
        var importance = Enumerable.Range(0, 256).Select(i => 1f + (i % 7)).ToArray();
        matrix.Set("blk.0.attn_q.weight", new ImatrixEntry(importance.Select(v => v * 10).ToArray(), [10]));
        QuantizationResult result = ModelQuantizer.Quantize(dir.File("f32.gguf"), dir.File("q.gguf"),
            new QuantizeOptions { FileType = QuantFileType.Q4_K_M, Importance = matrix, ImportanceFile = "m.imatrix" });
        Assert.Equal(new[] { "blk.0.attn_q.weight" }, result.Plan.Tensors.Where(t => t.UsesImportance).Select(t => t.Name));
        Assert.Contains(result.Plan.Warnings, w => w.Contains("no entry", StringComparison.Ordinal));

        using GgufFile f32 = GgufFile.Open(dir.File("f32.gguf"));
        using GgufFile q = GgufFile.Open(dir.File("q.gguf"));
        Assert.Equal("m.imatrix", q.GetString("quantize.imatrix.file"));
        Assert.Equal("calibration.txt", q.GetString("quantize.imatrix.dataset"));
        Assert.Equal(1, q.GetInteger("quantize.imatrix.entries_count"));
        Assert.Equal(5, q.GetInteger("quantize.imatrix.chunks_count"));
        GgufTensorInfo t = q.RequireTensor("blk.0.attn_q.weight");
        var expected = new byte[t.ByteSize];
        BlockQuantizer.Quantize(GgmlType.Q4_K, MemoryMarshal.Cast<byte, float>(f32.GetTensorData(f32.RequireTensor(t.Name)).Span), 256, 256, expected, 1, importance);
        Assert.True(expected.AsSpan().SequenceEqual(q.GetTensorData(t).Span));
    }

    /// <summary>Reports on the calling thread, in order.</summary>
    private sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
