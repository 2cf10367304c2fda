using System.Text;
using ModelSmith.Formats;
using ModelSmith.Models;
using ModelSmith.Tensors;
using ModelSmith.Tokenization;
using ModelSmith.Training.Data;

namespace ModelSmith.Training;

/// <summary>
/// The shape of a Llama model to pretrain. The presets keep every matrix's input width (the embedding and the
/// feed-forward width) a multiple of 256, so that every K-quant block fits every row and quantizing needs no
/// fallback type.
/// </summary>
public sealed record ModelSize(string Name, int Dim, int Layers, int Heads, int KvHeads, int FeedForward, int Context, int Vocab)
{
    /// <summary>2.1M parameters (0.5M of them the tied embedding): the quick demo's base model.</summary>
    public static ModelSize Tiny { get; } = new("tiny", 256, 2, 4, 2, 768, 128, 2048);

    /// <summary>5.8M parameters (1M of them the tied embedding).</summary>
    public static ModelSize Small { get; } = new("small", 256, 6, 8, 4, 768, 256, 4096);

    /// <summary>29M parameters (4M of them the tied embedding).</summary>
    public static ModelSize Base { get; } = new("base", 512, 8, 8, 4, 1536, 512, 8192);

    public static IReadOnlyList<ModelSize> Presets { get; } = [Tiny, Small, Base];

    /// <summary>The preset called <paramref name="name"/> (tiny, small, base), or null.</summary>
    public static ModelSize? Find(string name)
    {
        foreach (ModelSize s in Presets)
            if (string.Equals(s.Name, name, StringComparison.OrdinalIgnoreCase)) return s;
        return null;
    }

    /// <summary>Null when usable, else what is wrong (and what would fix it).</summary>
    public string? Validate()
    {
        if (Dim < 1 || Layers < 1 || Heads < 1 || KvHeads < 1 || FeedForward < 1 || Context < 2)
            return "dim, layers, heads, kv-heads and ffn must be positive and the context at least 2.";
        if (Dim % Heads != 0) return $"dim {Dim} is not divisible by {Heads} heads.";
        if ((Dim / Heads) % 2 != 0) return $"the head size {Dim / Heads} (dim / heads) must be even for RoPE.";
        if (Heads % KvHeads != 0) return $"{Heads} heads cannot be shared evenly by {KvHeads} kv-heads.";
        if (Vocab < 259) return $"vocab {Vocab} is too small: 256 byte tokens and 3 special tokens need at least 259.";
        return null;
    }

    /// <summary>The Llama configuration (tied output embedding) for a vocabulary of <paramref name="vocabSize"/> tokens.</summary>
    public ModelConfig ToConfig(int vocabSize) => new()
    {
        Architecture = ModelArchitecture.Llama,
        VocabSize = vocabSize,
        ContextLength = Context,
        EmbeddingLength = Dim,
        BlockCount = Layers,
        FeedForwardLength = FeedForward,
        HeadCount = Heads,
        KvHeadCount = KvHeads,
        HeadDim = Dim / Heads,
        NormEpsilon = 1e-5f,
        RopeFreqBase = 10000f,
        RopeDims = Dim / Heads,
        TiedOutput = true,
    };
}

/// <summary>Steps of pretraining besides the training loop: the tokenizer, and the model file.</summary>
public static class Pretraining
{
    /// <summary>
    /// The special tokens of a pretrained vocabulary: end-of-text (BOS and EOS), then the ChatML turn markers, so that
    /// a model fine-tuned with the default chat template sees each marker as one token.
    /// </summary>
    public static IReadOnlyList<string> SpecialTokens { get; } = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

