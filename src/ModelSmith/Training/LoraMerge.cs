using System.Diagnostics;
using ModelSmith.Formats;
using ModelSmith.Models;
using ModelSmith.Tensors;

namespace ModelSmith.Training;

/// <summary>What <see cref="LoraMerge.Merge"/> did: the lineage (output, parent, adapter) and the adapter's parameters.</summary>
/// <param name="OutputPath">The merged GGUF model (full path).</param>
/// <param name="ParentPath">The base model it was derived from (full path).</param>
/// <param name="AdapterPath">The adapter: a llama.cpp GGUF adapter file or a PEFT folder (full path).</param>
/// <param name="AdapterFormat">"gguf" or "peft".</param>
/// <param name="Modules">The adapted GGUF modules (attn_q, ffn_down ...).</param>
/// <param name="UserScale">The multiplier asked for (llama.cpp's --lora-scaled; 1 by default).</param>
/// <param name="AdapterScale">The adapter's own factor α/r (α/√r with rsLoRA).</param>
/// <param name="Scale">The factor actually applied to B·A: <paramref name="UserScale"/> × <paramref name="AdapterScale"/>.</param>
/// <param name="MergedTensors">Weight matrices changed.</param>
/// <param name="MergedParameters">Elements of those matrices.</param>
/// <param name="AdapterParameters">Elements of the adapter's A and B tensors.</param>
public sealed record LoraMergeResult(
    string OutputPath,
    string ParentPath,
    string AdapterPath,
    string AdapterFormat,
    int Rank,
    float Alpha,
    bool RankStabilized,
    IReadOnlyList<string> Modules,
    float UserScale,
    float AdapterScale,
    float Scale,
    int MergedTensors,
    long MergedParameters,
    long AdapterParameters,
    long FileBytes,
    TimeSpan Elapsed);

/// <summary>Progress of a merge: <paramref name="Done"/> of <paramref name="Count"/> adapted tensors, the current one named.</summary>
public readonly record struct LoraMergeProgress(int Done, int Count, string Name);

