using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using ModelSmith.Formats;
using ModelSmith.Models;
using ModelSmith.Tensors;

namespace ModelSmith.Training;

/// <summary>
/// Hugging Face PEFT LoRA adapters: a folder holding <c>adapter_config.json</c> and <c>adapter_model.safetensors</c>,
/// as <c>PeftModel.save_pretrained</c> writes them and <c>PeftModel.from_pretrained</c> reads them.
/// <para>
/// Keys are <c>base_model.model.&lt;module&gt;.lora_A.weight</c> [r, in] and <c>...lora_B.weight</c> [out, r], with the
/// transformers module paths: Llama <c>model.layers.L.self_attn.{q,k,v,o}_proj</c> and <c>model.layers.L.mlp.{gate,up,down}_proj</c>;
/// GPT-2 <c>transformer.h.L.attn.c_attn</c>, <c>attn.c_proj</c>, <c>mlp.c_fc</c>, <c>mlp.c_proj</c>. GPT-2's layers are
/// transformers Conv1D modules whose weight is stored [in, out]; PEFT still keeps A as [r, in] and B as [out, r]
/// and records fan_in_fan_out = true so that it transposes B·A before adding it, so the tensors have the same
/// meaning as for Llama: ΔW (out, in) = s·B·A.
/// </para>
/// <para>
/// Llama's Q and K rows: llama.cpp's converter permutes the rows of q_proj and k_proj from transformers' "rotate
/// half" RoPE layout to ggml's interleaved one (per head of D rows, GGUF row 2i + j is HF row j·D/2 + i, j ∈ {0, 1}),
/// so our layout holds them in GGUF order. ΔW's rows are B's rows, so B of attn_q and attn_k is put back into HF
/// order on write and into GGUF order on read; A is untouched.
/// </para>
/// </summary>
public static class PeftAdapter
{
    public const string ConfigFileName = "adapter_config.json";
    public const string WeightsFileName = "adapter_model.safetensors";

    private const string KeyPrefix = "base_model.model.";

    /// <summary>
    /// Writes <paramref name="adapter"/> into <paramref name="directory"/> as a PEFT LoRA adapter (F32 tensors).
    /// A new folder is built beside the target and renamed into place; into an existing folder each file is
    /// replaced atomically (weights first, then the config), and other files there are left alone.
    /// <paramref name="baseModelName"/> goes into base_model_name_or_path (a hub id or a local path).
    /// </summary>
    public static void Write(LoraParameters adapter, string directory, string baseModelName)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentNullException.ThrowIfNull(baseModelName);
        LoraLayout layout = adapter.Layout;
        ModelConfig config = layout.Model.Config;
        // PEFT saves with safetensors metadata {"format": "pt"}; write the same.
        var weights = new SafetensorsWriter().SetMetadata("format", "pt");
        foreach (LoraTarget t in layout.Targets)
        {
            string module = KeyPrefix + HfModule(config.Architecture, t.Layer, t.Module);
            float[] a = adapter.Values.Slice(t.A, layout.Options.Rank * t.In).ToArray();
            float[] b = adapter.Values.Slice(t.B, t.Out * layout.Options.Rank).ToArray();
            int heads = RopeHeads(config, t.Module);
            if (heads > 0) b = ToHfRows(b, heads, layout.Options.Rank);
            weights.AddTensor(module + ".lora_A.weight", [layout.Options.Rank, t.In], a);
            weights.AddTensor(module + ".lora_B.weight", [t.Out, layout.Options.Rank], b);
        }
        byte[] json = ConfigJson(layout, baseModelName);

        string full = Path.GetFullPath(directory);
        if (Directory.Exists(full))
        {
            weights.Write(Path.Combine(full, WeightsFileName));
            AtomicFile.Write(Path.Combine(full, ConfigFileName), s => s.Write(json));
            return;
        }
        string temp = $"{full.TrimEnd(Path.DirectorySeparatorChar)}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
        try
        {
            Directory.CreateDirectory(temp);
            weights.Write(Path.Combine(temp, WeightsFileName));
            AtomicFile.Write(Path.Combine(temp, ConfigFileName), s => s.Write(json));
            Directory.Move(temp, full);
        }
        catch
        {
            // Best effort: the original failure is what the caller needs to see.
            try { Directory.Delete(temp, recursive: true); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
            throw;
        }
    }