    /// <summary>
    /// A byte-level BPE vocabulary (GPT-2 pre-tokenization) of up to <paramref name="vocabSize"/> tokens learned from
    /// the training documents of <paramref name="paths"/>: the same files, records and train/validation split that
    /// <see cref="TrainingData.Load"/> makes with <paramref name="dataOptions"/>, so the validation text stays unseen.
    /// </summary>
    public static TokenizerSpec TrainTokenizer(IEnumerable<string> paths, TrainingDataOptions dataOptions, int vocabSize,
        Action<BpeTrainerProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(paths);
        ArgumentNullException.ThrowIfNull(dataOptions);
        IReadOnlyList<DataFile> files = DataFile.Find(paths);
        var documents = new List<TrainingDocument>();
        foreach (TrainingDocument d in DataReader.Read(files, dataOptions, new DataReadStats()))
            documents.Add(d);
        if (documents.Count == 0)
            throw new DataFormatException(files[0].Name, 0, "the data holds no document to learn a vocabulary from.");
        (List<TrainingDocument> train, _) = DatasetSplit.Split(documents, dataOptions.ValidationFraction, dataOptions.Seed);
        var texts = new List<string>(train.Count);
        var text = new StringBuilder();
        foreach (TrainingDocument d in train)
        {
            text.Clear();
            foreach (TextSegment s in ExampleTokenizer.Render(d, dataOptions.ChatTemplate, dataOptions.AlpacaAsChat))
                if (!s.IsMarkup) text.Append(s.Text);
            texts.Add(text.ToString());
        }
        var options = new BpeTrainerOptions { VocabSize = vocabSize, SpecialTokens = SpecialTokens, PreTokenizer = "gpt-2" };
        return BpeTrainer.Train(texts, options, progress, cancellationToken);
    }

    /// <summary>
    /// Writes a pretrained model as a complete Llama GGUF at <paramref name="path"/> (atomically): general.*, the
    /// architecture keys, <paramref name="tokenizer"/> as tokenizer.ggml.*, and every tensor, matrices in
    /// <paramref name="weightType"/> (F32 or F16), norms in F32.
    /// </summary>
    public static void WriteModel(ModelParameters parameters, TokenizerSpec tokenizer, string path, GgmlType weightType = GgmlType.F32, string name = "modelsmith-base")
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (tokenizer.Tokens.Count != parameters.Config.VocabSize)
            throw new ArgumentException($"the tokenizer has {tokenizer.Tokens.Count} tokens but the model's vocabulary is {parameters.Config.VocabSize}.", nameof(tokenizer));
        GgufWriter writer = TrainingGguf.CreateWriter(parameters, weightType, name);
        writer.Set("general.type", "model");
        writer.Set("general.basename", name);
        writer.Set("general.size_label", SizeLabel(parameters.Config.ParameterCount));
        GgufTokenizer.WriteSpec(writer, tokenizer);
        writer.Write(path);
    }

    /// <summary>
    /// Writes a fine-tuned model at <paramref name="path"/> (atomically) as its base was written: every metadata key
    /// of <paramref name="baseFile"/> (tokenizer, general.*, architecture), every tensor in the type the base stored
    /// it in and in its order, with <paramref name="parameters"/>' values (tensors that are not parameters are copied
    /// unchanged); plus <paramref name="chatTemplate"/> as
    /// tokenizer.chat_template and the base named in general.base_model.*.
    /// </summary>
    public static void WriteFineTuned(GgufFile baseFile, ModelParameters parameters, string path, ChatTemplate chatTemplate, string name)
    {
        ArgumentNullException.ThrowIfNull(baseFile);
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(chatTemplate);
        var writer = new GgufWriter();
        foreach (string key in baseFile.MetadataKeys)
            if (!key.StartsWith("general.base_model.", StringComparison.Ordinal)) writer.Set(key, baseFile.Metadata[key]);
        string baseName = baseFile.GetStringOrNull("general.name") ?? Path.GetFileNameWithoutExtension(baseFile.Path);
        writer.Set("general.name", name);
        writer.Set("general.base_model.count", 1u);
        writer.Set("general.base_model.0.name", baseName);
        writer.Set(ChatTemplate.MetadataKey, chatTemplate.Source);
        foreach (ParameterTensor t in parameters.Layout.Tensors)
            baseFile.RequireTensor(t.Name);
        foreach (GgufTensorInfo info in baseFile.Tensors)
        {
            ParameterTensor? t = parameters.Layout.Find(info.Name);
            if (t is null)
            {
                // A tensor training does not touch (rope_freqs, say) goes over as it was stored.
                writer.AddTensor(info.Name, info.Type, info.Shape, baseFile.GetTensorData(info));
                continue;
            }
            RowKernel kernel = RowKernel.For(info.Type);
            var bytes = new byte[kernel.RowBytes(t.Length)];
            kernel.FromSingle(parameters[t], bytes);
            writer.AddTensor(t.Name, info.Type, info.Shape, bytes);
        }
        writer.Write(path);
    }

    private static string SizeLabel(long parameters) => parameters >= 1_000_000_000
        ? FormattableString.Invariant($"{parameters / 1e9:0.#}B")
        : parameters >= 1_000_000 ? FormattableString.Invariant($"{parameters / 1e6:0.#}M") : FormattableString.Invariant($"{parameters / 1e3:0.#}K");
}
