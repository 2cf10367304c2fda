using System.Text.Json;
using ModelSmith.Formats;
using ModelSmith.Models;
using ModelSmith.Quantization;

namespace ModelSmith.Selection;

/// <summary>
/// What the estimator needs to know about a model: its hyperparameters and every tensor's name, shape and
/// storage type (GGUF order and naming, <see cref="GgufTensorInfo.Offset"/> unused), plus the bytes of
/// the file that are not tensor data (header, metadata, vocabulary, alignment padding).
/// </summary>
/// <param name="Source">Where the shape came from, for messages ("model.gguf", "config.json", "numbers").</param>
/// <param name="Exact">True when the tensors are a real file's; false when they are derived (from a config, from numbers, or a planned quantization).</param>
public sealed record ModelShape(ModelConfig Config, IReadOnlyList<GgufTensorInfo> Tensors, long OtherFileBytes, string Source, bool Exact)
{
    /// <summary>Bytes of tensor data.</summary>
    public long TensorBytes
    {
        get
        {
            long sum = 0;
            foreach (GgufTensorInfo t in Tensors) sum += t.ByteSize;
            return sum;
        }
    }

    /// <summary>Size of the GGUF file this shape describes (tensor data + everything else).</summary>
    public long FileBytes => TensorBytes + OtherFileBytes;

    /// <summary>Number of parameters (elements of every tensor).</summary>
    public long ParameterCount
    {
        get
        {
            long sum = 0;
            foreach (GgufTensorInfo t in Tensors) sum += t.ElementCount;
            return sum;
        }
    }

    /// <summary>Average bits per parameter over every tensor.</summary>
    public double BitsPerWeight => ParameterCount == 0 ? 0 : 8.0 * TensorBytes / ParameterCount;

    /// <summary>The storage type holding the most parameters ("F32", "Q4_K" ...).</summary>
    public GgmlType DominantType
    {
        get
        {
            var byType = new Dictionary<GgmlType, long>();
            foreach (GgufTensorInfo t in Tensors) byType[t.Type] = byType.GetValueOrDefault(t.Type) + t.ElementCount;
            GgmlType best = GgmlType.F32;
            long most = -1;
            foreach ((GgmlType type, long n) in byType)
            {
                if (n > most) (best, most) = (type, n);
            }
            return best;
        }
    }

    /// <summary>The shape of a GGUF model file, with its exact tensors and size.</summary>
    public static ModelShape FromGguf(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        using GgufFile file = GgufFile.Open(path);
        ModelConfig config = ModelConfig.FromGguf(file);
        var tensors = new List<GgufTensorInfo>(file.Tensors.Count);
        long tensorBytes = 0;
        foreach (GgufTensorInfo t in file.Tensors)
        {
            tensors.Add(t);
            tensorBytes += t.ByteSize;
        }
        return new ModelShape(config, tensors, Math.Max(0, file.Length - tensorBytes), System.IO.Path.GetFileName(path), Exact: true);
    }

    /// <summary>
    /// The shape of the model a Hugging Face config.json (or a folder holding one) describes, with its
    /// matrices in <paramref name="weightType"/>, or, when null, the config's torch_dtype (F16 when it has none).
    /// Model types other than gpt2 are run as Llama (Mistral, Qwen2 ... share its tensors).
    /// </summary>
    public static ModelShape FromHfConfig(string path, GgmlType? weightType = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        HfModelConfig hf = HfModelConfig.Load(path);
        bool gpt2 = hf.ModelType == "gpt2";
        int headDim = hf.HiddenSize / hf.NumAttentionHeads;
        var config = new ModelConfig
        {
            Architecture = gpt2 ? ModelArchitecture.Gpt2 : ModelArchitecture.Llama,
            VocabSize = hf.VocabSize,
            ContextLength = hf.MaxPositionEmbeddings,
            EmbeddingLength = hf.HiddenSize,
            BlockCount = hf.NumHiddenLayers,
            FeedForwardLength = hf.IntermediateSize,
            HeadCount = hf.NumAttentionHeads,
            KvHeadCount = hf.NumKeyValueHeads,
            HeadDim = headDim,
            NormEpsilon = (float)hf.NormEpsilon,
            RopeFreqBase = (float)(hf.RopeTheta ?? HfModelConfig.DefaultRopeTheta),
            RopeDims = headDim,
            TiedOutput = hf.TieWordEmbeddings,
        };
        string? problem = config.Validate();
        string file = Directory.Exists(path) ? System.IO.Path.Combine(path, "config.json") : path;
        if (problem != null) throw new ModelFormatException(file, -1, problem);
        GgmlType type = weightType ?? TorchDtype(file) ?? GgmlType.F16;
        return FromConfig(config, type, System.IO.Path.GetFileName(file));
    }