    /// <summary>
    /// Reads the PEFT LoRA adapter in <paramref name="directory"/> for a model of <paramref name="model"/>'s layout.
    /// The modules come from target_modules (a list of names or name suffixes, a regular expression, or
    /// "all-linear"), the rank from r, the scale from lora_alpha / r or, with use_rslora, lora_alpha / √r.
    /// Every targeted layer must have both tensors with the shapes this model needs (F32, F16 or BF16), and
    /// nothing else may be in the file. Options that change what the adapter computes and that this reader does
    /// not model (DoRA, bias training, modules_to_save, per-module ranks, a layer subset, layer replication) are
    /// refused; exclude_modules is honoured. Errors are <see cref="ModelFormatException"/>s naming the file and the key.
    /// </summary>
    public static LoraParameters Read(string directory, ParameterLayout model)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentNullException.ThrowIfNull(model);
        if (!Directory.Exists(directory))
            throw new DirectoryNotFoundException($"{directory}: no such folder; a PEFT adapter is a folder holding {ConfigFileName} and {WeightsFileName}.");
        string configPath = Path.Combine(directory, ConfigFileName);
        string weightsPath = Path.Combine(directory, WeightsFileName);
        if (!File.Exists(configPath)) throw new FileNotFoundException($"{configPath}: no such file; is {directory} a PEFT adapter folder?", configPath);
        if (!File.Exists(weightsPath))
        {
            string hint = File.Exists(Path.Combine(directory, "adapter_model.bin"))
                ? " It holds adapter_model.bin (a pickled PyTorch file), which is not read; save the adapter with safe_serialization=True."
                : "";
            throw new FileNotFoundException($"{weightsPath}: no such file.{hint}", weightsPath);
        }
        ModelConfig config = model.Config;
        (LoraOptions options, TargetMatcher targets) = ParseConfig(configPath, config);

        using SafetensorsFile file = SafetensorsFile.Open(weightsPath);
        var modules = new List<string>();
        foreach (string m in LoraOptions.AllModules(config.Architecture))
            for (int l = 0; l < config.BlockCount; l++)
                if (targets.Matches(HfModule(config.Architecture, l, m)) && !modules.Contains(m)) modules.Add(m);
        if (modules.Count == 0)
            throw new ModelFormatException(configPath, -1, $"target_modules {targets.Text} matches no linear layer of a {config.ArchitectureName} model (its layers are named like {HfModule(config.Architecture, 0, LoraOptions.AllModules(config.Architecture)[0])}).");
        foreach (string m in modules)
            for (int l = 0; l < config.BlockCount; l++)
                if (!targets.Matches(HfModule(config.Architecture, l, m)))
                    throw new ModelFormatException(configPath, -1, $"target_modules {targets.Text} matches '{HfModule(config.Architecture, 0, m)}' in some layers but not in layer {l}; adapters on a subset of layers are not supported.");

