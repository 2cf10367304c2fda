using System.Text;
using LLama.Native;
using ModelSmith.Formats;
using ModelSmith.Models;
using ModelSmith.Quantization;
using Xunit.Abstractions;

namespace ModelSmith.Interop.Tests.Quantization;

/// <summary>
/// Whole files: each model quantized to each file type by ModelQuantizer and by llama.cpp's
/// llama_model_quantize (llama-quantize's defaults: mixes on, output quantized). The tensors must come in the
/// same order with the same types and the same bytes, the metadata must agree, and llama.cpp must load our
/// file and decode the same greedy tokens from BOS as from its own.
/// </summary>
[Trait("Category", "Interop")]
public sealed class MixesFileInteropTests(ITestOutputHelper output, MixesFileInteropTests.Models models) : IClassFixture<MixesFileInteropTests.Models>
{
    private const int GreedyTokens = 8;

    /// <summary>The models, written once: stories260K (real, rows of 64 and 172, tied output: K-quants fall
    /// back to 32-blocks and ffn_down to F16), llamas of 4 and 16 layers whose rows are all multiples of 256
    /// (the mixes apply unchanged; 16 layers move the n/16 and use_more_bits boundaries), a llama with rows
    /// of 96 and 200, and a GPT-2 (fused attn_qkv, learned positions).</summary>
    public sealed class Models : IDisposable
    {
        public Models()
        {
            Directory = System.IO.Directory.CreateTempSubdirectory("modelsmith-mixes-").FullName;
            Paths["stories260K"] = RepoPaths.Stories260K;
            Write("llama-4-layers-gqa2", new ModelConfig
            {
                Architecture = ModelArchitecture.Llama, VocabSize = 320, ContextLength = 64, EmbeddingLength = 256, BlockCount = 4,
                FeedForwardLength = 256, HeadCount = 4, KvHeadCount = 2, HeadDim = 64, RopeDims = 64, NormEpsilon = 1e-5f, TiedOutput = false,
            });
            Write("llama-16-layers-gqa4", new ModelConfig
            {
                Architecture = ModelArchitecture.Llama, VocabSize = 320, ContextLength = 64, EmbeddingLength = 256, BlockCount = 16,
                FeedForwardLength = 256, HeadCount = 4, KvHeadCount = 1, HeadDim = 64, RopeDims = 64, NormEpsilon = 1e-5f, TiedOutput = false,
            });
            Write("llama-rows-96-200-tied", new ModelConfig
            {
                Architecture = ModelArchitecture.Llama, VocabSize = 300, ContextLength = 64, EmbeddingLength = 96, BlockCount = 3,
                FeedForwardLength = 200, HeadCount = 4, KvHeadCount = 2, HeadDim = 24, RopeDims = 24, NormEpsilon = 1e-5f, TiedOutput = true,
            });
            Write("gpt2-rows-256", new ModelConfig
            {
                Architecture = ModelArchitecture.Gpt2, VocabSize = 300, ContextLength = 64, EmbeddingLength = 256, BlockCount = 3,
                FeedForwardLength = 512, HeadCount = 4, KvHeadCount = 4, HeadDim = 64, NormEpsilon = 1e-5f, TiedOutput = false,
            });
        }

        public string Directory { get; }

        public Dictionary<string, string> Paths { get; } = new(StringComparer.Ordinal);

        public void Dispose() => System.IO.Directory.Delete(Directory, recursive: true);

        private void Write(string name, ModelConfig config)
        {
            string path = System.IO.Path.Combine(Directory, name + ".gguf");
            SyntheticModel.Write(path, config, GgmlType.F32, seed: (ulong)name.Length * 7919);
            Paths[name] = path;
        }
    }

    private static readonly QuantFileType[] s_quantized =
    [
        QuantFileType.Q8_0, QuantFileType.Q4_0, QuantFileType.Q4_1, QuantFileType.Q5_0, QuantFileType.Q5_1,
        QuantFileType.Q2_K, QuantFileType.Q3_K_S, QuantFileType.Q3_K_M, QuantFileType.Q3_K_L,
        QuantFileType.Q4_K_S, QuantFileType.Q4_K_M, QuantFileType.Q5_K_S, QuantFileType.Q5_K_M, QuantFileType.Q6_K,
    ];

