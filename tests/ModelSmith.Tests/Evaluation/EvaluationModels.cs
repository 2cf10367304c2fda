using ModelSmith.Models;

namespace ModelSmith.Tests.Evaluation;

/// <summary>Tiny random-weight models written once per test run, shared by the evaluation tests.</summary>
internal static class EvaluationModels
{
    private static readonly string s_directory = CreateDirectory();
    private static readonly Lazy<string> s_llama = new(() => Write("llama-a.gguf", LlamaConfig(), seed: 1));
    private static readonly Lazy<string> s_llamaSibling = new(() => Write("llama-b.gguf", LlamaConfig(), seed: 2));
    private static readonly Lazy<string> s_llamaWideVocabulary = new(() => Write("llama-v400.gguf", LlamaConfig() with { VocabSize = 400 }, seed: 3));

    /// <summary>A small Llama (vocabulary 320, context 64, 2 blocks) with llama2.c's placeholder vocabulary (BOS 1, adds BOS).</summary>
    public static string Llama => s_llama.Value;

    /// <summary>The same shape and vocabulary as <see cref="Llama"/>, other weights.</summary>
    public static string LlamaSibling => s_llamaSibling.Value;

    /// <summary>Like <see cref="Llama"/> with a vocabulary of 400 tokens.</summary>
    public static string LlamaWideVocabulary => s_llamaWideVocabulary.Value;

    public static ModelConfig LlamaConfig() => new()
    {
        Architecture = ModelArchitecture.Llama,
        VocabSize = 320,
        ContextLength = 64,
        EmbeddingLength = 32,
        BlockCount = 2,
        FeedForwardLength = 64,
        HeadCount = 4,
        KvHeadCount = 2,
        HeadDim = 8,
        RopeDims = 8,
        NormEpsilon = 1e-5f,
        TiedOutput = false,
    };

    /// <summary>Seeded random token ids in [3, vocab).</summary>
    public static int[] RandomTokens(int count, int vocab, int seed)
    {
        var random = new Random(seed);
        var tokens = new int[count];
        for (int i = 0; i < count; i++) tokens[i] = random.Next(3, vocab);
        return tokens;
    }

    private static string CreateDirectory()
    {
        string directory = Path.Combine(Path.GetTempPath(), "smith-eval-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(directory);
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try { Directory.Delete(directory, recursive: true); } catch (IOException) { }
        };
        return directory;
    }

    private static string Write(string name, ModelConfig config, ulong seed)
    {
        string path = Path.Combine(s_directory, name);
        SyntheticModel.Write(path, config, seed: seed);
        return path;
    }
}
