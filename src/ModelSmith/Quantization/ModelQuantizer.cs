using System.Buffers;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using ModelSmith.Formats;

namespace ModelSmith.Quantization;

/// <summary>How <see cref="ModelQuantizer"/> quantizes a model.</summary>
public sealed class QuantizeOptions
{
    /// <summary>The llama.cpp file type (Q4_K_M, Q8_0, ...).</summary>
    public required QuantFileType FileType { get; init; }

    /// <summary>Importance matrix to quantize with (llama-quantize --imatrix), or null.</summary>
    public ImportanceMatrix? Importance { get; init; }

    /// <summary>The importance matrix's file name, recorded as quantize.imatrix.file.</summary>
    public string? ImportanceFile { get; init; }

    /// <summary>Per-tensor type overrides; the first that matches a tensor wins.</summary>
    public IReadOnlyList<TensorTypeOverride> Overrides { get; init; } = [];

    /// <summary>Allow converting tensors that are already quantized (quality suffers; llama-quantize --allow-requantize).</summary>
    public bool AllowRequantize { get; init; }

    /// <summary>Refuse instead of taking a fallback type when a row length does not fit the chosen block type.</summary>
    public bool NoFallback { get; init; }

    /// <summary>No mix: every matrix in the file type's default type (llama-quantize --pure).</summary>
    public bool Pure { get; init; }

    /// <summary>Threads for quantizing one tensor.</summary>
    public int Threads { get; init; } = Environment.ProcessorCount;
}

/// <summary>One tensor of a <see cref="QuantizationPlan"/>.</summary>
/// <param name="Name">Tensor name.</param>
/// <param name="Shape">Dimensions, innermost (row length) first.</param>
/// <param name="From">Type in the input file.</param>
/// <param name="To">Type in the output file.</param>
/// <param name="Wanted">The type the mix or an override wanted before a fallback replaced it (null: no fallback).</param>
/// <param name="Override">The --keep override that chose the type, or null.</param>
/// <param name="Quantizable">False for tensors llama.cpp never converts (norms, 1-D tensors, ...).</param>
/// <param name="UsesImportance">True when an importance row is applied to this tensor.</param>
public sealed record TensorPlan(string Name, long[] Shape, GgmlType From, GgmlType To, GgmlType? Wanted, TensorTypeOverride? Override,
    bool Quantizable, bool UsesImportance)
{
    /// <summary>Number of values.</summary>
    public long Elements
    {
        get
        {
            long n = 1;
            foreach (long d in Shape)
            {
                n *= d;
            }
            return n;
        }
    }

    /// <summary>Bytes in the input.</summary>
    public long BytesBefore => GgmlTypeInfo.ByteCount(From, Elements);

    /// <summary>Bytes in the output.</summary>
    public long BytesAfter => GgmlTypeInfo.ByteCount(To, Elements);

    /// <summary>True when the data is converted (else copied as is).</summary>
    public bool Converted => From != To;
}

/// <summary>What <see cref="ModelQuantizer"/> will do to every tensor of a model, before doing it.</summary>
public sealed class QuantizationPlan
{
    internal QuantizationPlan(QuantModelInfo model, QuantizeOptions options, IReadOnlyList<TensorPlan> tensors, IReadOnlyList<string> warnings)
    {
        Model = model;
        Options = options;
        Tensors = tensors;
        Warnings = warnings;
    }

    public QuantModelInfo Model { get; }

    public QuantizeOptions Options { get; }

    /// <summary>Every tensor in output order (llama.cpp's: by layer, then by name).</summary>
    public IReadOnlyList<TensorPlan> Tensors { get; }

    /// <summary>Things the user should know: requantizing, importance entries missing or unusable (fallbacks are in <see cref="Fallbacks"/>).</summary>
    public IReadOnlyList<string> Warnings { get; }

    /// <summary>Tensors whose row length forced a fallback type.</summary>
    public IEnumerable<TensorPlan> Fallbacks => Tensors.Where(t => t.Wanted is not null);

    /// <summary>Total tensor bytes in the input.</summary>
    public long BytesBefore => Tensors.Sum(t => t.BytesBefore);

