using System.IO.Compression;
using System.Runtime.InteropServices;
using System.Text;
using ModelSmith.Formats;
using ModelSmith.Models;
using ModelSmith.Quantization;
using ModelSmith.Tokenization;

namespace ModelSmith.Tests.Quantization;

/// <summary>ImatrixComputer on stories260K and the calibration text reader.</summary>
public class ImatrixComputeTests
{
    private const int Context = 32;

    [Fact]
    public void Every_block_matmul_gets_an_entry_counting_every_token()
    {
        (LanguageModel model, int[] tokens, Tokenizer tokenizer) = Load();
        using (model)
        {
            ImatrixResult result = ImatrixComputer.Compute(model, tokens, tokenizer.Bos, tokenizer.AddBos,
                new ImatrixOptions { ContextSize = Context, MaxChunks = 3, Datasets = ["brown"] });
            Assert.Equal(3, result.Chunks);
            Assert.Equal(3 * Context, result.Tokens);
            Assert.Equal(5 * 7, result.Matrix.Entries.Count);
            Assert.DoesNotContain("output.weight", result.Matrix.Entries.Keys);
            Assert.All(result.Matrix.Entries.Values, e => Assert.Equal(new long[] { 3 * Context }, e.Counts));
            Assert.Equal(3, result.Matrix.ChunkCount);
            Assert.Equal(Context, result.Matrix.ChunkSize);
            Assert.Equal(new[] { "brown" }, result.Matrix.Datasets);
            Assert.Equal(result.Matrix.Entries["blk.2.attn_q.weight"].SumSquares, result.Matrix.Entries["blk.2.attn_v.weight"].SumSquares);
            Assert.Equal(172, result.Matrix.Entries["blk.0.ffn_down.weight"].Columns);
            Assert.True(double.IsFinite(result.Perplexity) && result.Perplexity > 1);
            Assert.Null(model.MatMulInputObserver);

            ImatrixResult withOutput = ImatrixComputer.Compute(model, tokens, tokenizer.Bos, tokenizer.AddBos,
                new ImatrixOptions { ContextSize = Context, MaxChunks = 1, ProcessOutput = true });
            Assert.Equal(new long[] { Context }, withOutput.Matrix.Entries["output.weight"].Counts);
        }
    }

    [Fact]
    public void The_first_layer_statistics_are_those_of_the_normed_token_embeddings()
    {
        (LanguageModel model, int[] tokens, Tokenizer tokenizer) = Load();
        using (model)
        {
            ImatrixResult result = ImatrixComputer.Compute(model, tokens, tokenizer.Bos, tokenizer.AddBos,
                new ImatrixOptions { ContextSize = Context, MaxChunks = 2 });
            GgufFile file = model.File!;
            ReadOnlySpan<float> embedding = MemoryMarshal.Cast<byte, float>(file.GetTensorData(file.RequireTensor("token_embd.weight")).Span);
            ReadOnlySpan<float> norm = MemoryMarshal.Cast<byte, float>(file.GetTensorData(file.RequireTensor("blk.0.attn_norm.weight")).Span);
            int c = model.Config.EmbeddingLength;
            var expected = new double[c];
            for (int chunk = 0; chunk < 2; chunk++)
            {
                for (int k = 0; k < Context; k++)
                {
                    int token = k == 0 ? tokenizer.Bos : tokens[chunk * Context + k];
                    ReadOnlySpan<float> x = embedding.Slice(token * c, c);
                    double meanSquare = 0;
                    for (int j = 0; j < c; j++)
                    {
                        meanSquare += (double)x[j] * x[j];
                    }
                    double scale = 1 / Math.Sqrt(meanSquare / c + model.Config.NormEpsilon);
                    for (int j = 0; j < c; j++)
                    {
                        double v = x[j] * scale * norm[j];
                        expected[j] += v * v;
                    }
                }
            }
            float[] ours = result.Matrix.Entries["blk.0.attn_k.weight"].SumSquares;
            for (int j = 0; j < c; j++)
            {
                Assert.True(Math.Abs(ours[j] - expected[j]) <= 1e-5 * expected[j] + 1e-9, $"column {j}: {ours[j]} vs {expected[j]}");
            }
        }
    }

    [Fact]
    public void Batches_under_16_tokens_are_ignored_as_llama_imatrix_ignores_them()
    {
        (LanguageModel model, int[] tokens, Tokenizer tokenizer) = Load();
        using (model)
        {
            ImatrixResult result = ImatrixComputer.Compute(model, tokens, tokenizer.Bos, tokenizer.AddBos, new ImatrixOptions { ContextSize = 8, MaxChunks = 4 });
            Assert.Empty(result.Matrix.Entries);
            Assert.Equal(4, result.Chunks);
        }
    }

    [Fact]
    public void Too_little_text_is_refused_with_the_token_counts()
    {
        (LanguageModel model, _, Tokenizer tokenizer) = Load();
        using (model)
        {
            var e = Assert.Throws<ArgumentException>(() => ImatrixComputer.Compute(model, new int[100], tokenizer.Bos, true, new ImatrixOptions { ContextSize = 64 }));
            Assert.Contains("100 tokens", e.Message, StringComparison.Ordinal);
            Assert.Contains("at least 128", e.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Calibration_text_reads_plain_gzip_and_json_lines_files()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("a.txt"), "plain text");
        using (var gz = new GZipStream(File.Create(dir.File("b.jsonl.gz")), CompressionLevel.Fastest))
        {
            gz.Write(Encoding.UTF8.GetBytes("{\"text\": \"first\", \"label\": 1}\n\n{\"text\": \"second\"}\n"));
        }
        Assert.Equal("plain text\n\nfirst\n\nsecond", CalibrationText.Read([dir.File("a.txt"), dir.File("b.jsonl.gz")]));
    }

    [Fact]
    public void Calibration_files_that_cannot_be_read_are_refused_naming_the_line()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("bad.jsonl"), "{\"text\": \"ok\"}\n{\"body\": \"no text\"}\n");
        var e = Assert.Throws<ModelFormatException>(() => CalibrationText.Read([dir.File("bad.jsonl")]));
        Assert.Contains("line 2", e.Message, StringComparison.Ordinal);
        File.WriteAllText(dir.File("broken.jsonl"), "{\"text\": ");
        Assert.Contains("line 1 is not valid JSON", Assert.Throws<ModelFormatException>(() => CalibrationText.Read([dir.File("broken.jsonl")])).Message, StringComparison.Ordinal);
        File.WriteAllBytes(dir.File("latin1.txt"), [0x63, 0x61, 0x66, 0xE9, 0x20]);
        Assert.Contains("UTF-8", Assert.Throws<ModelFormatException>(() => CalibrationText.Read([dir.File("latin1.txt")])).Message, StringComparison.Ordinal);
        Assert.Throws<FileNotFoundException>(() => CalibrationText.Read([dir.File("missing.txt")]));
    }

    private static (LanguageModel Model, int[] Tokens, Tokenizer Tokenizer) Load()
    {
        LanguageModel model = LanguageModel.Load(RepoPaths.Stories260K, threads: 2);
        Tokenizer tokenizer = GgufTokenizer.Load(model.File!);
        string text = CalibrationText.Read([Path.Combine(RepoPaths.Root, "data", "brown", "humor.txt.gz")]);
        return (model, tokenizer.Encode(text[..4000], addSpecial: true), tokenizer);
    }
}
