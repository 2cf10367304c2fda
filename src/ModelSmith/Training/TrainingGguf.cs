using ModelSmith.Formats;
using ModelSmith.Models;
using ModelSmith.Tensors;

namespace ModelSmith.Training;

/// <summary>
/// Moves training parameters to and from GGUF with the tensor names, shapes and metadata that the inference
/// engine and llama.cpp read: matrices [in, out] (ne0 = in), one- dimensional norms and biases always F32.
/// </summary>
public static class TrainingGguf
{
    /// <summary>
    /// A writer holding the architecture metadata and every tensor of <paramref name="parameters"/>, matrices and
    /// embeddings in <paramref name="weightType"/> (F32, F16 or BF16, rounded to nearest even), ready for the
    /// caller to add tokenizer keys and write. The writer copies the values, so training can go on.
    /// </summary>
    public static GgufWriter CreateWriter(ModelParameters parameters, GgmlType weightType = GgmlType.F32, string name = "modelsmith")
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (weightType is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16))
            throw new ArgumentOutOfRangeException(nameof(weightType), weightType, "Training exports weights as F32, F16 or BF16; quantize the exported file for other types.");
        var writer = new GgufWriter();
        ModelMetadata.SetArchitecture(writer, parameters.Config, name, weightType);
        foreach (ParameterTensor t in parameters.Layout.Tensors)
        {
            GgmlType type = t.IsVector ? GgmlType.F32 : weightType;
            RowKernel kernel = RowKernel.For(type);
            var bytes = new byte[kernel.RowBytes(t.Length)];
            kernel.FromSingle(parameters[t], bytes);
            writer.AddTensor(t.Name, type, t.GgufShape, bytes);
        }
        return writer;
    }

    /// <summary>
    /// Writes <paramref name="parameters"/> as a complete GGUF model at <paramref name="path"/> (atomically).
    /// <paramref name="metadata"/> may add keys (the tokenizer, general.*); when it sets no
    /// <c>tokenizer.ggml.model</c>, a placeholder SentencePiece vocabulary of the model's size is written so that
    /// llama.cpp can load the file (token ids only).
    /// </summary>
    public static void Export(ModelParameters parameters, string path, GgmlType weightType = GgmlType.F32, Action<GgufWriter>? metadata = null, string name = "modelsmith")
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        GgufWriter writer = CreateWriter(parameters, weightType, name);
        metadata?.Invoke(writer);
        if (writer.Get("tokenizer.ggml.model") is null) ModelMetadata.SetPlaceholderVocabulary(writer, parameters.Config.VocabSize);
        writer.Write(path);
    }

    /// <summary>
    /// Reads the configuration and every parameter of a Llama or GPT-2 GGUF model whose tensors are F32, F16 or
    /// BF16, converted to float. Errors name the file and the tensor.
    /// </summary>
    public static ModelParameters Import(GgufFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        ModelConfig config = ModelConfig.FromGguf(file);
        var parameters = new ModelParameters(new ParameterLayout(config));
        foreach (ParameterTensor t in parameters.Layout.Tensors)
        {
            GgufTensorInfo info = file.RequireTensor(t.Name);
            long[] expected = t.GgufShape;
            bool sameShape = info.Shape.Length == expected.Length || (t.IsVector && info.ElementCount == t.Length && info.Shape[0] == t.Cols);
            for (int i = 0; sameShape && i < Math.Min(info.Shape.Length, expected.Length); i++) sameShape = info.Shape[i] == expected[i];
            if (!sameShape || info.ElementCount != t.Length)
                throw new ModelFormatException(file.Path, info.Offset, $"tensor '{t.Name}' has shape {info.ShapeText}; a {config.ArchitectureName} model of this configuration needs [{string.Join(", ", expected)}].");
            if (!RowKernel.IsSupported(info.Type))
                throw new ModelFormatException(file.Path, info.Offset, $"tensor '{t.Name}' is stored as {info.Type}; training starts from F32, F16 or BF16 weights (use the unquantized model).");
            RowKernel.For(info.Type).ToSingle(file.GetTensorData(info).Span, parameters[t]);
        }
        return parameters;
    }

    /// <summary>Opens <paramref name="path"/> and reads its parameters (see <see cref="Import(GgufFile)"/>).</summary>
    public static ModelParameters Import(string path)
    {
        using GgufFile file = GgufFile.Open(path);
        return Import(file);
    }

    /// <summary>
    /// A training model with the configuration and parameters of the GGUF model at <paramref name="path"/>, for
    /// batches of up to <paramref name="maxBatch"/> × <paramref name="maxSeqLen"/> tokens (0: the model's context).
    /// </summary>
    public static TrainingModel LoadModel(string path, int maxBatch, int maxSeqLen = 0, int threads = 0)
    {
        using GgufFile file = GgufFile.Open(path);
        ModelParameters parameters = Import(file);
        var model = new TrainingModel(parameters.Config, maxBatch, maxSeqLen > 0 ? maxSeqLen : parameters.Config.ContextLength, threads);
        model.Parameters.CopyFrom(parameters);
        return model;
    }

    /// <summary>
    /// Writes <paramref name="adapter"/> as a llama.cpp LoRA adapter GGUF: general.type = adapter,
    /// adapter.type = lora, adapter.lora.alpha, and "&lt;weight&gt;.lora_a" [in, r] / "&lt;weight&gt;.lora_b" [r, out]
    /// tensors in <paramref name="type"/> (F32, F16 or BF16). llama.cpp scales by alpha / r, so an rsLoRA adapter is
    /// written with alpha·√r, which gives the same factor α/√r.
    /// </summary>
    public static void ExportAdapter(LoraParameters adapter, string path, GgmlType type = GgmlType.F32, string name = "modelsmith-lora")
    {
        ArgumentNullException.ThrowIfNull(adapter);
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (type is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16))
            throw new ArgumentOutOfRangeException(nameof(type), type, "Adapters are written as F32, F16 or BF16.");
        LoraOptions options = adapter.Layout.Options;
        var writer = new GgufWriter();
        writer.Set("general.architecture", adapter.Layout.Model.Config.ArchitectureName);
        writer.Set("general.name", name);
        writer.Set("general.type", "adapter");
        writer.Set("adapter.type", "lora");
        writer.Set("adapter.lora.alpha", options.Scale * options.Rank);
        foreach (ParameterTensor t in adapter.Layout.Tensors)
        {
            RowKernel kernel = RowKernel.For(type);
            var bytes = new byte[kernel.RowBytes(t.Length)];
            kernel.FromSingle(adapter[t], bytes);
            writer.AddTensor(t.Name, type, t.GgufShape, bytes);
        }
        writer.Write(path);
    }

    /// <summary>
    /// Reads a llama.cpp LoRA adapter GGUF for a model of <paramref name="model"/>'s layout: the rank from the
    /// tensors, the modules from their names, the scale from adapter.lora.alpha / r. Tensors may be F32, F16 or BF16.
    /// </summary>
    public static LoraParameters ImportAdapter(GgufFile file, ParameterLayout model)
    {
        ArgumentNullException.ThrowIfNull(file);
        ArgumentNullException.ThrowIfNull(model);
        if (file.GetStringOrNull("general.type") != "adapter" || file.GetStringOrNull("adapter.type") != "lora")
            throw new ModelFormatException(file.Path, -1, "not a LoRA adapter (general.type must be 'adapter' and adapter.type 'lora').");
        var modules = new List<string>();
        int rank = -1;
        foreach (GgufTensorInfo t in file.Tensors)
        {
            if (!t.Name.EndsWith(".weight.lora_a", StringComparison.Ordinal)) continue;
            string weight = t.Name[..^".lora_a".Length];
            string[] parts = weight.Split('.');
            if (parts.Length != 4 || parts[0] != "blk" || model.Find(weight) is null)
                throw new ModelFormatException(file.Path, t.Offset, $"adapter tensor '{t.Name}' does not belong to a linear layer of this {model.Config.ArchitectureName} model.");
            if (!modules.Contains(parts[2])) modules.Add(parts[2]);
            if (t.Shape.Length != 2) throw new ModelFormatException(file.Path, t.Offset, $"adapter tensor '{t.Name}' has shape {t.ShapeText}; expected [in, rank].");
            int r = checked((int)t.Shape[1]);
            if (rank >= 0 && r != rank) throw new ModelFormatException(file.Path, t.Offset, $"adapter tensor '{t.Name}' has rank {r} but others have {rank}; mixed ranks are not supported.");
            rank = r;
        }
        if (rank < 1) throw new ModelFormatException(file.Path, -1, "the adapter has no .lora_a tensors.");
        float alpha = (float)file.GetFloat("adapter.lora.alpha", rank);
        var layout = new LoraLayout(model, new LoraOptions { Rank = rank, Alpha = alpha, Modules = modules });
        var adapter = new LoraParameters(layout);
        foreach (ParameterTensor t in layout.Tensors)
        {
            GgufTensorInfo info = file.FindTensor(t.Name)
                ?? throw new ModelFormatException(file.Path, -1, $"the adapter has no tensor '{t.Name}' (every adapted layer of module '{t.Name.Split('.')[2]}' needs one).");
            long[] expected = t.GgufShape;
            if (info.Shape.Length != 2 || info.Shape[0] != expected[0] || info.Shape[1] != expected[1])
                throw new ModelFormatException(file.Path, info.Offset, $"adapter tensor '{t.Name}' has shape {info.ShapeText}; this model needs [{expected[0]}, {expected[1]}].");
            if (!RowKernel.IsSupported(info.Type))
                throw new ModelFormatException(file.Path, info.Offset, $"adapter tensor '{t.Name}' is stored as {info.Type}; F32, F16 or BF16 are supported.");
            RowKernel.For(info.Type).ToSingle(file.GetTensorData(info).Span, adapter[t]);
        }
        return adapter;
    }
}
