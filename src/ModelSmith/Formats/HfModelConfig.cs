using System.Globalization;
using System.Text;
using System.Text.Json;

namespace ModelSmith.Formats;

/// <summary>
/// The architecture numbers of a Hugging Face <c>config.json</c>, under one set of names whatever the model
/// family calls them: GPT-2's n_embd / n_layer / n_head / n_positions / n_inner / layer_norm_epsilon map onto
/// hidden size / layers / heads / max positions / intermediate size / norm epsilon.
/// Defaults follow transformers: num_key_value_heads = num_attention_heads; rope_theta = 10000 (also read
/// from rope_parameters.rope_theta, where newer configs put it); GPT-2's n_inner null = 4 × n_embd;
/// tie_word_embeddings true for gpt2 and false otherwise (LlamaConfig's default). Every other field is
/// required, and a missing or wrongly typed one is a <see cref="ModelFormatException"/> naming the field.
/// </summary>
/// <param name="RopeTheta">RoPE base frequency; null for models without rotary embeddings (gpt2).</param>
/// <param name="NormEpsilon">rms_norm_eps (Llama family) or layer_norm_epsilon (GPT-2).</param>
public sealed record HfModelConfig(
    string ModelType,
    int HiddenSize,
    int NumHiddenLayers,
    int NumAttentionHeads,
    int NumKeyValueHeads,
    int IntermediateSize,
    double NormEpsilon,
    double? RopeTheta,
    int VocabSize,
    int MaxPositionEmbeddings,
    bool TieWordEmbeddings)
{
    /// <summary>transformers' default rope_theta.</summary>
    public const double DefaultRopeTheta = 10000;

    private const long MaxFileBytes = 64 << 20;

    /// <summary>Reads and checks <paramref name="path"/> (a config.json, or a model folder holding one).</summary>
    public static HfModelConfig Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (Directory.Exists(path)) path = System.IO.Path.Combine(path, "config.json");
        var info = new FileInfo(path);
        if (!info.Exists) throw new FileNotFoundException($"{path}: no such file.", path);
        if (info.Length > MaxFileBytes)
            throw new ModelFormatException(path, 0, $"file is {info.Length} bytes, far too large for a config.json; is this the right file?");
        return Parse(File.ReadAllBytes(path), path);
    }

    /// <summary>Parses config.json text; <paramref name="source"/> names it in errors.</summary>
    public static HfModelConfig Parse(ReadOnlySpan<byte> json, string source)
    {
        ArgumentNullException.ThrowIfNull(source);
        int skipped = json.StartsWith(Encoding.UTF8.Preamble) ? Encoding.UTF8.Preamble.Length : 0;
        var fields = Fields.Read(json[skipped..], skipped, source);

        string modelType = fields.String("model_type");
        bool gpt2 = modelType == "gpt2";
        (int hidden, _) = fields.PositiveInt("hidden_size", "n_embd");
        (int layers, _) = fields.PositiveInt("num_hidden_layers", "n_layer");
        (int heads, _) = fields.PositiveInt("num_attention_heads", "n_head");
        (int kvHeads, long kvAt) = fields.PositiveIntOr(heads, "num_key_value_heads");
        if (heads % kvHeads != 0)
            throw new ModelFormatException(source, kvAt, $"num_attention_heads {heads} is not a multiple of num_key_value_heads {kvHeads}; each key/value head must serve a whole group of query heads.");
        int intermediate = gpt2 && !fields.Has("intermediate_size", "n_inner")
            ? checked(4 * hidden)
            : fields.PositiveInt("intermediate_size", "n_inner").Value;
        double epsilon = fields.PositiveDouble("rms_norm_eps", "layer_norm_epsilon", "layer_norm_eps");
        double? ropeTheta = gpt2 ? null
            : fields.Has("rope_theta") ? fields.PositiveDouble("rope_theta")
            : fields.Has("rope_parameters.rope_theta") ? fields.PositiveDouble("rope_parameters.rope_theta")
            : DefaultRopeTheta;
        (int vocab, _) = fields.PositiveInt("vocab_size");
        (int positions, _) = fields.PositiveInt("max_position_embeddings", "n_positions", "n_ctx");
        bool tied = fields.Has("tie_word_embeddings") ? fields.Bool("tie_word_embeddings") : gpt2;
        return new HfModelConfig(modelType, hidden, layers, heads, kvHeads, intermediate, epsilon, ropeTheta, vocab, positions, tied);
    }

    /// <summary>
    /// The scalar members of the top-level object (and of rope_parameters, as "rope_parameters.x"), each with
    /// its token type, its offset in the file, and its text. A later duplicate replaces an earlier one, as
    /// Python's json module does. Null members count as absent.
    /// </summary>
    private sealed class Fields
    {
        private readonly Dictionary<string, (JsonTokenType Type, long At, string Text)> _fields = new(StringComparer.Ordinal);
        private readonly string _source;

        private Fields(string source) => _source = source;

        public static Fields Read(ReadOnlySpan<byte> json, int baseOffset, string source)
        {
            var fields = new Fields(source);
            var reader = new Utf8JsonReader(json, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow });
            try
            {
                if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
                    throw new ModelFormatException(source, baseOffset + (reader.TokenType == JsonTokenType.None ? 0 : reader.TokenStartIndex),
                        "config.json must be a JSON object of model settings.");
                fields.ReadObject(ref reader, "", baseOffset);
                while (reader.Read()) { }
            }
            catch (JsonException e)
            {
                throw new ModelFormatException(source, baseOffset + JsonText.OffsetOf(e, json), $"not valid JSON: {JsonText.Reason(e)}", e);
            }
            catch (InvalidOperationException e)
            {
                throw new ModelFormatException(source, baseOffset + reader.TokenStartIndex, $"a string is not valid Unicode ({e.Message}).", e);
            }
            return fields;
        }

        private void ReadObject(ref Utf8JsonReader reader, string prefix, int baseOffset)
        {
            while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
            {
                string name = prefix + reader.GetString();
                reader.Read();
                long at = baseOffset + reader.TokenStartIndex;
                switch (reader.TokenType)
                {
                    case JsonTokenType.String:
                        _fields[name] = (reader.TokenType, at, reader.GetString()!);
                        break;
                    case JsonTokenType.Number:
                        _fields[name] = (reader.TokenType, at, Encoding.UTF8.GetString(reader.ValueSpan));
                        break;
                    case JsonTokenType.True or JsonTokenType.False:
                        _fields[name] = (reader.TokenType, at, reader.TokenType == JsonTokenType.True ? "true" : "false");
                        break;
                    case JsonTokenType.Null:
                        _fields.Remove(name);
                        break;
                    case JsonTokenType.StartObject when name == "rope_parameters":
                        ReadObject(ref reader, "rope_parameters.", baseOffset);
                        break;
                    default:
                        _fields[name] = (reader.TokenType, at, "");
                        reader.Skip();
                        break;
                }
            }
        }

        public bool Has(params string[] names)
        {
            foreach (string n in names)
                if (_fields.ContainsKey(n)) return true;
            return false;
        }

        public string String(string name)
        {
            var (type, at, text) = Require([name]).Field;
            if (type != JsonTokenType.String || text.Length == 0)
                throw WrongType(name, type, at, text, "a non-empty string");
            return text;
        }

        public bool Bool(string name)
        {
            var (type, at, text) = Require([name]).Field;
            if (type is not (JsonTokenType.True or JsonTokenType.False))
                throw WrongType(name, type, at, text, "true or false");
            return type == JsonTokenType.True;
        }

        public (int Value, long At) PositiveInt(params string[] names)
        {
            var (name, (type, at, text)) = Require(names);
            const string expected = "a positive whole number";
            if (type != JsonTokenType.Number) throw WrongType(name, type, at, text, expected);
            if (!long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long v))
                throw new ModelFormatException(_source, at, $"'{name}' is {text}; expected {expected}.");
            if (v < 1 || v > int.MaxValue)
                throw new ModelFormatException(_source, at, $"'{name}' is {v}; expected {expected} up to {int.MaxValue}.");
            return ((int)v, at);
        }

        public (int Value, long At) PositiveIntOr(int fallback, string name) => Has(name) ? PositiveInt(name) : (fallback, -1);

        public double PositiveDouble(params string[] names)
        {
            var (name, (type, at, text)) = Require(names);
            const string expected = "a positive number";
            if (type != JsonTokenType.Number) throw WrongType(name, type, at, text, expected);
            double v = double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture);
            if (!(v > 0) || double.IsInfinity(v))
                throw new ModelFormatException(_source, at, $"'{name}' is {text}; expected {expected}.");
            return v;
        }

        private (string Name, (JsonTokenType Type, long At, string Text) Field) Require(string[] names)
        {
            foreach (string n in names)
                if (_fields.TryGetValue(n, out var field)) return (n, field);
            string aliases = names.Length == 1 ? "" : $" (or {string.Join(", ", names[1..].Select(n => $"'{n}'"))})";
            throw new ModelFormatException(_source, -1, $"'{names[0]}'{aliases} is missing or null; it is required to build the model.");
        }

        private ModelFormatException WrongType(string name, JsonTokenType type, long at, string text, string expected)
        {
            string actual = type == JsonTokenType.String ? $"the string \"{text}\"" : type == JsonTokenType.Number ? $"the number {text}" : JsonText.Describe(type);
            return new ModelFormatException(_source, at, $"'{name}' is {actual}; expected {expected}.");
        }
    }
}