    /// <summary>
    /// The tensors our writers give a model of <paramref name="config"/> (the names and shapes of
    /// <see cref="SyntheticModel.Write"/>), matrices in <paramref name="weightType"/>, norms and biases in F32.
    /// The non-tensor bytes are estimated as a placeholder vocabulary's metadata (about 24 bytes a token).
    /// </summary>
    public static ModelShape FromConfig(ModelConfig config, GgmlType weightType, string source)
    {
        ArgumentNullException.ThrowIfNull(config);
        int c = config.EmbeddingLength, f = config.FeedForwardLength, v = config.VocabSize;
        var tensors = new List<GgufTensorInfo>();
        void Add(string name, GgmlType type, params long[] shape) => tensors.Add(new GgufTensorInfo(name, type, shape, 0));
        Add("token_embd.weight", weightType, c, v);
        if (config.Architecture == ModelArchitecture.Gpt2) Add("position_embd.weight", weightType, c, config.ContextLength);
        for (int l = 0; l < config.BlockCount; l++)
        {
            string p = $"blk.{l}.";
            Add(p + "attn_norm.weight", GgmlType.F32, c);
            if (config.Architecture == ModelArchitecture.Llama)
            {
                Add(p + "attn_q.weight", weightType, c, config.QDim);
                Add(p + "attn_k.weight", weightType, c, config.KvDim);
                Add(p + "attn_v.weight", weightType, c, config.KvDim);
                Add(p + "attn_output.weight", weightType, config.QDim, c);
                Add(p + "ffn_norm.weight", GgmlType.F32, c);
                Add(p + "ffn_gate.weight", weightType, c, f);
                Add(p + "ffn_up.weight", weightType, c, f);
                Add(p + "ffn_down.weight", weightType, f, c);
            }
            else
            {
                int qkv = config.QDim + 2 * config.KvDim;
                Add(p + "attn_norm.bias", GgmlType.F32, c);
                Add(p + "attn_qkv.weight", weightType, c, qkv);
                Add(p + "attn_qkv.bias", GgmlType.F32, qkv);
                Add(p + "attn_output.weight", weightType, config.QDim, c);
                Add(p + "attn_output.bias", GgmlType.F32, c);
                Add(p + "ffn_norm.weight", GgmlType.F32, c);
                Add(p + "ffn_norm.bias", GgmlType.F32, c);
                Add(p + "ffn_up.weight", weightType, c, f);
                Add(p + "ffn_up.bias", GgmlType.F32, f);
                Add(p + "ffn_down.weight", weightType, f, c);
                Add(p + "ffn_down.bias", GgmlType.F32, c);
            }
        }
        Add("output_norm.weight", GgmlType.F32, c);
        if (config.Architecture == ModelArchitecture.Gpt2) Add("output_norm.bias", GgmlType.F32, c);
        if (!config.TiedOutput) Add("output.weight", weightType, c, v);
        return new ModelShape(config, tensors, PlaceholderMetadataBytesPerToken * (long)v + 4096, source, Exact: false);
    }

    /// <summary>Metadata bytes per vocabulary token (string, score, type) in a typical GGUF vocabulary.</summary>
    internal const int PlaceholderMetadataBytesPerToken = 24;