/// <summary>
/// Folds a LoRA adapter into a base GGUF model: W' = W + u·s·B·A for every adapted weight, where s is the adapter's
/// α/r (α/√r with rsLoRA) and u the caller's multiplier. The result keeps every metadata key of the base (its
/// architecture, tokenizer, name, file type), every other tensor byte for byte, and each merged tensor in its own
/// type (F32, F16 or BF16, rounded to nearest even), so it loads wherever the base does.
/// </summary>
public static class LoraMerge
{
    /// <summary>
    /// Reads the adapter at <paramref name="path"/> for a model of <paramref name="model"/>'s layout: a folder is a
    /// PEFT adapter (<see cref="PeftAdapter.Read"/>), a file a llama.cpp GGUF adapter (<see cref="TrainingGguf.ImportAdapter"/>).
    /// </summary>
    public static LoraParameters ReadAdapter(string path, ParameterLayout model)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(model);
        if (Directory.Exists(path)) return PeftAdapter.Read(path, model);
        if (!File.Exists(path)) throw new FileNotFoundException($"Adapter '{path}' does not exist; give a GGUF adapter file or a PEFT adapter folder.", path);
        using GgufFile file = GgufFile.Open(path);
        string? arch = file.GetStringOrNull("general.architecture");
        if (arch != null && arch != model.Config.ArchitectureName)
            throw new ModelFormatException(path, -1, $"the adapter is for a '{arch}' model but the base model is '{model.Config.ArchitectureName}'.");
        return TrainingGguf.ImportAdapter(file, model);
    }

    /// <summary>
    /// Merges the adapter at <paramref name="adapterPath"/> (GGUF file or PEFT folder) into the GGUF model at
    /// <paramref name="basePath"/> and writes the result to <paramref name="outputPath"/> atomically (a failure leaves
    /// nothing there). <paramref name="scale"/> multiplies the adapter's own scale.
    /// </summary>
    public static LoraMergeResult Merge(string basePath, string adapterPath, string outputPath, float scale = 1f, IProgress<LoraMergeProgress>? progress = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(basePath);
        ArgumentException.ThrowIfNullOrEmpty(adapterPath);
        ArgumentException.ThrowIfNullOrEmpty(outputPath);
        if (!float.IsFinite(scale)) throw new ArgumentOutOfRangeException(nameof(scale), scale, "The scale must be a finite number.");
        string baseFull = Path.GetFullPath(basePath), adapterFull = Path.GetFullPath(adapterPath), outFull = Path.GetFullPath(outputPath);
        if (outFull == baseFull || outFull == adapterFull)
            throw new ArgumentException($"The output '{outputPath}' would overwrite an input; write the merged model to a new file.", nameof(outputPath));
        if (!File.Exists(baseFull)) throw new FileNotFoundException($"Base model '{basePath}' does not exist.", baseFull);
        var clock = Stopwatch.StartNew();

        using GgufFile file = GgufFile.Open(baseFull);
        var layout = new ParameterLayout(ModelConfig.FromGguf(file));
        LoraParameters adapter = ReadAdapter(adapterFull, layout);
        LoraOptions options = adapter.Layout.Options;
        float s = scale * options.Scale;
        int r = options.Rank;

        var merged = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        IReadOnlyList<LoraTarget> targets = adapter.Layout.Targets;
        long mergedParameters = 0;
        for (int n = 0; n < targets.Count; n++)
        {
            LoraTarget t = targets[n];
            string name = $"blk.{t.Layer}.{t.Module}.weight";
            progress?.Report(new LoraMergeProgress(n, targets.Count, name));
            GgufTensorInfo info = file.RequireTensor(name);
            if (info.Shape.Length != 2 || info.Shape[0] != t.In || info.Shape[1] != t.Out)
                throw new ModelFormatException(baseFull, info.Offset, $"tensor '{name}' has shape {info.ShapeText}; the adapter needs [{t.In}, {t.Out}].");
            if (info.Type is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16))
                throw new ModelFormatException(baseFull, info.Offset, $"tensor '{name}' is {info.Type}; adapters merge into F32, F16 or BF16 weights. Merge into the unquantized model, then quantize the result.");
            RowKernel kernel = RowKernel.For(info.Type);
            var w = new float[t.Out * t.In];
            kernel.ToSingle(file.GetTensorData(info).Span, w);
            AddProduct(adapter.Values.Slice(t.A, r * t.In), adapter.Values.Slice(t.B, t.Out * r), t.In, t.Out, r, s, w);
            var bytes = new byte[kernel.RowBytes(w.Length)];
            kernel.FromSingle(w, bytes);
            merged.Add(name, bytes);
            mergedParameters += w.Length;
        }
        progress?.Report(new LoraMergeProgress(targets.Count, targets.Count, ""));

        var writer = new GgufWriter();
        foreach (string key in file.MetadataKeys) writer.Set(key, file.Metadata[key]);
        foreach (GgufTensorInfo t in file.Tensors)
            writer.AddTensor(t.Name, t.Type, t.Shape, merged.TryGetValue(t.Name, out byte[]? m) ? m : file.GetTensorData(t));
        writer.Write(outFull);

        var modules = new List<string>();
        foreach (LoraTarget t in targets)
            if (!modules.Contains(t.Module)) modules.Add(t.Module);
        return new LoraMergeResult(outFull, baseFull, adapterFull, Directory.Exists(adapterFull) ? "peft" : "gguf",
            r, options.Alpha, options.RankStabilized, modules, scale, options.Scale, s, targets.Count, mergedParameters, adapter.Values.Length,
            new FileInfo(outFull).Length, clock.Elapsed);
    }

    /// <summary>
    /// w += s·B·A, each element's sum over the rank taken in double in rank order (the arithmetic of
    /// <see cref="LoraParameters.MergeInto"/>, so both give the same floats). Rows run in parallel.
    /// </summary>
    private static void AddProduct(ReadOnlySpan<float> a, ReadOnlySpan<float> b, int inDim, int outDim, int r, float s, float[] w) // a: (r, in), b: (out, r), w: (out, in)
    {
        float[] aa = a.ToArray(), bb = b.ToArray();
        Parallel.For(0, outDim, () => new double[inDim], (o, _, d) =>
        {
            Array.Clear(d);
            for (int k = 0; k < r; k++)
            {
                double bk = bb[o * r + k];
                int row = k * inDim;
                for (int i = 0; i < inDim; i++) d[i] += bk * aa[row + i];
            }
            int at = o * inDim;
            for (int i = 0; i < inDim; i++) w[at + i] += (float)(s * d[i]);
            return d;
        }, _ => { });
    }
}
