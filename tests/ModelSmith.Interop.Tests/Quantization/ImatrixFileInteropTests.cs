using LLama.Native;
using ModelSmith.Formats;
using ModelSmith.Quantization;
using Xunit.Abstractions;

namespace ModelSmith.Interop.Tests.Quantization;

/// <summary>
/// Whole files quantized with an importance matrix: ModelQuantizer with an ImportanceMatrix against
/// llama_model_quantize given the same per-tensor values through llama_model_quantize_params.imatrix (what
/// llama-quantize --imatrix passes). Types (including the Q4_0/Q5_0 ffn_down rule that only applies with an
/// imatrix) and bytes must be identical; entries that are missing, or of the wrong size for token_embd, are
/// skipped by both.
/// </summary>
[Trait("Category", "Interop")]
public sealed class ImatrixFileInteropTests(ITestOutputHelper output, MixesFileInteropTests.Models models) : IClassFixture<MixesFileInteropTests.Models>
{
    /// <summary>llama-quantize records these from its command line; the raw API call has no such keys.</summary>
    private static readonly HashSet<string> s_imatrixKeys = new(StringComparer.Ordinal)
    {
        "quantize.imatrix.file", "quantize.imatrix.dataset", "quantize.imatrix.entries_count", "quantize.imatrix.chunks_count",
    };

    public static TheoryData<string, QuantFileType> Cases => new()
    {
        { "llama-16-layers-gqa4", QuantFileType.Q4_0 },
        { "llama-16-layers-gqa4", QuantFileType.Q5_0 },
        { "llama-4-layers-gqa2", QuantFileType.Q4_1 },
        { "llama-4-layers-gqa2", QuantFileType.Q5_1 },
        { "llama-4-layers-gqa2", QuantFileType.Q8_0 },
        { "llama-4-layers-gqa2", QuantFileType.Q2_K },
        { "llama-4-layers-gqa2", QuantFileType.Q3_K_S },
        { "llama-4-layers-gqa2", QuantFileType.Q4_K_M },
        { "llama-4-layers-gqa2", QuantFileType.Q5_K_S },
        { "llama-4-layers-gqa2", QuantFileType.Q6_K },
        { "stories260K", QuantFileType.Q4_K_M },
        { "gpt2-rows-256", QuantFileType.Q3_K_M },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void File_quantized_with_an_importance_matrix_equals_llama_cpp(string model, QuantFileType fileType)
    {
        string input = models.Paths[model];
        string theirs = Path.Combine(models.Directory, $"{model}-{fileType}-imatrix-llama.gguf");
        string ours = Path.Combine(models.Directory, $"{model}-{fileType}-imatrix-ours.gguf");
        Dictionary<string, float[]> values = MakeImportance(input);
        var matrix = new ImportanceMatrix { ChunkCount = 3, ChunkSize = 64 };
        matrix.Datasets.Add("synthetic.txt");
        foreach ((string name, float[] v) in values)
        {
            matrix.Set(name, new ImatrixEntry((float[])v.Clone(), [1]));
        }
        try
        {
            MixesNative.QuantizeWithImportance(input, theirs, (LLamaFtype)(int)fileType, threads: 2, values);
            QuantizationResult result = ModelQuantizer.Quantize(input, ours, new QuantizeOptions
            {
                FileType = fileType, Importance = matrix, ImportanceFile = "synthetic.imatrix", Threads = 2,
            });
            int used = result.Plan.Tensors.Count(t => t.UsesImportance);
            output.WriteLine($"{model} {fileType}: {used} tensors quantized with importance data; warnings: {string.Join(" | ", result.Plan.Warnings)}");
            (string report, string summary) = MixesFileComparison.Compare(ours, theirs, s_imatrixKeys);
            output.WriteLine(summary);
            Assert.True(report.Length == 0, $"our file differs from llama.cpp's:\n{report}");
            Assert.True(used > 0 || fileType == QuantFileType.Q8_0);

            using GgufFile file = GgufFile.Open(ours);
            Assert.Equal("synthetic.imatrix", file.GetString("quantize.imatrix.file"));
            Assert.Equal("synthetic.txt", file.GetString("quantize.imatrix.dataset"));
            Assert.Equal(values.Count, file.GetInteger("quantize.imatrix.entries_count"));
            Assert.Equal(3, file.GetInteger("quantize.imatrix.chunks_count"));
        }
        finally
        {
            File.Delete(theirs);
            File.Delete(ours);
        }
    }

    /// <summary>
    /// Importance rows for every quantizable matrix except one attn_k (left out: both quantize it without),
    /// log-normal with dead columns, plus a token_embd entry of the wrong size (both ignore it).
    /// </summary>
    private static Dictionary<string, float[]> MakeImportance(string modelPath)
    {
        using GgufFile file = GgufFile.Open(modelPath);
        var values = new Dictionary<string, float[]>(StringComparer.Ordinal);
        var rng = new Random(modelPath.Length);
        foreach (GgufTensorInfo t in file.Tensors)
        {
            if (t.Shape.Length < 2 || t.Name.Contains("norm", StringComparison.Ordinal) || t.Name == "blk.1.attn_k.weight" || t.Name == "position_embd.weight")
            {
                continue;
            }
            int cols = (int)t.Shape[0];
            if (t.Name == "token_embd.weight")
            {
                cols += 1;
            }
            var v = new float[cols];
            for (int i = 0; i < cols; i++)
            {
                double u1 = 1.0 - rng.NextDouble();
                double normal = Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * rng.NextDouble());
                v[i] = rng.NextDouble() < 0.05 ? 0f : (float)Math.Exp(1.5 * normal);
            }
            values[t.Name] = v;
        }
        return values;
    }
}
