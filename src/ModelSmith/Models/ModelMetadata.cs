using ModelSmith.Formats;

namespace ModelSmith.Models;

/// <summary>
/// Writes the GGUF metadata that llama.cpp needs to load a model of a given <see cref="ModelConfig"/>:
/// general.*, the architecture's hyperparameter keys and a tokenizer.
/// </summary>
internal static class ModelMetadata
{
    /// <summary>Sets general.* and the architecture keys of <paramref name="config"/>.</summary>
    public static void SetArchitecture(GgufWriter writer, ModelConfig config, string name, GgmlType weightType)
    {
        string a = config.ArchitectureName;
        writer.Set("general.architecture", a);
        writer.Set("general.name", name);
        writer.Set("general.file_type", (uint)FileType(weightType));
        writer.Set($"{a}.context_length", (uint)config.ContextLength);
        writer.Set($"{a}.embedding_length", (uint)config.EmbeddingLength);
        writer.Set($"{a}.block_count", (uint)config.BlockCount);
        writer.Set($"{a}.feed_forward_length", (uint)config.FeedForwardLength);
        writer.Set($"{a}.attention.head_count", (uint)config.HeadCount);
        writer.Set($"{a}.attention.head_count_kv", (uint)config.KvHeadCount);
        if (config.Architecture == ModelArchitecture.Llama)
        {
            writer.Set($"{a}.rope.freq_base", config.RopeFreqBase);
            writer.Set($"{a}.attention.layer_norm_rms_epsilon", config.NormEpsilon);
            writer.Set($"{a}.rope.dimension_count", (uint)config.RopeDims);
            if (config.HeadDim * config.HeadCount != config.EmbeddingLength)
            {
                writer.Set($"{a}.attention.key_length", (uint)config.HeadDim);
                writer.Set($"{a}.attention.value_length", (uint)config.HeadDim);
            }
        }
        else
        {
            writer.Set($"{a}.attention.layer_norm_epsilon", config.NormEpsilon);
        }
        writer.Set($"{a}.vocab_size", (uint)config.VocabSize);
    }

    /// <summary>
    /// A SentencePiece-style placeholder vocabulary of <paramref name="size"/> tokens, laid out like
    /// llama2.c's: &lt;unk&gt;, &lt;s&gt;, &lt;/s&gt;, the 256 byte tokens &lt;0x00&gt;..&lt;0xFF&gt;, then numbered pieces.
    /// For models used at the token-id level.
    /// </summary>
    public static void SetPlaceholderVocabulary(GgufWriter writer, int size)
    {
        if (size < 259) throw new ArgumentOutOfRangeException(nameof(size), size, "A placeholder vocabulary needs at least 259 tokens (3 special + 256 bytes).");
        var tokens = new string[size];
        var scores = new float[size];
        var types = new int[size];
        tokens[0] = "<unk>"; types[0] = 2;
        tokens[1] = "<s>"; types[1] = 3;
        tokens[2] = "</s>"; types[2] = 3;
        for (int b = 0; b < 256; b++)
        {
            tokens[3 + b] = $"<0x{b:X2}>";
            types[3 + b] = 6;
        }
        for (int i = 259; i < size; i++)
        {
            tokens[i] = "▁t" + i.ToString(System.Globalization.CultureInfo.InvariantCulture);
            scores[i] = -i;
            types[i] = 1;
        }
        writer.Set("tokenizer.ggml.model", "llama");
        writer.Set("tokenizer.ggml.tokens", GgufValue.FromArray(tokens));
        writer.Set("tokenizer.ggml.scores", GgufValue.FromArray(scores));
        writer.Set("tokenizer.ggml.token_type", GgufValue.FromArray(types));
        writer.Set("tokenizer.ggml.bos_token_id", 1u);
        writer.Set("tokenizer.ggml.eos_token_id", 2u);
        writer.Set("tokenizer.ggml.unknown_token_id", 0u);
        writer.Set("tokenizer.ggml.add_bos_token", true);
        writer.Set("tokenizer.ggml.add_eos_token", false);
    }

    /// <summary>llama.cpp's LLAMA_FTYPE for a model whose matrices are all of <paramref name="type"/>.</summary>
    public static int FileType(GgmlType type) => type switch
    {
        GgmlType.F32 => 0,
        GgmlType.F16 => 1,
        GgmlType.Q4_0 => 2,
        GgmlType.Q4_1 => 3,
        GgmlType.Q8_0 => 7,
        GgmlType.Q5_0 => 8,
        GgmlType.Q5_1 => 9,
        GgmlType.Q2_K => 10,
        GgmlType.Q3_K => 12,
        GgmlType.Q4_K => 15,
        GgmlType.Q5_K => 17,
        GgmlType.Q6_K => 18,
        GgmlType.BF16 => 32,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "No llama.cpp file type for this tensor type."),
    };
}
