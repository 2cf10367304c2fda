using ModelSmith.Formats;
using ModelSmith.Inference;
using ModelSmith.Models;
using Xunit.Abstractions;

namespace ModelSmith.Interop.Tests.Models;

/// <summary>
/// Our forward pass against llama.cpp's on the same GGUF: logits at every position of a 64-token
/// sequence, and 64 greedy tokens from BOS. Covers the real stories260K model and random-weight Llama
/// and GPT-2 models of many shapes that our own writer produces.
/// </summary>
[Trait("Category", "Interop")]
public sealed class ModelInteropTests(ITestOutputHelper output)
{
    private const int SequenceLength = 64;

    /// <summary>Shapes that exercise what can go wrong: widths off the SIMD grid, every GQA ratio,
    /// tied and untied output, both RoPE bases, F32, F16 and BF16 weights, and GPT-2.</summary>
    public static TheoryData<string> Shapes => new(s_shapes.Keys);

    private static readonly Dictionary<string, (ModelConfig Config, GgmlType Type)> s_shapes = new()
    {
        ["llama-c64-gqa1-tied-f32"] = (Llama(64, 4, 4, 172, tied: true, 10000f), GgmlType.F32),
        ["llama-c72-gqa2-untied-rope500k-f32"] = (Llama(72, 6, 3, 200, tied: false, 500000f), GgmlType.F32),
        ["llama-c128-gqa4-untied-f32"] = (Llama(128, 8, 2, 344, tied: false, 10000f), GgmlType.F32),
        ["llama-c96-gqa4-tied-rope500k-f16"] = (Llama(96, 4, 1, 256, tied: true, 500000f), GgmlType.F16),
        ["llama-c80-gqa2-untied-f16"] = (Llama(80, 4, 2, 216, tied: false, 10000f), GgmlType.F16),
        ["llama-c64-gqa2-untied-bf16"] = (Llama(64, 8, 4, 160, tied: false, 10000f), GgmlType.BF16),
        ["gpt2-c64-untied-f32"] = (Gpt2(64, 4, 256, tied: false), GgmlType.F32),
        ["gpt2-c80-tied-f16"] = (Gpt2(80, 5, 320, tied: true), GgmlType.F16),
        ["gpt2-c48-tied-f32"] = (Gpt2(48, 3, 100, tied: true), GgmlType.F32),
    };

    [Fact]
    public void Stories260K_logits_match_llama_cpp_at_every_position()
    {
        int[] tokens = TestSequence(512, seed: 7);
        (double error, _) = CompareLogits(RepoPaths.Stories260K, tokens);
        Assert.True(error < 1e-3, $"relative max-abs logit error {error:E2}");
    }

