using ModelSmith.Formats;

namespace ModelSmith.Tokenization;

/// <summary>Reads and writes the <c>tokenizer.ggml.*</c> metadata of a GGUF file as a <see cref="TokenizerSpec"/>.</summary>
public static class GgufTokenizer
{
    public const string ModelKey = "tokenizer.ggml.model";
    public const string PreKey = "tokenizer.ggml.pre";
    public const string TokensKey = "tokenizer.ggml.tokens";
    public const string ScoresKey = "tokenizer.ggml.scores";
    public const string TokenTypeKey = "tokenizer.ggml.token_type";
    public const string MergesKey = "tokenizer.ggml.merges";
    public const string BosKey = "tokenizer.ggml.bos_token_id";
    public const string EosKey = "tokenizer.ggml.eos_token_id";
    public const string UnknownKey = "tokenizer.ggml.unknown_token_id";
    public const string PaddingKey = "tokenizer.ggml.padding_token_id";
    public const string AddBosKey = "tokenizer.ggml.add_bos_token";
    public const string AddEosKey = "tokenizer.ggml.add_eos_token";
    public const string AddSpacePrefixKey = "tokenizer.ggml.add_space_prefix";

    /// <summary>The tokenizer metadata of <paramref name="file"/>; throws naming the key when one has the wrong type.</summary>
    public static TokenizerSpec ReadSpec(GgufFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        return new TokenizerSpec
        {
            Model = file.GetString(ModelKey),
            Pre = file.GetStringOrNull(PreKey),
            Tokens = Array<string>(file, TokensKey, GgufValueType.String)
                ?? throw new ModelFormatException(file.Path, -1, $"metadata key '{TokensKey}' is missing; the file has no vocabulary."),
            Scores = ReadScores(file),
            TokenTypes = ReadTokenTypes(file),
            Merges = Array<string>(file, MergesKey, GgufValueType.String),
            BosId = Id(file, BosKey),
            EosId = Id(file, EosKey),
            UnknownId = Id(file, UnknownKey),
            PaddingId = Id(file, PaddingKey),
            AddBos = file.HasKey(AddBosKey) ? file.GetBool(AddBosKey, false) : null,
            AddEos = file.HasKey(AddEosKey) ? file.GetBool(AddEosKey, false) : null,
            AddSpacePrefix = file.HasKey(AddSpacePrefixKey) ? file.GetBool(AddSpacePrefixKey, false) : null,
        };
    }

    /// <summary>The tokenizer of <paramref name="file"/>.</summary>
    public static Tokenizer Load(GgufFile file) => Tokenizer.Create(ReadSpec(file));

    /// <summary>Writes <paramref name="spec"/> as <c>tokenizer.ggml.*</c> keys (only the members that are set).</summary>
    public static void WriteSpec(GgufWriter writer, TokenizerSpec spec)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(spec);
        writer.Set(ModelKey, spec.Model);
        if (spec.Pre is not null)
            writer.Set(PreKey, spec.Pre);
        writer.Set(TokensKey, GgufValue.FromArray(spec.Tokens.ToArray()));
        if (spec.Scores is not null)
            writer.Set(ScoresKey, GgufValue.FromArray(spec.Scores.ToArray()));
        if (spec.TokenTypes is not null)
        {
            int[] types = new int[spec.TokenTypes.Count];
            for (int i = 0; i < types.Length; i++)
                types[i] = (int)spec.TokenTypes[i];
            writer.Set(TokenTypeKey, GgufValue.FromArray(types));
        }
        if (spec.Merges is not null)
            writer.Set(MergesKey, GgufValue.FromArray(spec.Merges.ToArray()));
        SetId(writer, BosKey, spec.BosId);
        SetId(writer, EosKey, spec.EosId);
        SetId(writer, UnknownKey, spec.UnknownId);
        SetId(writer, PaddingKey, spec.PaddingId);
        if (spec.AddBos is bool addBos)
            writer.Set(AddBosKey, addBos);
        if (spec.AddEos is bool addEos)
            writer.Set(AddEosKey, addEos);
        if (spec.AddSpacePrefix is bool prefix)
            writer.Set(AddSpacePrefixKey, prefix);
    }

    private static void SetId(GgufWriter writer, string key, int? id)
    {
        if (id is not int value)
            return;
        if (value < 0)
            throw new ArgumentOutOfRangeException(nameof(id), value, $"{key} must be a token id (>= 0), or null to leave the key out.");
        writer.Set(key, (uint)value);
    }

    private static T[]? Array<T>(GgufFile file, string key, GgufValueType elementType)
    {
        if (file.Get(key) is not GgufValue value)
            return null;
        if (value.Type != GgufValueType.Array || value.ElementType != elementType)
            throw new ModelFormatException(file.Path, -1,
                $"metadata key '{key}' is {Describe(value)}, but must be an array of {elementType}.");
        return value.AsArray<T>();
    }

    private static float[]? ReadScores(GgufFile file)
    {
        if (file.Get(ScoresKey) is not GgufValue value)
            return null;
        // llama.cpp accepts float32 or int32 scores.
        if (value.Type == GgufValueType.Array && value.ElementType == GgufValueType.Int32)
        {
            int[] ints = value.AsArray<int>();
            float[] scores = new float[ints.Length];
            for (int i = 0; i < ints.Length; i++)
                scores[i] = ints[i];
            return scores;
        }
        return Array<float>(file, ScoresKey, GgufValueType.Float32);
    }

    private static TokenType[]? ReadTokenTypes(GgufFile file)
    {
        if (Array<int>(file, TokenTypeKey, GgufValueType.Int32) is not int[] raw)
            return null;
        var types = new TokenType[raw.Length];
        for (int i = 0; i < raw.Length; i++)
            types[i] = (TokenType)raw[i];
        return types;
    }

    private static int? Id(GgufFile file, string key)
    {
        if (!file.HasKey(key))
            return null;
        long id = file.GetInteger(key);
        return id is >= 0 and <= int.MaxValue ? (int)id : -1;
    }

    private static string Describe(GgufValue value) =>
        value.Type == GgufValueType.Array ? $"an array of {value.ElementType}" : $"a {value.Type}";
}
