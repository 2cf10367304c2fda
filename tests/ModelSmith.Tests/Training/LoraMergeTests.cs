using ModelSmith.Formats;
using ModelSmith.Models;
using ModelSmith.Training;

namespace ModelSmith.Tests.Training;

public class LoraMergeTests
{
    /// <summary>An adapter for stories260K with every B non-zero, so each adapted weight really changes.</summary>
    internal static LoraParameters StoriesAdapter(LoraOptions options, ulong seed)
    {
        using GgufFile file = GgufFile.Open(RepoPaths.Stories260K);
        var lora = new LoraParameters(new LoraLayout(new ParameterLayout(ModelConfig.FromGguf(file)), options));
        lora.Initialize(seed);
        foreach (ParameterTensor t in lora.Layout.Tensors)
            if (t.Kind == ParameterKind.LoraB) new TrainingRandom(seed + 1).FillUniform(lora[t], 0.05f);
        return lora;
    }

    [Fact]
    public void Merging_a_GGUF_adapter_changes_only_adapted_weights_as_MergeInto_does_and_keeps_the_metadata()
    {
        LoraParameters lora = StoriesAdapter(new LoraOptions { Rank = 4, Alpha = 8, Modules = ["attn_q", "attn_v", "ffn_down"] }, 1);
        using var dir = new TempDirectory();
        TrainingGguf.ExportAdapter(lora, dir.File("adapter.gguf"));
        LoraMergeResult result = LoraMerge.Merge(RepoPaths.Stories260K, dir.File("adapter.gguf"), dir.File("merged.gguf"));

        Assert.Equal(dir.File("merged.gguf"), result.OutputPath);
        Assert.Equal(RepoPaths.Stories260K, result.ParentPath);
        Assert.Equal("gguf", result.AdapterFormat);
        Assert.Equal((4, 8f, 1f, 2f, 2f), (result.Rank, result.Alpha, result.UserScale, result.AdapterScale, result.Scale));
        Assert.Equal(["attn_q", "attn_v", "ffn_down"], result.Modules);
        Assert.Equal(5 * 3, result.MergedTensors);
        Assert.Equal(lora.Values.Length, result.AdapterParameters);

        ModelParameters expected = TrainingGguf.Import(RepoPaths.Stories260K);
        lora.MergeInto(expected);
        using GgufFile baseFile = GgufFile.Open(RepoPaths.Stories260K);
        using GgufFile merged = GgufFile.Open(result.OutputPath);
        Assert.Equal(baseFile.MetadataKeys, merged.MetadataKeys);
        foreach (string key in baseFile.MetadataKeys) Assert.Equal(baseFile.Metadata[key], merged.Metadata[key]);
        Assert.Equal(baseFile.Tensors.Select(t => (t.Name, t.Type, t.ShapeText)), merged.Tensors.Select(t => (t.Name, t.Type, t.ShapeText)));
        ModelParameters actual = TrainingGguf.Import(merged);
        Assert.True(expected.Values.SequenceEqual(actual.Values));
        int changed = 0;
        foreach (GgufTensorInfo t in baseFile.Tensors)
        {
            bool same = baseFile.GetTensorData(t).Span.SequenceEqual(merged.GetTensorData(merged.RequireTensor(t.Name)).Span);
            bool adapted = lora.Layout.Find(t.Name + ".lora_a") != null;
            Assert.True(same != adapted, $"{t.Name}: adapted {adapted}, unchanged {same}");
            changed += same ? 0 : 1;
        }
        Assert.Equal(15, changed);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_PEFT_adapter_merges_to_the_same_model_as_the_GGUF_adapter(bool rsLora)
    {
        LoraParameters lora = StoriesAdapter(new LoraOptions { Rank = 3, Alpha = 5, RankStabilized = rsLora }, 2);
        using var dir = new TempDirectory();
        TrainingGguf.ExportAdapter(lora, dir.File("adapter.gguf"));
        PeftAdapter.Write(lora, dir.File("peft"), "stories260K");
        LoraMergeResult fromGguf = LoraMerge.Merge(RepoPaths.Stories260K, dir.File("adapter.gguf"), dir.File("a.gguf"));
        LoraMergeResult fromPeft = LoraMerge.Merge(RepoPaths.Stories260K, dir.File("peft"), dir.File("b.gguf"));
        Assert.Equal("peft", fromPeft.AdapterFormat);
        Assert.Equal(fromGguf.Scale, fromPeft.Scale, 1e-6f);
        Assert.Equal(rsLora, fromPeft.RankStabilized);
        Assert.Equal(35, fromPeft.MergedTensors);
        Assert.Equal(File.ReadAllBytes(dir.File("a.gguf")), File.ReadAllBytes(dir.File("b.gguf")));
    }

    [Fact]
    public void The_merged_model_runs_in_the_engine_like_the_training_model_with_the_adapter_attached()
    {
        LoraParameters lora = StoriesAdapter(new LoraOptions { Rank = 8, Alpha = 16 }, 3);
        using var dir = new TempDirectory();
        PeftAdapter.Write(lora, dir.File("peft"), "stories260K");
        LoraMerge.Merge(RepoPaths.Stories260K, dir.File("peft"), dir.File("merged.gguf"));

        int[] tokens = [1, 403, 261, 280, 395, 263, 306, 269, 388, 287, 301, 263, 314, 45, 290, 271];
        using TrainingModel training = TrainingGguf.LoadModel(RepoPaths.Stories260K, 1, tokens.Length, threads: 1);
        LoraAdapter attached = training.AttachLora(lora.Layout.Options, seed: 0);
        attached.Parameters.CopyFrom(lora);
        training.Training = false;
        training.Forward(tokens, 1, tokens.Length);
        float[] expected = training.Logits.ToArray();

        using LanguageModel engine = LanguageModel.Load(dir.File("merged.gguf"), threads: 1);
        var logits = new float[tokens.Length * engine.Config.VocabSize];
        engine.Forward(tokens, engine.CreateCache(tokens.Length), logits, allLogits: true);
        float scale = 0, err = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            scale = Math.Max(scale, Math.Abs(expected[i]));
            err = Math.Max(err, Math.Abs(expected[i] - logits[i]));
        }
        Assert.True(err <= 1e-4f * scale, $"max |Δ| {err} of max |logit| {scale}");

        using LanguageModel unmerged = LanguageModel.Load(RepoPaths.Stories260K, threads: 1);
        var baseLogits = new float[logits.Length];
        unmerged.Forward(tokens, unmerged.CreateCache(tokens.Length), baseLogits, allLogits: true);
        float moved = 0;
        for (int i = 0; i < logits.Length; i++) moved = Math.Max(moved, Math.Abs(baseLogits[i] - logits[i]));
        Assert.True(moved > 1e-2f * scale, $"the adapter moved the logits by only {moved}");
    }