        var layout = new LoraLayout(model, options with { Modules = modules });
        var adapter = new LoraParameters(layout);
        var expected = new HashSet<string>(StringComparer.Ordinal);
        int r = options.Rank;
        foreach (LoraTarget t in layout.Targets)
        {
            string module = KeyPrefix + HfModule(config.Architecture, t.Layer, t.Module);
            ReadTensor(file, module + ".lora_A.weight", r, t.In, adapter.Values.Slice(t.A, r * t.In));
            Span<float> b = adapter.Values.Slice(t.B, t.Out * r);
            ReadTensor(file, module + ".lora_B.weight", t.Out, r, b);
            int heads = RopeHeads(config, t.Module);
            if (heads > 0) ToGgufRows(b.ToArray(), heads, r).CopyTo(b);
            expected.Add(module + ".lora_A.weight");
            expected.Add(module + ".lora_B.weight");
        }
        foreach (SafetensorsTensorInfo t in file.Tensors)
            if (!expected.Contains(t.Name))
                throw new ModelFormatException(weightsPath, file.DataOffset + t.Begin, $"tensor '{t.Name}' is not the lora_A or lora_B of a block projection that {ConfigFileName} targets (target_modules {targets.Text}). Adapters on embeddings or the output head are not supported; otherwise the file and the config disagree, or the adapter was made for another model.");
        return adapter;
    }

    /// <summary>transformers' module path of GGUF module <paramref name="module"/> in block <paramref name="layer"/>.</summary>
    internal static string HfModule(ModelArchitecture architecture, int layer, string module) => architecture == ModelArchitecture.Llama
        ? $"model.layers.{layer}." + module switch
        {
            "attn_q" => "self_attn.q_proj",
            "attn_k" => "self_attn.k_proj",
            "attn_v" => "self_attn.v_proj",
            "attn_output" => "self_attn.o_proj",
            "ffn_gate" => "mlp.gate_proj",
            "ffn_up" => "mlp.up_proj",
            "ffn_down" => "mlp.down_proj",
            _ => throw new ArgumentOutOfRangeException(nameof(module), module, "Not a Llama linear module."),
        }
        : $"transformer.h.{layer}." + module switch
        {
            "attn_qkv" => "attn.c_attn",
            "attn_output" => "attn.c_proj",
            "ffn_up" => "mlp.c_fc",
            "ffn_down" => "mlp.c_proj",
            _ => throw new ArgumentOutOfRangeException(nameof(module), module, "Not a GPT-2 linear module."),
        };

    /// <summary>
    /// The heads whose rows llama.cpp permutes in module <paramref name="module"/>: Llama's attn_q (all heads) and
    /// attn_k (the key/value heads); 0 for every other module.
    /// </summary>
    private static int RopeHeads(ModelConfig config, string module) => config.Architecture != ModelArchitecture.Llama ? 0 : module switch
    {
        "attn_q" => config.HeadCount,
        "attn_k" => config.KvHeadCount,
        _ => 0,
    };

    /// <summary>
    /// Rows of a (heads·D, cols) matrix from GGUF order to HF order: HF row h·D + j·D/2 + i = GGUF row h·D + 2i + j.
    /// </summary>
    internal static float[] ToHfRows(ReadOnlySpan<float> gguf, int heads, int cols) // gguf: (heads·D, cols)
    {
        var hf = new float[gguf.Length];
        int half = gguf.Length / cols / heads / 2;
        for (int h = 0; h < heads; h++)
            for (int j = 0; j < 2; j++)
                for (int i = 0; i < half; i++)
                    gguf.Slice(((h * half + i) * 2 + j) * cols, cols).CopyTo(hf.AsSpan(((h * 2 + j) * half + i) * cols, cols));
        return hf;
    }

    /// <summary>
    /// Rows of a (heads·D, cols) matrix from HF order to GGUF order, as llama.cpp's converter does it:
    /// reshape (heads, 2, D/2, cols), swap axes 1 and 2.
    /// </summary>
    internal static float[] ToGgufRows(ReadOnlySpan<float> hf, int heads, int cols) // hf: (heads·D, cols)
    {
        var gguf = new float[hf.Length];
        int half = hf.Length / cols / heads / 2;
        for (int h = 0; h < heads; h++)
            for (int j = 0; j < 2; j++)
                for (int i = 0; i < half; i++)
                    hf.Slice(((h * 2 + j) * half + i) * cols, cols).CopyTo(gguf.AsSpan(((h * half + i) * 2 + j) * cols, cols));
        return gguf;
    }

    /// <summary>Reads tensor <paramref name="name"/>, which must be (rows, cols) F32, F16 or BF16, into <paramref name="dst"/>.</summary>
    private static void ReadTensor(SafetensorsFile file, string name, int rows, int cols, Span<float> dst) // dst: (rows, cols)
    {
        SafetensorsTensorInfo t = file.FindTensor(name)
            ?? throw new ModelFormatException(file.Path, -1, $"tensor '{name}' is missing; {ConfigFileName} targets this layer, so its lora_A and lora_B must both be present.");
        if (t.Shape.Length != 2 || t.Shape[0] != rows || t.Shape[1] != cols)
            throw new ModelFormatException(file.Path, file.DataOffset + t.Begin, $"tensor '{name}' has shape {t.ShapeText}; with r = {(name.EndsWith(".lora_A.weight", StringComparison.Ordinal) ? rows : cols)} this model needs [{rows}, {cols}].");
        if (!SafetensorsDtypeInfo.TryGetGgmlType(t.Dtype, out GgmlType type) || type is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16))
            throw new ModelFormatException(file.Path, file.DataOffset + t.Begin, $"tensor '{name}' is {SafetensorsDtypeInfo.Name(t.Dtype)}; adapters are read from F32, F16 or BF16.");
        RowKernel.For(type).ToSingle(file.GetTensorData(t).Span, dst);
    }

    private static byte[] ConfigJson(LoraLayout layout, string baseModelName)
    {
        LoraOptions o = layout.Options;
        ModelArchitecture arch = layout.Model.Config.Architecture;
        var modules = new List<string>();
        foreach (LoraTarget t in layout.Targets)
        {
            string path = HfModule(arch, 0, t.Module);
            string leaf = path[(path.LastIndexOf('.') + 1)..];
            // GPT-2 has a c_proj in attention and one in the MLP; a bare "c_proj" would target both.
            bool ambiguous = arch == ModelArchitecture.Gpt2 && leaf == "c_proj" && !(HasModule(layout, "attn_output") && HasModule(layout, "ffn_down"));
            string name = ambiguous ? path[(path.IndexOf('.', "transformer.h.".Length) + 1)..] : leaf;
            if (!modules.Contains(name)) modules.Add(name);
        }
        modules.Sort(StringComparer.Ordinal);

        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            // The fields of PEFT's LoraConfig as save_pretrained writes them: keys sorted, defaults spelled out.
            json.WriteStartObject();
            json.WriteStartObject("alpha_pattern");
            json.WriteEndObject();
            json.WriteNull("auto_mapping");
            json.WriteString("base_model_name_or_path", baseModelName);
            json.WriteString("bias", "none");
            json.WriteBoolean("fan_in_fan_out", arch == ModelArchitecture.Gpt2);
            json.WriteBoolean("inference_mode", true);
            json.WriteBoolean("init_lora_weights", true);
            json.WriteNull("layer_replication");
            json.WriteNull("layers_pattern");
            json.WriteNull("layers_to_transform");
            json.WriteStartObject("loftq_config");
            json.WriteEndObject();
            json.WritePropertyName("lora_alpha");
            WriteNumber(json, o.Alpha);
            json.WritePropertyName("lora_dropout");
            WriteNumber(json, o.Dropout);
            json.WriteNull("megatron_config");
            json.WriteString("megatron_core", "megatron.core");
            json.WriteNull("modules_to_save");
            json.WriteString("peft_type", "LORA");
            json.WriteNumber("r", o.Rank);
            json.WriteStartObject("rank_pattern");
            json.WriteEndObject();
            json.WriteNull("revision");
            json.WriteStartArray("target_modules");
            foreach (string m in modules) json.WriteStringValue(m);
            json.WriteEndArray();
            json.WriteString("task_type", "CAUSAL_LM");
            json.WriteBoolean("use_dora", false);
            json.WriteBoolean("use_rslora", o.RankStabilized);
            json.WriteEndObject();
        }
        stream.WriteByte((byte)'\n');
        return stream.ToArray();
    }

    private static bool HasModule(LoraLayout layout, string module)
    {
        foreach (LoraTarget t in layout.Targets)
            if (t.Module == module) return true;
        return false;
    }

    /// <summary>A float as Python writes it: integral values as integers, others in their shortest round-trip form.</summary>
    private static void WriteNumber(Utf8JsonWriter json, float value)
    {
        if (value == MathF.Round(value) && Math.Abs(value) < 1e9f) json.WriteNumberValue((long)value);
        else json.WriteNumberValue(double.Parse(value.ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture));
    }

    private static (LoraOptions Options, TargetMatcher Targets) ParseConfig(string path, ModelConfig config)
    {
        byte[] bytes = File.ReadAllBytes(path);
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(bytes, new JsonDocumentOptions { AllowTrailingCommas = false });
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(path, JsonText.OffsetOf(e, bytes), $"not valid JSON: {JsonText.Reason(e)}", e);
        }
        using (doc)
        {
            JsonElement root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new ModelFormatException(path, 0, $"expected a JSON object, found {root.ValueKind}.");

            string? peftType = OptionalString(path, root, "peft_type");
            if (peftType != "LORA")
                throw new ModelFormatException(path, -1, peftType is null
                    ? "field 'peft_type' is missing; a LoRA adapter config has \"peft_type\": \"LORA\"."
                    : $"field 'peft_type' is '{peftType}'; only LoRA adapters (\"LORA\") are supported.");
            string? task = OptionalString(path, root, "task_type");
            if (task is not (null or "CAUSAL_LM"))
                throw new ModelFormatException(path, -1, $"field 'task_type' is '{task}'; only causal language model adapters (\"CAUSAL_LM\") are supported.");

            if (!root.TryGetProperty("r", out JsonElement rElement) || rElement.ValueKind != JsonValueKind.Number || !rElement.TryGetInt32(out int rank) || rank < 1)
                throw new ModelFormatException(path, -1, "field 'r' (the LoRA rank) must be a positive integer.");
            float alpha = (float)OptionalNumber(path, root, "lora_alpha", 8);
            if (!(alpha > 0) || float.IsInfinity(alpha)) throw new ModelFormatException(path, -1, $"field 'lora_alpha' is {alpha}; it must be positive and finite.");
            float dropout = (float)OptionalNumber(path, root, "lora_dropout", 0);
            if (!(dropout >= 0 && dropout < 1)) throw new ModelFormatException(path, -1, $"field 'lora_dropout' is {dropout}; it must be in [0, 1).");
            bool rsLora = OptionalBool(path, root, "use_rslora", false);

            string? bias = OptionalString(path, root, "bias");
            if (bias is not (null or "none"))
                throw new ModelFormatException(path, -1, $"field 'bias' is '{bias}'; adapters that train biases are not supported (\"none\" is).");
            if (OptionalBool(path, root, "use_dora", false))
                throw new ModelFormatException(path, -1, "field 'use_dora' is true; DoRA adapters are not supported, only plain LoRA.");
            if (OptionalBool(path, root, "lora_bias", false))
                throw new ModelFormatException(path, -1, "field 'lora_bias' is true; LoRA B biases are not supported.");
            if (OptionalBool(path, root, "fan_in_fan_out", false) && config.Architecture == ModelArchitecture.Llama)
                throw new ModelFormatException(path, -1, "field 'fan_in_fan_out' is true, but Llama's layers are nn.Linear ([out, in] weights); the adapter was made for a Conv1D model such as GPT-2.");
            RequireEmpty(path, root, "modules_to_save", "extra fully trained modules are not supported");
            RequireEmpty(path, root, "rank_pattern", "per-module ranks are not supported");
            RequireEmpty(path, root, "alpha_pattern", "per-module alphas are not supported");
            RequireEmpty(path, root, "layers_to_transform", "adapters on a subset of layers are not supported");
            RequireEmpty(path, root, "layer_replication", "layer replication is not supported");
            RequireEmpty(path, root, "trainable_token_indices", "trainable token embeddings are not supported");

            RequireEmpty(path, root, "target_parameters", "adapters on raw parameters (rather than linear modules) are not supported");
            RequireEmpty(path, root, "alora_invocation_tokens", "activated LoRA (aLoRA) adapters are not supported");
            if (OptionalBool(path, root, "use_qalora", false))
                throw new ModelFormatException(path, -1, "field 'use_qalora' is true; QA-LoRA adapters are not supported.");

            if (!root.TryGetProperty("target_modules", out JsonElement targets) || targets.ValueKind == JsonValueKind.Null)
                throw new ModelFormatException(path, -1, "field 'target_modules' is missing; it names the layers the adapter changes (e.g. [\"q_proj\", \"v_proj\"]).");
            TargetMatcher matcher = TargetMatcher.Parse(path, "target_modules", targets);
            if (root.TryGetProperty("exclude_modules", out JsonElement excludes) && excludes.ValueKind != JsonValueKind.Null)
                matcher = matcher.Except(TargetMatcher.Parse(path, "exclude_modules", excludes));
            var options = new LoraOptions { Rank = rank, Alpha = alpha, Dropout = dropout, RankStabilized = rsLora };
            return (options, matcher);
        }
    }

    private static string? OptionalString(string path, JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out JsonElement e) || e.ValueKind == JsonValueKind.Null) return null;
        if (e.ValueKind != JsonValueKind.String) throw new ModelFormatException(path, -1, $"field '{name}' must be a string, found {e.ValueKind}.");
        return e.GetString();
    }

    private static double OptionalNumber(string path, JsonElement root, string name, double fallback)
    {
        if (!root.TryGetProperty(name, out JsonElement e) || e.ValueKind == JsonValueKind.Null) return fallback;
        if (e.ValueKind != JsonValueKind.Number) throw new ModelFormatException(path, -1, $"field '{name}' must be a number, found {e.ValueKind}.");
        return e.GetDouble();
    }

    private static bool OptionalBool(string path, JsonElement root, string name, bool fallback)
    {
        if (!root.TryGetProperty(name, out JsonElement e) || e.ValueKind == JsonValueKind.Null) return fallback;
        if (e.ValueKind is not (JsonValueKind.True or JsonValueKind.False)) throw new ModelFormatException(path, -1, $"field '{name}' must be true or false, found {e.ValueKind}.");
        return e.GetBoolean();
    }

    /// <summary>Refuses a field that is present with a non-empty value (null, {}, [] are fine).</summary>
    private static void RequireEmpty(string path, JsonElement root, string name, string why)
    {
        if (!root.TryGetProperty(name, out JsonElement e)) return;
        bool empty = e.ValueKind switch
        {
            JsonValueKind.Null => true,
            JsonValueKind.Object => !e.EnumerateObject().Any(),
            JsonValueKind.Array => e.GetArrayLength() == 0,
            _ => false,
        };
        if (!empty) throw new ModelFormatException(path, -1, $"field '{name}' is {e.GetRawText()}; {why}.");
    }

    /// <summary>
    /// PEFT's rule for which modules target_modules selects: a string is a regular expression that must match the
    /// whole module path ("all-linear": every linear layer but the output head); a list selects a module whose
    /// path equals an entry or ends with "." + an entry.
    /// </summary>
    private sealed class TargetMatcher
    {
        private readonly Regex? _regex;
        private readonly string[] _names = [];
        private readonly bool _allLinear;
        private readonly TargetMatcher? _excluded;

        private TargetMatcher(string text, Regex? regex, string[] names, bool allLinear, TargetMatcher? excluded = null)
        {
            Text = text;
            _regex = regex;
            _names = names;
            _allLinear = allLinear;
            _excluded = excluded;
        }

        /// <summary>This selection less the modules <paramref name="excluded"/> selects (PEFT's exclude_modules).</summary>
        public TargetMatcher Except(TargetMatcher excluded) => new($"{Text} less {excluded.Text}", _regex, _names, _allLinear, excluded);

        public string Text { get; }

        public static TargetMatcher Parse(string path, string field, JsonElement e)
        {
            if (e.ValueKind == JsonValueKind.String)
            {
                string pattern = e.GetString()!;
                if (string.Equals(pattern, "all-linear", StringComparison.OrdinalIgnoreCase)) return new TargetMatcher("\"all-linear\"", null, [], true);
                try
                {
                    return new TargetMatcher(e.GetRawText(), new Regex($"^(?:{pattern})$", RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1)), [], false);
                }
                catch (ArgumentException ex)
                {
                    throw new ModelFormatException(path, -1, $"field '{field}' is the regular expression {e.GetRawText()}, which does not parse: {ex.Message}", ex);
                }
            }
            if (e.ValueKind != JsonValueKind.Array)
                throw new ModelFormatException(path, -1, $"field '{field}' must be a list of module names or a regular expression, found {e.ValueKind}.");
            var names = new List<string>();
            foreach (JsonElement item in e.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.String || string.IsNullOrEmpty(item.GetString()))
                    throw new ModelFormatException(path, -1, $"field '{field}' holds {item.GetRawText()}; every entry must be a module name such as \"q_proj\".");
                names.Add(item.GetString()!);
            }
            return new TargetMatcher(e.GetRawText(), null, [.. names], false);
        }

        public bool Matches(string module)
        {
            if (_excluded != null && _excluded.Matches(module)) return false;
            if (_allLinear) return true;
            if (_regex != null) return _regex.IsMatch(module);
            foreach (string n in _names)
                if (module == n || module.EndsWith("." + n, StringComparison.Ordinal)) return true;
            return false;
        }
    }
}