    /// <summary>Total tensor bytes in the output.</summary>
    public long BytesAfter => Tensors.Sum(t => t.BytesAfter);

    /// <summary>Values in all tensors.</summary>
    public long Elements => Tensors.Sum(t => t.Elements);

    /// <summary>Output bits per weight over all tensors (llama.cpp's "quant size ... BPW").</summary>
    public double BitsPerWeightAfter => Elements == 0 ? 0 : 8.0 * BytesAfter / Elements;

    /// <summary>Input bits per weight over all tensors.</summary>
    public double BitsPerWeightBefore => Elements == 0 ? 0 : 8.0 * BytesBefore / Elements;
}

/// <summary>Progress of <see cref="ModelQuantizer.Quantize"/>: tensor <see cref="Index"/> of <see cref="Count"/> is done.</summary>
public sealed record QuantizeProgress(int Index, int Count, string Name, long ElementsDone, long ElementsTotal);

/// <summary>The outcome of <see cref="ModelQuantizer.Quantize"/>.</summary>
public sealed class QuantizationResult
{
    internal QuantizationResult(QuantizationPlan plan, string outputPath, long fileBytes, TimeSpan elapsed, TimeSpan[] tensorTimes)
    {
        Plan = plan;
        OutputPath = outputPath;
        FileBytes = fileBytes;
        Elapsed = elapsed;
        TensorTimes = tensorTimes;
    }

    public QuantizationPlan Plan { get; }

    public string OutputPath { get; }

    /// <summary>Size of the written file.</summary>
    public long FileBytes { get; }

    public TimeSpan Elapsed { get; }

    /// <summary>Time spent converting each tensor, in <see cref="QuantizationPlan.Tensors"/> order.</summary>
    public IReadOnlyList<TimeSpan> TensorTimes { get; }
}

/// <summary>A quantization llama.cpp would refuse too, or a model/option combination that cannot work; the message says what to change.</summary>
public sealed class QuantizationException : Exception
{
    public QuantizationException(string message) : base(message) { }

    public QuantizationException(string message, Exception inner) : base(message, inner) { }

    public QuantizationException() { }
}

/// <summary>
/// Quantizes a GGUF model the way llama.cpp's llama_model_quantize does: the same per-tensor types
/// (<see cref="QuantMix"/>), the same bytes (<see cref="BlockQuantizer"/>, with an importance matrix through
/// the quantize_*_impl paths), the same tensor order and metadata (every input key, then
/// general.quantization_version = 2 and general.file_type; the quantize.imatrix.* keys llama-quantize adds
/// when it uses an importance matrix). Tensors are converted one at a time while the file is written, so
/// memory holds one tensor, and the file appears atomically when complete.
/// </summary>
public static class ModelQuantizer
{
    /// <summary>GGML_QNT_VERSION, stored as general.quantization_version.</summary>
    public const uint QuantizationVersion = 2;

