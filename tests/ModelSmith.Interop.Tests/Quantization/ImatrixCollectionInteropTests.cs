using System.Text;
using ModelSmith.Formats;
using ModelSmith.Models;
using ModelSmith.Quantization;
using ModelSmith.Tokenization;
using Xunit.Abstractions;

namespace ModelSmith.Interop.Tests.Quantization;

/// <summary>
/// ImatrixComputer against llama.cpp: the same chunks run through llama.cpp with llama-imatrix's collection
/// rule in an eval callback must give the same entries (which weights), the same token counts and the same
/// per-column sums of squares up to the forward passes' float differences. And our GGUF imatrix files read
/// back through ggml's own GGUF parser with the layout llama-imatrix writes.
/// </summary>
[Trait("Category", "Interop")]
public sealed class ImatrixCollectionInteropTests(ITestOutputHelper output)
{
    private const int Context = 64;
    private const int Chunks = 3;

    [Fact]
    public void Stories260K_statistics_match_llama_cpp_collection_on_real_text()
    {
        using GgufFile file = GgufFile.Open(RepoPaths.Stories260K);
        Tokenizer tokenizer = GgufTokenizer.Load(file);
        string text = CalibrationText.Read([Path.Combine(RepoPaths.Root, "data", "brown", "fiction-science.txt.gz")]);
        int[] tokens = tokenizer.Encode(text[..20000], addSpecial: true);
        Compare(RepoPaths.Stories260K, tokens, tokenizer.Bos, processOutput: true);
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    public void Random_model_statistics_match_llama_cpp_collection(string architecture)
    {
        ModelConfig config = architecture == "llama"
            ? new ModelConfig
            {
                Architecture = ModelArchitecture.Llama, VocabSize = 320, ContextLength = 128, EmbeddingLength = 96, BlockCount = 3,
                FeedForwardLength = 200, HeadCount = 4, KvHeadCount = 2, HeadDim = 24, RopeDims = 24, NormEpsilon = 1e-5f, TiedOutput = false,
            }
            : new ModelConfig
            {
                Architecture = ModelArchitecture.Gpt2, VocabSize = 300, ContextLength = 128, EmbeddingLength = 64, BlockCount = 2,
                FeedForwardLength = 256, HeadCount = 4, KvHeadCount = 4, HeadDim = 16, NormEpsilon = 1e-5f, TiedOutput = false,
            };
        string path = Path.Combine(Path.GetTempPath(), $"modelsmith-imatrix-{architecture}-{Environment.ProcessId}.gguf");
        try
        {
            SyntheticModel.Write(path, config, GgmlType.F32, seed: 5);
            var rng = new Random(3);
            int[] tokens = new int[Chunks * Context + 1];
            for (int i = 0; i < tokens.Length; i++)
            {
                tokens[i] = rng.Next(3, config.VocabSize);
            }
            Compare(path, tokens, bos: 1, processOutput: true);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Our_gguf_imatrix_reads_back_through_ggml_gguf_parser()
    {
        var matrix = new ImportanceMatrix { ChunkCount = 7, ChunkSize = 512 };
        matrix.Datasets.Add("data/brown/learned.txt.gz");
        matrix.Datasets.Add("second.txt");
        matrix.Set("blk.0.attn_q.weight", new ImatrixEntry([1f, 2f, 3f, 4f], [3584], [0.5f, -1f, 0f, 2f]));
        matrix.Set("blk.0.ffn_down.weight", new ImatrixEntry([5f, 6f], [3584]));
        matrix.Set("blk.1.ffn_down_exps.weight", new ImatrixEntry([1f, 2f, 3f, 4f, 5f, 6f], [10, 0, 30]));
        string path = Path.Combine(Path.GetTempPath(), $"modelsmith-imatrix-{Environment.ProcessId}.gguf");
        try
        {
            matrix.SaveGguf(path);
            ImatrixNative.GgufContents read = ImatrixNative.ReadGguf(path);
            Assert.Equal("imatrix", read.Metadata["general.type"]);
            Assert.Equal(new[] { "data/brown/learned.txt.gz", "second.txt" }, (string[])read.Metadata["imatrix.datasets"]);
            Assert.Equal(7u, read.Metadata["imatrix.chunk_count"]);
            Assert.Equal(512u, read.Metadata["imatrix.chunk_size"]);
            Assert.Equal(
                new[] { "blk.0.attn_q.weight.counts", "blk.0.attn_q.weight.in_sum", "blk.0.attn_q.weight.in_sum2", "blk.0.ffn_down.weight.counts", "blk.0.ffn_down.weight.in_sum2", "blk.1.ffn_down_exps.weight.counts", "blk.1.ffn_down_exps.weight.in_sum2" },
                read.Tensors.Keys.Order(StringComparer.Ordinal).ToArray());
            Assert.Equal(new[] { 1f, 2f, 3f, 4f }, read.Tensors["blk.0.attn_q.weight.in_sum2"].Data);
            Assert.Equal(new[] { 0.5f, -1f, 0f, 2f }, read.Tensors["blk.0.attn_q.weight.in_sum"].Data);
            Assert.Equal(new[] { 3584f }, read.Tensors["blk.0.attn_q.weight.counts"].Data);
            Assert.Equal(new long[] { 2, 3, 1, 1 }, read.Tensors["blk.1.ffn_down_exps.weight.in_sum2"].Shape);
            Assert.Equal(new long[] { 1, 3, 1, 1 }, read.Tensors["blk.1.ffn_down_exps.weight.counts"].Shape);
            Assert.Equal(new[] { 10f, 0f, 30f }, read.Tensors["blk.1.ffn_down_exps.weight.counts"].Data);
            Assert.All(read.Tensors.Values, t => Assert.Equal(GgmlType.F32, t.Type));
        }
        finally
        {
            File.Delete(path);
        }
    }

    private void Compare(string modelPath, int[] tokens, int bos, bool processOutput)
    {
        Dictionary<string, ImatrixNative.Stats> theirs = ImatrixNative.Collect(modelPath, tokens, Context, Chunks, bos, processOutput, threads: 1);
        ImatrixResult ours;
        using (LanguageModel model = LanguageModel.Load(modelPath, threads: 2))
        {
            ours = ImatrixComputer.Compute(model, tokens, bos, addBos: true,
                new ImatrixOptions { ContextSize = Context, MaxChunks = Chunks, ProcessOutput = processOutput });
        }
        Assert.Equal(theirs.Keys.Order(StringComparer.Ordinal), ours.Matrix.Entries.Keys);
        var report = new StringBuilder();
        double worst = 0;
        foreach ((string name, ImatrixNative.Stats t) in theirs)
        {
            ImatrixEntry e = ours.Matrix.Entries[name];
            Assert.Equal(t.Count, e.Counts[0]);
            Assert.Equal(t.Values.Length, e.SumSquares.Length);
            double maxDiff = 0;
            double maxValue = 0;
            double maxSumDiff = 0;
            double maxSum = 0;
            for (int j = 0; j < t.Values.Length; j++)
            {
                maxDiff = Math.Max(maxDiff, Math.Abs(e.SumSquares[j] - t.Values[j]));
                maxValue = Math.Max(maxValue, Math.Abs(t.Values[j]));
                maxSumDiff = Math.Max(maxSumDiff, Math.Abs(e.Sums![j] - t.Activations[j]));
                maxSum = Math.Max(maxSum, Math.Sqrt(t.Values[j] * t.Count));
            }
            double relative = maxDiff / maxValue;
            double relativeSum = maxSumDiff / maxSum;
            worst = Math.Max(worst, Math.Max(relative, relativeSum));
            report.AppendLine($"  {name,-28} count {t.Count}, Σx² rel. max diff {relative:E2}, Σx {relativeSum:E2}");
        }
        output.WriteLine($"{Path.GetFileName(modelPath)}: {theirs.Count} entries, worst relative difference {worst:E2}, perplexity {ours.Perplexity:F3}");
        output.WriteLine(report.ToString());
        Assert.True(worst < 1e-4, $"statistics differ from llama.cpp's by up to {worst:E2}:\n{report}");
    }
}