    /// <summary>
    /// A Llama of about <paramref name="parameters"/> parameters with the given layer count, key/value
    /// heads and head size, for estimates from numbers alone. The unknown widths are solved from the
    /// parameter count: with query width C = H·D, F ≈ 8/3·C (Llama's SwiGLU rule) and an untied output,
    /// P = 2·V·C + L·(2·C² + 2·C·Hkv·D + 3·C·F) + (2·L + 1)·C; C is rounded to a multiple of D·Hkv and F is then
    /// set (a multiple of 256) so that the count comes out as close to P as whole blocks allow.
    /// For Llama 3 8B (P = 8.03e9, L = 32, Hkv = 8, D = 128, V = 128256) this gives C = 4096, the real width.
    /// </summary>
    public static ModelShape FromNumbers(long parameters, int layers, int kvHeads, int headDim, int vocab, int contextLength, GgmlType weightType)
    {
        if (parameters <= 0) throw new ArgumentOutOfRangeException(nameof(parameters), parameters, "The parameter count must be positive.");
        ArgumentOutOfRangeException.ThrowIfLessThan(layers, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(kvHeads, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(headDim, 2);
        ArgumentOutOfRangeException.ThrowIfLessThan(vocab, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(contextLength, 1);
        double l = layers, v = vocab, kv = (double)kvHeads * headDim, p = parameters;
        const double ratio = 8.0 / 3.0;
        // L(2 + 3r)C² + (2V + 2L·kv + 2L + 1)C − P = 0
        double a = l * (2 + 3 * ratio), b = 2 * v + 2 * l * kv + 2 * l + 1;
        double width = (-b + Math.Sqrt(b * b + 4 * a * p)) / (2 * a);
        int step = headDim * kvHeads;
        int c = Math.Max(step, (int)Math.Round(width / step) * step);
        double rest = 2 * v * c + l * (2.0 * c * c + 2.0 * c * kv) + (2 * l + 1) * c;
        double ffn = (p - rest) / (3.0 * l * c);
        int f = Math.Max(256, (int)Math.Round(ffn / 256) * 256);
        if (rest > p * 1.05)
            throw new ArgumentException($"{parameters:N0} parameters cannot hold {layers} layers of {kvHeads} key/value heads of size {headDim} with a vocabulary of {vocab}; check --params, --layers, --kv-heads, --head-dim and --vocab.");
        var config = new ModelConfig
        {
            Architecture = ModelArchitecture.Llama,
            VocabSize = vocab,
            ContextLength = contextLength,
            EmbeddingLength = c,
            BlockCount = layers,
            FeedForwardLength = f,
            HeadCount = c / headDim,
            KvHeadCount = kvHeads,
            HeadDim = headDim,
            NormEpsilon = 1e-5f,
            RopeDims = headDim,
            TiedOutput = false,
        };
        return FromConfig(config, weightType, "numbers");
    }

    /// <summary>
    /// This model after quantizing it to <paramref name="fileType"/>: each tensor's type as llama.cpp's
    /// mix picks it (<see cref="QuantMix"/>; <paramref name="hasImportance"/> changes Q4_0/Q5_0's ffn_down),
    /// the non-tensor bytes unchanged.
    /// </summary>
    public ModelShape Quantized(QuantFileType fileType, bool hasImportance = false)
    {
        var info = new QuantModelInfo(Config.ArchitectureName, Config.BlockCount, Config.HeadCount, Config.KvHeadCount, 0);
        IReadOnlyList<(GgufTensorInfo Tensor, TensorTypeChoice Choice)> plan;
        try
        {
            plan = QuantMix.Plan(info, Tensors, fileType, hasImportance);
        }
        catch (InvalidOperationException e)
        {
            throw new ArgumentException($"{Source} cannot be quantized to {QuantFileTypes.Name(fileType)}: {e.Message}", nameof(fileType), e);
        }
        var tensors = new List<GgufTensorInfo>(plan.Count);
        foreach ((GgufTensorInfo t, TensorTypeChoice choice) in plan) tensors.Add(t with { Type = choice.Type });
        return this with { Tensors = tensors, Source = $"{Source} as {QuantFileTypes.Name(fileType)}", Exact = false };
    }

    /// <summary>The GGML type of a config.json's torch_dtype (or dtype), or null when it names none we store.</summary>
    private static GgmlType? TorchDtype(string file)
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(file));
        foreach (string key in new[] { "torch_dtype", "dtype" })
        {
            if (doc.RootElement.TryGetProperty(key, out JsonElement e) && e.ValueKind == JsonValueKind.String)
            {
                return e.GetString() switch
                {
                    "float32" => GgmlType.F32,
                    "float16" => GgmlType.F16,
                    "bfloat16" => GgmlType.BF16,
                    _ => null,
                };
            }
        }
        return null;
    }
}