    [Theory]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.BF16)]
    public void Half_precision_bases_keep_their_weight_type_and_the_scale_multiplies_the_update(GgmlType type)
    {
        ModelConfig config = ModelGradientTests.SmallLlama();
        var model = new ModelParameters(new ParameterLayout(config));
        model.Initialize(4, std: 0.2f);
        var lora = new LoraParameters(new LoraLayout(model.Layout, new LoraOptions { Rank = 2, Alpha = 2, Modules = ["ffn_up"] }));
        new TrainingRandom(5).FillUniform(lora.Values, 0.5f);
        using var dir = new TempDirectory();
        TrainingGguf.CreateWriter(model, type).Write(dir.File("base.gguf"));
        TrainingGguf.ExportAdapter(lora, dir.File("adapter.gguf"));

        LoraMergeResult zero = LoraMerge.Merge(dir.File("base.gguf"), dir.File("adapter.gguf"), dir.File("zero.gguf"), scale: 0f);
        Assert.Equal(0f, zero.Scale);
        Assert.Equal(File.ReadAllBytes(dir.File("base.gguf")), File.ReadAllBytes(dir.File("zero.gguf")));

        LoraMerge.Merge(dir.File("base.gguf"), dir.File("adapter.gguf"), dir.File("half.gguf"), scale: 0.5f);
        using GgufFile merged = GgufFile.Open(dir.File("half.gguf"));
        Assert.Equal(type, merged.RequireTensor("blk.1.ffn_up.weight").Type);
        ModelParameters baseBack = TrainingGguf.Import(dir.File("base.gguf"));
        ModelParameters actual = TrainingGguf.Import(merged);
        ModelParameters expected = TrainingGguf.Import(dir.File("base.gguf"));
        var halved = new LoraParameters(new LoraLayout(model.Layout, new LoraOptions { Rank = 2, Alpha = 1, Modules = ["ffn_up"] }));
        halved.CopyFrom(lora);
        halved.MergeInto(expected);
        float tolerance = type == GgmlType.F16 ? 2e-3f : 1.6e-2f;
        for (int i = 0; i < actual.Values.Length; i++)
            Assert.True(Math.Abs(actual.Values[i] - expected.Values[i]) <= tolerance * Math.Max(1f, Math.Abs(expected.Values[i])), $"{i}: {actual.Values[i]} vs {expected.Values[i]}");
        Assert.False(actual.Values.SequenceEqual(baseBack.Values));
    }

    [Fact]
    public void A_quantized_base_is_refused_with_the_advice_to_merge_first_and_quantize_after()
    {
        ModelConfig config = ModelGradientTests.SmallLlama() with { EmbeddingLength = 64, FeedForwardLength = 96, HeadCount = 4, KvHeadCount = 2, HeadDim = 16, RopeDims = 16 };
        var model = new ModelParameters(new ParameterLayout(config));
        model.Initialize(6);
        var lora = new LoraParameters(new LoraLayout(model.Layout, new LoraOptions { Rank = 2, Modules = ["attn_v"] }));
        using var dir = new TempDirectory();
        TrainingGguf.CreateWriter(model).Write(dir.File("base.gguf"));
        TrainingGguf.ExportAdapter(lora, dir.File("adapter.gguf"));
        ModelSmith.Quantization.ModelQuantizer.Quantize(dir.File("base.gguf"), dir.File("q8.gguf"),
            new ModelSmith.Quantization.QuantizeOptions { FileType = ModelSmith.Quantization.QuantFileType.Q8_0, Threads = 1 });
        var e = Assert.Throws<ModelFormatException>(() => LoraMerge.Merge(dir.File("q8.gguf"), dir.File("adapter.gguf"), dir.File("out.gguf")));
        Assert.Contains("tensor 'blk.0.attn_v.weight' is Q8_0", e.Message, StringComparison.Ordinal);
        Assert.Contains("Merge into the unquantized model, then quantize the result", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(dir.File("out.gguf")));
    }

    [Fact]
    public void Adapters_that_do_not_fit_the_base_are_refused_and_nothing_is_written()
    {
        using var dir = new TempDirectory();
        // An adapter for a different Llama: the shapes disagree with stories260K.
        var other = new LoraParameters(new LoraLayout(new ParameterLayout(ModelGradientTests.SmallLlama()), new LoraOptions { Rank = 2, Modules = ["attn_v"] }));
        TrainingGguf.ExportAdapter(other, dir.File("other.gguf"));
        var e = Assert.Throws<ModelFormatException>(() => LoraMerge.Merge(RepoPaths.Stories260K, dir.File("other.gguf"), dir.File("out.gguf")));
        Assert.Contains("blk.0.attn_v.weight.lora_a", e.Message, StringComparison.Ordinal);

        // A GPT-2 adapter on a Llama base.
        var gpt2 = new LoraParameters(new LoraLayout(new ParameterLayout(ModelGradientTests.SmallGpt2()), new LoraOptions { Rank = 2, Modules = ["ffn_up"] }));
        TrainingGguf.ExportAdapter(gpt2, dir.File("gpt2.gguf"));
        e = Assert.Throws<ModelFormatException>(() => LoraMerge.Merge(RepoPaths.Stories260K, dir.File("gpt2.gguf"), dir.File("out.gguf")));
        Assert.Contains("'gpt2' model", e.Message, StringComparison.Ordinal);

        Assert.Throws<FileNotFoundException>(() => LoraMerge.Merge(RepoPaths.Stories260K, dir.File("missing.gguf"), dir.File("out.gguf")));
        Assert.Throws<ArgumentException>(() => LoraMerge.Merge(RepoPaths.Stories260K, dir.File("gpt2.gguf"), RepoPaths.Stories260K));
        Assert.Equal(["gpt2.gguf", "other.gguf"], Directory.GetFileSystemEntries(dir.Path).Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }
}