    [Fact]
    public void Stories260K_greedy_tokens_from_bos_match_llama_cpp()
    {
        CompareGreedy(RepoPaths.Stories260K);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Random_model_logits_and_greedy_tokens_match_llama_cpp(string shape)
    {
        (ModelConfig config, GgmlType type) = s_shapes[shape];
        string path = Path.Combine(Path.GetTempPath(), $"smith-interop-{shape}-{Environment.ProcessId}.gguf");
        try
        {
            SyntheticModel.Write(path, config, type, seed: StableSeed(shape));
            (double error, double scale) = CompareLogits(path, TestSequence(config.VocabSize, seed: 11));
            // F32 weights: the only differences are summation order, so the bound is tight. F16 and BF16
            // weights: both engines round activations to the weight type before the dot products (ggml's
            // vec_dot_type), and a last-bit difference in an activation can flip its rounding, which moves
            // logits by up to ~1e-3 of their range; the bound allows for that.
            double bound = type == GgmlType.F32 ? 1e-3 : 5e-3;
            Assert.True(error < bound, $"{shape}: relative max-abs logit error {error:E2} (logit scale {scale:F2})");
            CompareGreedy(path);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void A_model_we_read_and_write_back_loads_in_llama_cpp_and_decodes_the_same()
    {
        string path = Path.Combine(Path.GetTempPath(), $"smith-interop-rewrite-{Environment.ProcessId}.gguf");
        try
        {
            using (var file = GgufFile.Open(RepoPaths.Stories260K))
                GgufWriter.From(file).Write(path);
            Assert.Equal(File.ReadAllBytes(RepoPaths.Stories260K), File.ReadAllBytes(path));
            using var llama = new LlamaCppModel(path);
            Assert.Equal(new[] { 1, 461, 461, 401, 401, 401, 461, 378 }, llama.Greedy([1], 7));
        }
        finally
        {
            File.Delete(path);
        }
    }

    private (double Error, double Scale) CompareLogits(string path, int[] tokens)
    {
        float[] theirs;
        using (var llama = new LlamaCppModel(path, threads: 2))
            theirs = llama.EvalAllLogits(tokens);
        using LanguageModel ours = LanguageModel.Load(path, threads: 2);
        int vocab = ours.Config.VocabSize;
        var logits = new float[tokens.Length * vocab];
        ours.Forward(tokens, ours.CreateCache(tokens.Length), logits, allLogits: true);

        Assert.Equal(theirs.Length, logits.Length);
        double maxDiff = 0, maxAbs = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            maxDiff = Math.Max(maxDiff, Math.Abs(logits[i] - theirs[i]));
            maxAbs = Math.Max(maxAbs, Math.Abs(theirs[i]));
        }
        double error = maxDiff / maxAbs;
        output.WriteLine($"{Path.GetFileName(path)}: max |Δlogit| {maxDiff:E2}, max |logit| {maxAbs:F3}, relative {error:E2}");
        return (error, maxAbs);
    }

    private void CompareGreedy(string path)
    {
        int[] theirs;
        using (var llama = new LlamaCppModel(path, threads: 2))
            theirs = llama.Greedy([llama.Bos], SequenceLength);
        using LanguageModel ours = LanguageModel.Load(path, threads: 2);
        GenerationResult result = new Generator(ours, SequenceLength + 1).Generate([1], SequenceLength, SamplingOptions.Greedy);
        output.WriteLine($"llama.cpp: {string.Join(",", theirs)}");
        output.WriteLine($"ours:      {string.Join(",", result.Tokens)}");
        Assert.Equal(theirs, result.Tokens);
    }

    private static ulong StableSeed(string text)
    {
        ulong hash = 14695981039346656037UL; // FNV-1a
        foreach (char ch in text) hash = (hash ^ ch) * 1099511628211UL;
        return hash;
    }

    private static int[] TestSequence(int vocab, int seed)
    {
        var random = new Random(seed);
        var tokens = new int[SequenceLength];
        tokens[0] = 1;
        for (int i = 1; i < tokens.Length; i++) tokens[i] = random.Next(3, vocab);
        return tokens;
    }

    private static ModelConfig Llama(int c, int heads, int kvHeads, int ffn, bool tied, float ropeBase) => new()
    {
        Architecture = ModelArchitecture.Llama,
        VocabSize = 320,
        ContextLength = 128,
        EmbeddingLength = c,
        BlockCount = 2,
        FeedForwardLength = ffn,
        HeadCount = heads,
        KvHeadCount = kvHeads,
        HeadDim = c / heads,
        RopeDims = c / heads,
        NormEpsilon = 1e-5f,
        RopeFreqBase = ropeBase,
        TiedOutput = tied,
    };

    private static ModelConfig Gpt2(int c, int heads, int ffn, bool tied) => new()
    {
        Architecture = ModelArchitecture.Gpt2,
        VocabSize = 300,
        ContextLength = 128,
        EmbeddingLength = c,
        BlockCount = 2,
        FeedForwardLength = ffn,
        HeadCount = heads,
        KvHeadCount = heads,
        HeadDim = c / heads,
        NormEpsilon = 1e-5f,
        TiedOutput = tied,
    };
}