    /// <summary>Every file type on the 4-layer llama; the K-quant types split between the two models whose rows
    /// need fallbacks; the layer-dependent mixes on 16 layers; two on GPT-2.</summary>
    public static TheoryData<string, QuantFileType> Cases
    {
        get
        {
            var data = new TheoryData<string, QuantFileType>();
            foreach (QuantFileType t in s_quantized.Append(QuantFileType.F16))
            {
                data.Add("llama-4-layers-gqa2", t);
            }
            foreach (QuantFileType t in new[] { QuantFileType.Q2_K, QuantFileType.Q3_K_M, QuantFileType.Q4_K_S, QuantFileType.Q5_K_M, QuantFileType.Q6_K })
            {
                data.Add("stories260K", t);
            }
            foreach (QuantFileType t in new[] { QuantFileType.Q3_K_S, QuantFileType.Q3_K_L, QuantFileType.Q4_K_M, QuantFileType.Q5_K_S })
            {
                data.Add("llama-rows-96-200-tied", t);
            }
            data.Add("llama-16-layers-gqa4", QuantFileType.Q3_K_M);
            data.Add("llama-16-layers-gqa4", QuantFileType.Q4_K_M);
            data.Add("gpt2-rows-256", QuantFileType.Q8_0);
            data.Add("gpt2-rows-256", QuantFileType.Q4_K_M);
            return data;
        }
    }

    private readonly Models _models = models;

    [Theory]
    [MemberData(nameof(Cases))]
    public void Quantized_file_has_llama_cpp_types_and_bytes_and_llama_cpp_decodes_it_alike(string model, QuantFileType fileType)
    {
        string input = _models.Paths[model];
        string theirs = Path.Combine(_models.Directory, $"{model}-{fileType}-llama.gguf");
        string ours = Path.Combine(_models.Directory, $"{model}-{fileType}-ours.gguf");
        try
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            LlamaCppOracle.Quantize(input, theirs, (LLamaFtype)(int)fileType, threads: 2);
            TimeSpan theirTime = clock.Elapsed;
            QuantizationResult result = ModelQuantizer.Quantize(input, ours, new QuantizeOptions { FileType = fileType, Threads = 2 });
            output.WriteLine($"{model} {fileType}: llama.cpp {theirTime.TotalMilliseconds:F0} ms, ours {result.Elapsed.TotalMilliseconds:F0} ms; " +
                $"{result.Plan.BitsPerWeightAfter:F3} bits per weight; fallbacks {result.Plan.Fallbacks.Count()}");
            CompareFiles(ours, theirs);

            int[] ourTokens;
            int[] theirTokens;
            using (var llama = new LlamaCppModel(ours, threads: 1, contextSize: 64))
            {
                ourTokens = llama.Greedy([llama.Bos], GreedyTokens);
            }
            using (var llama = new LlamaCppModel(theirs, threads: 1, contextSize: 64))
            {
                theirTokens = llama.Greedy([llama.Bos], GreedyTokens);
            }
            output.WriteLine($"greedy from BOS: {string.Join(",", ourTokens)}");
            Assert.Equal(theirTokens, ourTokens);
        }
        finally
        {
            File.Delete(theirs);
            File.Delete(ours);
        }
    }

    [Theory]
    [InlineData("llama-rows-96-200-tied", QuantFileType.Q8_0)]
    [InlineData("llama-rows-96-200-tied", QuantFileType.Q4_0)]
    [InlineData("stories260K", QuantFileType.Q5_1)]
    [InlineData("stories260K", QuantFileType.Q4_1)]
    public void Rows_that_fit_no_block_are_refused_where_llama_cpp_refuses(string model, QuantFileType fileType)
    {
        // ffn_down has rows of 200 (172 in stories260K): no 32-value block fits and llama.cpp defines no
        // fallback for the 32-block types, so both quantizers stop (llama.cpp: "no tensor type fallback is defined").
        string input = _models.Paths[model];
        string path = Path.Combine(_models.Directory, $"refused-{model}-{fileType}.gguf");
        Assert.Throws<InvalidOperationException>(() => LlamaCppOracle.Quantize(input, path + ".llama", (LLamaFtype)(int)fileType, threads: 1));
        var e = Assert.Throws<QuantizationException>(() => ModelQuantizer.Quantize(input, path, new QuantizeOptions { FileType = fileType, Threads = 1 }));
        output.WriteLine(e.Message);
        Assert.Contains("ffn_down", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(path));
        File.Delete(path + ".llama");
    }

    private void CompareFiles(string oursPath, string theirsPath)
    {
        (string report, string summary) = MixesFileComparison.Compare(oursPath, theirsPath);
        output.WriteLine(summary);
        Assert.True(report.Length == 0, $"our file differs from llama.cpp's:\n{report}");
    }
}
