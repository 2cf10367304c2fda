using ModelSmith.Models;
using ModelSmith.Training;
using Xunit.Abstractions;

namespace ModelSmith.Interop.Tests.Training;

/// <summary>
/// LoRA adapters against llama.cpp: llama.cpp applies our GGUF adapter at run time on the base model
/// (llama_adapter_lora_init + the context's adapter list), and its logits at every position of a 64-token sequence
/// must equal those of the model our merge writes, run through our engine and through llama.cpp. The adapters are
/// trained for a few steps on a random-weight model, so every B is non-zero and the adapter visibly moves the logits.
/// </summary>
[Trait("Category", "Interop")]
public sealed class LoraInteropTests(ITestOutputHelper output)
{
    private const int SequenceLength = 64;

    public static TheoryData<string, bool, float> Cases => new()
    {
        { "llama", false, 1f },
        { "llama", true, 1f },
        { "llama", false, 0.5f },
        { "gpt2", false, 1f },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Llama_cpp_with_our_adapter_matches_our_merged_model_at_every_position(string architecture, bool rsLora, float scale)
    {
        ModelConfig config = architecture == "llama" ? Llama() : Gpt2();
        string dir = Path.Combine(Path.GetTempPath(), $"smith-interop-lora-{architecture}-{rsLora}-{scale}-{Environment.ProcessId}");
        Directory.CreateDirectory(dir);
        try
        {
            string basePath = Path.Combine(dir, "base.gguf"), adapterPath = Path.Combine(dir, "adapter.gguf");
            LoraParameters trained = Train(config, new LoraOptions { Rank = 8, Alpha = 16, RankStabilized = rsLora, Dropout = 0.05f }, basePath);
            TrainingGguf.ExportAdapter(trained, adapterPath);
            PeftAdapter.Write(trained, Path.Combine(dir, "peft"), "base.gguf");
            string merged = Path.Combine(dir, "merged.gguf");
            LoraMerge.Merge(basePath, adapterPath, merged, scale);
            LoraMerge.Merge(basePath, Path.Combine(dir, "peft"), Path.Combine(dir, "merged-peft.gguf"), scale);
            Assert.Equal(File.ReadAllBytes(merged), File.ReadAllBytes(Path.Combine(dir, "merged-peft.gguf")));

            int[] tokens = Sequence(config.VocabSize);
            float[] baseLogits, adapted, mergedTheirs;
            using (var llama = new LlamaCppModel(basePath, threads: 2))
            {
                baseLogits = llama.EvalAllLogits(tokens);
                llama.SetLoraAdapter(adapterPath, scale);
                adapted = llama.EvalAllLogits(tokens);
            }
            using (var llama = new LlamaCppModel(merged, threads: 2))
                mergedTheirs = llama.EvalAllLogits(tokens);
            using LanguageModel ours = LanguageModel.Load(merged, threads: 2);
            var mergedOurs = new float[tokens.Length * config.VocabSize];
            ours.Forward(tokens, ours.CreateCache(tokens.Length), mergedOurs, allLogits: true);

            double moved = Relative(baseLogits, adapted);
            double adapterVsOurs = Relative(adapted, mergedOurs);
            double adapterVsMerged = Relative(adapted, mergedTheirs);
            double mergedVsOurs = Relative(mergedTheirs, mergedOurs);
            output.WriteLine($"{architecture} rsLoRA={rsLora} scale={scale}: adapter moves logits by {moved:E2}; llama.cpp+adapter vs our merged {adapterVsOurs:E2}, vs llama.cpp merged {adapterVsMerged:E2}; llama.cpp merged vs ours {mergedVsOurs:E2}");
            Assert.True(moved > 5e-2, $"the adapter moved llama.cpp's logits by only {moved:E2} of their range");
            Assert.True(adapterVsOurs < 1e-3, $"llama.cpp with the adapter vs our merged model: {adapterVsOurs:E2}");
            Assert.True(adapterVsMerged < 1e-3, $"llama.cpp with the adapter vs llama.cpp on the merged model: {adapterVsMerged:E2}");
            Assert.True(mergedVsOurs < 1e-3, $"merged model, llama.cpp vs ours: {mergedVsOurs:E2}");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// A random-weight base written to <paramref name="basePath"/>, and an adapter trained on it for a few AdamW steps
    /// on a repeating random sequence (with dropout, as fine-tuning runs), so that B moves away from zero.
    /// </summary>
    private static LoraParameters Train(ModelConfig config, LoraOptions options, string basePath)
    {
        const int batch = 2, seqLen = 32, steps = 25;
        using var model = new TrainingModel(config, batch, seqLen, threads: 2);
        model.Parameters.Initialize(17, std: 0.08f);
        TrainingGguf.Export(model.Parameters, basePath);
        LoraAdapter lora = model.AttachLora(options, seed: 5);
        var trainer = new Trainer(model, new AdamWOptions { WeightDecay = 0 }, new LearningRateSchedule { Peak = 2e-2f, WarmupSteps = 3, TotalSteps = steps });
        var random = new Random(9);
        var text = new int[seqLen + 1];
        for (int i = 0; i < text.Length; i++) text[i] = random.Next(3, config.VocabSize);
        var tokens = new int[batch * seqLen];
        var targets = new int[batch * seqLen];
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < seqLen; t++)
            {
                tokens[b * seqLen + t] = text[t];
                targets[b * seqLen + t] = text[t + 1];
            }
        float first = 0, last = 0;
        for (int s = 0; s < steps; s++)
        {
            last = trainer.Step([new TokenBatch(tokens, targets, batch, seqLen)]).Loss;
            if (s == 0) first = last;
        }
        Assert.True(last < first, $"LoRA training did not lower the loss ({first} → {last})");
        var trained = new LoraParameters(lora.Layout);
        trained.CopyFrom(lora.Parameters);
        return trained;
    }

    private static double Relative(float[] reference, float[] other)
    {
        Assert.Equal(reference.Length, other.Length);
        double maxDiff = 0, maxAbs = 0;
        for (int i = 0; i < reference.Length; i++)
        {
            maxDiff = Math.Max(maxDiff, Math.Abs(reference[i] - other[i]));
            maxAbs = Math.Max(maxAbs, Math.Abs(reference[i]));
        }
        return maxDiff / maxAbs;
    }

    private static int[] Sequence(int vocab)
    {
        var random = new Random(11);
        var tokens = new int[SequenceLength];
        tokens[0] = 1;
        for (int i = 1; i < tokens.Length; i++) tokens[i] = random.Next(3, vocab);
        return tokens;
    }

    private static ModelConfig Llama() => new()
    {
        Architecture = ModelArchitecture.Llama,
        VocabSize = 320,
        ContextLength = 128,
        EmbeddingLength = 64,
        BlockCount = 2,
        FeedForwardLength = 172,
        HeadCount = 4,
        KvHeadCount = 2,
        HeadDim = 16,
        RopeDims = 16,
        NormEpsilon = 1e-5f,
        TiedOutput = false,
    };

    private static ModelConfig Gpt2() => new()
    {
        Architecture = ModelArchitecture.Gpt2,
        VocabSize = 300,
        ContextLength = 128,
        EmbeddingLength = 64,
        BlockCount = 2,
        FeedForwardLength = 256,
        HeadCount = 4,
        KvHeadCount = 4,
        HeadDim = 16,
        NormEpsilon = 1e-5f,
        TiedOutput = true,
    };
}