    /// <summary>
    /// The type of every tensor and everything worth a warning, without converting anything. Throws
    /// <see cref="QuantizationException"/> where quantizing would fail.
    /// </summary>
    public static QuantizationPlan Plan(GgufFile input, QuantizeOptions options)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(options);
        if (!Enum.IsDefined(options.FileType))
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.FileType, "Not a file type ModelSmith writes.");
        }
        ArgumentOutOfRangeException.ThrowIfLessThan(options.Threads, 1);
        QuantModelInfo model = QuantModelInfo.FromGguf(input);
        ImportanceMatrix? importance = options.Importance;
        IReadOnlyList<(GgufTensorInfo Tensor, TensorTypeChoice Choice)> choices;
        try
        {
            choices = QuantMix.Plan(model, input.Tensors, options.FileType, importance is not null, options.Overrides, options.Pure);
        }
        catch (InvalidOperationException e)
        {
            throw new QuantizationException($"{input.Path}: {e.Message}", e);
        }

        var warnings = new List<string>();
        var tensors = new TensorPlan[choices.Count];
        var refusedFallbacks = new List<string>();
        var requantized = new List<string>();
        var missingImportance = new List<string>();
        for (int i = 0; i < choices.Count; i++)
        {
            (GgufTensorInfo t, TensorTypeChoice c) = choices[i];
            bool converted = t.Type != c.Type;
            bool usesImportance = false;
            if (converted && importance is not null && BlockQuantizer.HasImportancePath(c.Type))
            {
                if (importance.Entries.TryGetValue(t.Name, out ImatrixEntry? entry))
                {
                    // One importance row per matrix of a stacked (expert) tensor: ne0 · ne2 values, as llama.cpp checks.
                    long expected = t.Shape[0] * (t.Shape.Length > 2 ? t.Shape[2] : 1);
                    if (t.Shape.Length > 3 && t.Shape[3] > 1)
                    {
                        warnings.Add($"{t.Name} is a 4-D tensor; it is quantized without its importance entry.");
                    }
                    else if (entry.SumSquares.Length == expected)
                    {
                        usesImportance = true;
                    }
                    else if (t.Name is "token_embd.weight" or "per_layer_token_embd.weight")
                    {
                        warnings.Add($"importance entry for {t.Name} has {entry.SumSquares.Length} values, not {expected}; quantizing it without one (as llama.cpp does for the token embedding).");
                    }
                    else
                    {
                        throw new QuantizationException(
                            $"The importance matrix has {entry.SumSquares.Length} values for {t.Name} but the tensor needs {expected} (row length {t.Shape[0]}); the imatrix was made for a different model.");
                    }
                }
                else
                {
                    missingImportance.Add(t.Name);
                }
            }
            if (c.Wanted is GgmlType wanted && options.NoFallback)
            {
                refusedFallbacks.Add($"{t.Name} (rows of {t.Shape[0]}): {wanted} needs a multiple of {GgmlTypeInfo.BlockSize(wanted)}; the fallback would be {c.Type}");
            }
            if (converted && GgmlTypeInfo.BlockSize(t.Type) > 1)
            {
                if (!BlockQuantizer.IsSupported(t.Type))
                {
                    throw new QuantizationException($"{t.Name} is stored as {t.Type}, which ModelSmith cannot dequantize, so it cannot be converted to {c.Type}.");
                }
                requantized.Add($"{t.Name} ({t.Type} → {c.Type})");
            }
            else if (converted && !BlockQuantizer.IsSupported(t.Type))
            {
                throw new QuantizationException($"{t.Name} is stored as {t.Type}, which ModelSmith cannot read as floats.");
            }
            tensors[i] = new TensorPlan(t.Name, t.Shape, t.Type, c.Type, c.Wanted, c.Override, c.Quantizable, usesImportance);
        }
        if (refusedFallbacks.Count > 0)
        {
            const int shown = 8;
            throw new QuantizationException(
                $"{refusedFallbacks.Count} tensor(s) do not fit {options.FileType} and --no-fallback refuses the fallback types:\n  " +
                string.Join("\n  ", refusedFallbacks.Take(shown)) + (refusedFallbacks.Count > shown ? $"\n  ... and {refusedFallbacks.Count - shown} more" : "") +
                "\nDrop --no-fallback to accept them, or choose their types with --keep.");
        }
        if (requantized.Count > 0)
        {
            if (!options.AllowRequantize)
            {
                throw new QuantizationException(
                    $"{input.Path} is already quantized: {requantized.Count} tensor(s) would be requantized, e.g. {requantized[0]}. " +
                    "Requantizing loses more quality than quantizing from F32/F16/BF16; use the unquantized model, or pass --allow-requantize.");
            }
            warnings.Insert(0, $"requantizing {requantized.Count} already-quantized tensor(s) (e.g. {requantized[0]}); quality will be worse than quantizing from F32/F16/BF16.");
        }
        if (missingImportance.Count > 0)
        {
            warnings.Add($"the importance matrix has no entry for {missingImportance.Count} tensor(s) (e.g. {missingImportance[0]}); they are quantized without one.");
        }
        return new QuantizationPlan(model, options, tensors, warnings);
    }

    /// <summary>
    /// Quantizes <paramref name="inputPath"/> into <paramref name="outputPath"/> (written atomically: the old file,
    /// if any, stays until the new one is complete). Reports progress after each tensor.
    /// </summary>
    public static QuantizationResult Quantize(string inputPath, string outputPath, QuantizeOptions options,
        IProgress<QuantizeProgress>? progress = null, CancellationToken cancellation = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(inputPath);
        ArgumentException.ThrowIfNullOrEmpty(outputPath);
        ArgumentNullException.ThrowIfNull(options);
        if (string.Equals(Path.GetFullPath(inputPath), Path.GetFullPath(outputPath), StringComparison.Ordinal))
        {
            throw new QuantizationException($"The output '{outputPath}' is the input model; write the quantized model to a new file.");
        }
        var clock = Stopwatch.StartNew();
        using GgufFile input = GgufFile.Open(inputPath);
        QuantizationPlan plan = Plan(input, options);

        var writer = new GgufWriter();
        foreach (string key in input.MetadataKeys)
        {
            if (key is "general.quantization_version" or "general.file_type" or "split.no" or "split.count" or "split.tensors.count")
            {
                continue;
            }
            writer.Set(key, input.Metadata[key]);
        }
        writer.Set("general.quantization_version", QuantizationVersion);
        writer.Set("general.file_type", (uint)options.FileType);
        if (options.Importance is { } importance)
        {
            // llama-quantize records the imatrix through KV overrides (strings cut to 127 bytes as its strncpy does).
            SetLast(writer, "quantize.imatrix.file", GgufValue.FromString(Truncate(options.ImportanceFile ?? "", 127)));
            if (importance.Datasets.Count > 0)
            {
                SetLast(writer, "quantize.imatrix.dataset", GgufValue.FromString(Truncate(importance.Datasets[0], 127)));
            }
            SetLast(writer, "quantize.imatrix.entries_count", GgufValue.FromUInt32((uint)importance.Entries.Count));
            if (importance.ChunkCount > 0)
            {
                SetLast(writer, "quantize.imatrix.chunks_count", GgufValue.FromUInt32((uint)importance.ChunkCount));
            }
        }

        var converter = new TensorConverter(input, plan, options, progress, cancellation);
        for (int i = 0; i < plan.Tensors.Count; i++)
        {
            TensorPlan t = plan.Tensors[i];
            writer.AddTensor(t.Name, t.To, t.Shape, converter.Source(i));
        }
        writer.Write(outputPath);
        return new QuantizationResult(plan, Path.GetFullPath(outputPath), new FileInfo(outputPath).Length, clock.Elapsed, converter.Times);
    }

    private static void SetLast(GgufWriter writer, string key, GgufValue value)
    {
        writer.Remove(key);
        writer.Set(key, value);
    }

    private static string Truncate(string text, int maxBytes)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        if (bytes.Length <= maxBytes)
        {
            return text;
        }
        int n = maxBytes;
        while (n > 0 && (bytes[n] & 0xC0) == 0x80)
        {
            n--;
        }
        return Encoding.UTF8.GetString(bytes, 0, n);
    }

    /// <summary>
    /// Produces each output tensor's bytes when the GGUF writer reaches it: the writer asks every tensor's memory
    /// for its span exactly once, in order, so converting inside that request streams the model through one
    /// reusable output buffer instead of holding the whole quantized model in memory.
    /// </summary>
    private sealed class TensorConverter
    {
        private readonly GgufFile _input;
        private readonly QuantizationPlan _plan;
        private readonly QuantizeOptions _options;
        private readonly IProgress<QuantizeProgress>? _progress;
        private readonly CancellationToken _cancellation;
        private readonly long _totalElements;
        private byte[] _output = [];
        private float[] _floats = [];
        private int _next;
        private long _elementsDone;

        public TensorConverter(GgufFile input, QuantizationPlan plan, QuantizeOptions options, IProgress<QuantizeProgress>? progress, CancellationToken cancellation)
        {
            _input = input;
            _plan = plan;
            _options = options;
            _progress = progress;
            _cancellation = cancellation;
            _totalElements = plan.Elements;
            Times = new TimeSpan[plan.Tensors.Count];
        }

        public TimeSpan[] Times { get; }

        public ReadOnlyMemory<byte> Source(int index) =>
            new LazyTensorMemory(this, index, checked((int)_plan.Tensors[index].BytesAfter)).Deferred;

        public Span<byte> Produce(int index)
        {
            if (index != _next)
            {
                throw new InvalidOperationException($"Tensor {index} was requested while tensor {_next} was due; the GGUF writer must ask for tensor data once, in order.");
            }
            _next++;
            _cancellation.ThrowIfCancellationRequested();
            var clock = Stopwatch.StartNew();
            TensorPlan t = _plan.Tensors[index];
            GgufTensorInfo info = _input.RequireTensor(t.Name);
            ReadOnlyMemory<byte> data = _input.GetTensorData(info);
            Span<byte> result;
            if (!t.Converted)
            {
                result = MemoryMarshal.AsMemory(data).Span;
            }
            else
            {
                result = Convert(t, data.Span);
            }
            Times[index] = clock.Elapsed;
            _elementsDone += t.Elements;
            _progress?.Report(new QuantizeProgress(index + 1, _plan.Tensors.Count, t.Name, _elementsDone, _totalElements));
            return result;
        }

        private Span<byte> Convert(TensorPlan t, ReadOnlySpan<byte> data)
        {
            long elements = t.Elements;
            int cols = checked((int)t.Shape[0]);
            int matrices = 1;
            for (int d = 2; d < t.Shape.Length; d++)
            {
                matrices = checked(matrices * (int)t.Shape[d]);
            }
            int rows = checked((int)(elements / cols / matrices));
            ReadOnlySpan<float> values;
            if (t.From == GgmlType.F32)
            {
                values = MemoryMarshal.Cast<byte, float>(data);
            }
            else
            {
                if (_floats.Length < elements)
                {
                    _floats = new float[elements];
                }
                BlockQuantizer.Dequantize(t.From, data, checked(rows * matrices), cols, _floats.AsSpan(0, (int)elements), _options.Threads);
                values = _floats.AsSpan(0, (int)elements);
            }
            int bytes = checked((int)t.BytesAfter);
            if (_output.Length < bytes)
            {
                _output = GC.AllocateUninitializedArray<byte>(bytes);
            }
            Span<byte> output = _output.AsSpan(0, bytes);
            float[]? importance = t.UsesImportance ? _options.Importance!.MeanSquares(t.Name) : null;
            int matrixValues = rows * cols;
            int matrixBytes = rows * BlockQuantizer.RowSize(t.To, cols);
            try
            {
                for (int m = 0; m < matrices; m++)
                {
                    ReadOnlySpan<float> row = importance is null ? [] : importance.AsSpan(m * cols, cols);
                    BlockQuantizer.Quantize(t.To, values.Slice(m * matrixValues, matrixValues), rows, cols,
                        output.Slice(m * matrixBytes, matrixBytes), _options.Threads, row);
                }
            }
            catch (ArgumentException e)
            {
                throw new QuantizationException($"{_input.Path}: tensor '{t.Name}' cannot be converted to {t.To}: {e.Message}", e);
            }
            return output;
        }
    }

    /// <summary>
    /// Memory of a known length whose bytes <see cref="TensorConverter"/> produces when the span is first
    /// asked for. The span is valid until the next tensor is produced (the output buffer is reused), so it can
    /// be asked for once; the length is known up front for the file header.
    /// </summary>
    private sealed class LazyTensorMemory(TensorConverter converter, int index, int length) : MemoryManager<byte>
    {
        private bool _produced;

        /// <summary>The memory, made without asking for the span (<see cref="MemoryManager{T}.Memory"/> would, for its length).</summary>
        public Memory<byte> Deferred => CreateMemory(length);

        public override Span<byte> GetSpan()
        {
            if (_produced)
            {
                throw new InvalidOperationException($"The bytes of tensor {index} were already written; they are produced once, in order.");
            }
            _produced = true;
            Span<byte> span = converter.Produce(index);
            if (span.Length != length)
            {
                throw new InvalidOperationException($"Tensor {index} produced {span.Length} bytes instead of {length}.");
            }
            return span;
        }

        public override MemoryHandle Pin(int elementIndex = 0) =>
            throw new NotSupportedException("Tensor data produced during writing cannot be pinned; read it through Span once.");

        public override void Unpin()
        {
        }

        protected override void Dispose(bool disposing)
        {
        }
    }
}
