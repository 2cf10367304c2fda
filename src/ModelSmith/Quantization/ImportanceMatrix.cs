using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using ModelSmith.Formats;

namespace ModelSmith.Quantization;

/// <summary>
/// One weight matrix's activation statistics: for each of <see cref="Counts"/>.Length matrices (1 for a dense
/// weight, one per expert for a stacked mixture-of-experts weight), the sums over the calibration tokens that
/// reached it of x² (and of x) for every input column, and how many tokens that was.
/// </summary>
public sealed class ImatrixEntry
{
    /// <summary>Statistics over <paramref name="counts"/>.Length matrices of <paramref name="sumSquares"/>.Length / counts.Length columns.</summary>
    public ImatrixEntry(float[] sumSquares, long[] counts, float[]? sums = null)
    {
        ArgumentNullException.ThrowIfNull(sumSquares);
        ArgumentNullException.ThrowIfNull(counts);
        if (counts.Length == 0 || sumSquares.Length == 0 || sumSquares.Length % counts.Length != 0)
        {
            throw new ArgumentException($"{sumSquares.Length} sums of squares cannot be split evenly over {counts.Length} matrices.", nameof(sumSquares));
        }
        if (sums is not null && sums.Length != sumSquares.Length)
        {
            throw new ArgumentException($"{sums.Length} sums do not match {sumSquares.Length} sums of squares.", nameof(sums));
        }
        SumSquares = sumSquares;
        Counts = counts;
        Sums = sums;
    }

    /// <summary>Σx² per column, (matrices, columns) row-major: llama.cpp's "values" / "in_sum2".</summary>
    public float[] SumSquares { get; }

    /// <summary>Tokens seen per matrix: llama.cpp's "counts". For a matrix read from a legacy .dat file, its ncall.</summary>
    public long[] Counts { get; }

    /// <summary>Σx per column, (matrices, columns), when recorded: llama.cpp's "activations" / "in_sum".</summary>
    public float[]? Sums { get; }

    /// <summary>Input columns of the weight (its row length, ne0).</summary>
    public int Columns => SumSquares.Length / Counts.Length;
}

/// <summary>
/// An importance matrix as llama.cpp's imatrix tool writes it and llama-quantize reads it: per weight matrix,
/// the mean of the squared input activations of each column over calibration text. Reads and writes both of
/// llama.cpp's formats: the GGUF one (general.type = "imatrix"; tensors NAME.in_sum2, NAME.counts and
/// optionally NAME.in_sum; imatrix.datasets, imatrix.chunk_count, imatrix.chunk_size) and the legacy binary
/// .dat (entries of name, ncall, values = mean·ncall; then the chunk count and the dataset name).
/// </summary>
public sealed class ImportanceMatrix
{
    /// <summary>The chunk size llama.cpp's imatrix tool assumes for a legacy file (its default context, 512).</summary>
    public const int DefaultLegacyChunkSize = 512;

    private readonly SortedDictionary<string, ImatrixEntry> _entries = new(StringComparer.Ordinal);

    /// <summary>Entries by weight tensor name, in byte order of the names (the order both formats store them).</summary>
    public IReadOnlyDictionary<string, ImatrixEntry> Entries => _entries;

    /// <summary>The calibration datasets (file names) the statistics came from.</summary>
    public List<string> Datasets { get; } = [];

    /// <summary>Chunks of <see cref="ChunkSize"/> tokens the statistics were collected over.</summary>
    public int ChunkCount { get; set; }

    /// <summary>Tokens per chunk (the context size); 0 for a matrix read from a legacy file, which does not store it.</summary>
    public int ChunkSize { get; set; }

    /// <summary>True when read from a legacy .dat file: <see cref="ImatrixEntry.Counts"/> then hold each entry's
    /// ncall and <see cref="ImatrixEntry.SumSquares"/> the stored mean·ncall.</summary>
    public bool IsLegacy { get; private set; }

    /// <summary>Adds or replaces the statistics of tensor <paramref name="name"/>.</summary>
    public void Set(string name, ImatrixEntry entry)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(entry);
        _entries[name] = entry;
    }

    /// <summary>
    /// The importance row llama-quantize hands the quantizer for tensor <paramref name="name"/>:
    /// (matrices · columns) values, the mean of x² per column (Σx²/count; a matrix no token reached gets 1s),
    /// or for a legacy file the stored values divided by ncall. Null when the matrix has no entry.
    /// </summary>
    public float[]? MeanSquares(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (!_entries.TryGetValue(name, out ImatrixEntry? e))
        {
            return null;
        }
        int cols = e.Columns;
        var values = new float[e.SumSquares.Length];
        if (IsLegacy)
        {
            long ncall = e.Counts[0];
            for (int i = 0; i < values.Length; i++)
            {
                values[i] = ncall > 0 ? e.SumSquares[i] / ncall : e.SumSquares[i];
            }
            return values;
        }
        for (int m = 0; m < e.Counts.Length; m++)
        {
            float count = e.Counts[m];
            for (int j = 0; j < cols; j++)
            {
                values[m * cols + j] = count > 0 ? e.SumSquares[m * cols + j] / count : 1f;
            }
        }
        return values;
    }

    /// <summary>
    /// Reads a GGUF imatrix or a legacy .dat file (told apart by the GGUF magic, as llama.cpp does by trying GGUF first).
    /// Throws <see cref="ModelFormatException"/> naming the file, offset and problem.
    /// </summary>
    public static ImportanceMatrix Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Importance matrix '{path}' does not exist.", path);
        }
        byte[] head = new byte[4];
        int read;
        using (FileStream probe = File.OpenRead(path))
        {
            read = probe.ReadAtLeast(head, 4, throwOnEndOfStream: false);
        }
        bool gguf = read == 4 && BinaryPrimitives.ReadUInt32LittleEndian(head) == GgufFile.Magic;
        return gguf ? LoadGguf(path) : LoadLegacy(path);
    }

    /// <summary>
    /// Statistics form of a legacy matrix, as llama.cpp's imatrix tool converts one it reads: Σx² = value·chunkSize and
    /// count = ncall·chunkSize, so that the means stay value/ncall. A non-legacy matrix is returned as is.
    /// </summary>
    public ImportanceMatrix ToStatistics(int chunkSize = DefaultLegacyChunkSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(chunkSize, 1);
        if (!IsLegacy)
        {
            return this;
        }
        var result = new ImportanceMatrix { ChunkSize = chunkSize };
        result.Datasets.AddRange(Datasets);
        long maxCount = 0;
        foreach ((string name, ImatrixEntry e) in _entries)
        {
            var squares = new float[e.SumSquares.Length];
            for (int i = 0; i < squares.Length; i++)
            {
                squares[i] = e.SumSquares[i] * chunkSize;
            }
            long count = e.Counts[0] * chunkSize;
            maxCount = Math.Max(maxCount, count);
            result._entries[name] = new ImatrixEntry(squares, [count], e.Sums is null ? null : (float[])e.Sums.Clone());
        }
        result.ChunkCount = (int)(maxCount / chunkSize);
        return result;
    }

    /// <summary>
    /// Adds <paramref name="other"/>'s statistics to these (llama.cpp's imatrix --in-file combining): sums and
    /// counts of matching entries add up, new entries are taken over, datasets are appended.
    /// </summary>
    public void Accumulate(ImportanceMatrix other)
    {
        ArgumentNullException.ThrowIfNull(other);
        if (IsLegacy || other.IsLegacy)
        {
            throw new InvalidOperationException("Convert legacy matrices with ToStatistics before combining them.");
        }
        foreach ((string name, ImatrixEntry e) in other._entries)
        {
            if (!_entries.TryGetValue(name, out ImatrixEntry? mine))
            {
                _entries[name] = new ImatrixEntry((float[])e.SumSquares.Clone(), (long[])e.Counts.Clone(), (float[]?)e.Sums?.Clone());
                continue;
            }
            if (mine.SumSquares.Length != e.SumSquares.Length)
            {
                throw new InvalidDataException($"Entry '{name}' has {e.SumSquares.Length} values in one matrix and {mine.SumSquares.Length} in the other; they were not made for the same model.");
            }
            long[] counts = mine.Counts;
            if (counts.Length == 1 && e.Counts.Length > 1)
            {
                counts = Enumerable.Repeat(counts[0], e.Counts.Length).ToArray();
            }
            else if (counts.Length != e.Counts.Length)
            {
                throw new InvalidDataException($"Entry '{name}' has {e.Counts.Length} counts in one matrix and {counts.Length} in the other.");
            }
            var squares = (float[])mine.SumSquares.Clone();
            for (int i = 0; i < squares.Length; i++)
            {
                squares[i] += e.SumSquares[i];
            }
            for (int i = 0; i < counts.Length; i++)
            {
                counts[i] += e.Counts[i];
            }
            float[]? sums = null;
            if (mine.Sums is not null && e.Sums is not null)
            {
                sums = (float[])mine.Sums.Clone();
                for (int i = 0; i < sums.Length; i++)
                {
                    sums[i] += e.Sums[i];
                }
            }
            _entries[name] = new ImatrixEntry(squares, counts, sums);
        }
        Datasets.AddRange(other.Datasets);
        if (ChunkSize == 0)
        {
            ChunkSize = other.ChunkSize;
        }
        long max = 0;
        foreach (ImatrixEntry e in _entries.Values)
        {
            foreach (long c in e.Counts)
            {
                max = Math.Max(max, c);
            }
        }
        ChunkCount = ChunkSize > 0 ? (int)(max / ChunkSize) : ChunkCount + other.ChunkCount;
    }

    /// <summary>
    /// Writes llama.cpp's GGUF imatrix (save_imatrix): general.type, imatrix.datasets, imatrix.chunk_count,
    /// imatrix.chunk_size, then for each entry in name order NAME.in_sum2 (F32, [columns] or [columns, matrices]),
    /// NAME.counts (F32, [1] or [1, matrices]) and, when recorded, NAME.in_sum. Atomic. A legacy matrix is
    /// first converted with <see cref="ToStatistics"/>.
    /// </summary>
    public void SaveGguf(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ImportanceMatrix m = ToStatistics();
        var writer = new GgufWriter();
        writer.Set("general.type", "imatrix");
        writer.Set("imatrix.datasets", GgufValue.FromArray(m.Datasets.ToArray()));
        writer.Set("imatrix.chunk_count", (uint)m.ChunkCount);
        writer.Set("imatrix.chunk_size", (uint)m.ChunkSize);
        foreach ((string name, ImatrixEntry e) in m._entries)
        {
            int mats = e.Counts.Length;
            long[] valueShape = mats == 1 ? [e.Columns] : [e.Columns, mats];
            long[] countShape = mats == 1 ? [1] : [1, mats];
            var counts = new float[mats];
            for (int i = 0; i < mats; i++)
            {
                counts[i] = e.Counts[i];
            }
            writer.AddTensor(name + ".in_sum2", valueShape, e.SumSquares);
            writer.AddTensor(name + ".counts", countShape, counts);
            if (e.Sums is not null)
            {
                writer.AddTensor(name + ".in_sum", valueShape, e.Sums);
            }
        }
        writer.Write(path);
    }

    /// <summary>
    /// Writes llama.cpp's legacy binary imatrix (save_imatrix_legacy), little-endian: int32 entry count; per
    /// entry in name order int32 name length, the name, int32 ncall = ⌈max count / chunk size⌉, int32 value
    /// count, float values = (Σx²/count)·ncall (1·ncall for a matrix with no tokens); then int32 chunk count,
    /// int32 length and the last dataset name. Entries no token reached are left out, as llama.cpp does. Atomic.
    /// </summary>
    public void SaveLegacy(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!IsLegacy && ChunkSize <= 0)
        {
            throw new InvalidOperationException("The chunk size is unknown (0); set ChunkSize to the context size the statistics were collected with.");
        }
        var stored = new List<KeyValuePair<string, ImatrixEntry>>();
        foreach (KeyValuePair<string, ImatrixEntry> kv in _entries)
        {
            bool anyData = false;
            foreach (long c in kv.Value.Counts)
            {
                anyData |= c != 0;
            }
            if (anyData)
            {
                stored.Add(kv);
            }
        }
        AtomicFile.Write(path, stream =>
        {
            using var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
            w.Write(stored.Count);
            foreach ((string name, ImatrixEntry e) in stored)
            {
                byte[] nameBytes = Encoding.UTF8.GetBytes(name);
                w.Write(nameBytes.Length);
                w.Write(nameBytes);
                int nval = e.SumSquares.Length;
                if (IsLegacy)
                {
                    w.Write(checked((int)e.Counts[0]));
                    w.Write(nval);
                    w.Write(MemoryMarshal.AsBytes(e.SumSquares.AsSpan()));
                    continue;
                }
                long maxCount = e.Counts.Max();
                int ncall = (int)((maxCount + (ChunkSize - 1)) / ChunkSize);
                w.Write(ncall);
                w.Write(nval);
                int perMatrix = nval / e.Counts.Length;
                for (int i = 0; i < nval; i++)
                {
                    float count = e.Counts[i / perMatrix];
                    float value = e.SumSquares[i];
                    if (count == 0.0f)
                    {
                        value = 1.0f;
                        count = 1.0f;
                    }
                    w.Write(value / count * ncall);
                }
            }
            w.Write(ChunkCount);
            byte[] dataset = Encoding.UTF8.GetBytes(Datasets.Count > 0 ? Datasets[^1] : "");
            w.Write(dataset.Length);
            w.Write(dataset);
        });
    }

    /// <summary>Writes <see cref="SaveLegacy"/>'s format when <paramref name="path"/> ends in ".dat", else <see cref="SaveGguf"/>'s.</summary>
    public void Save(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (path.EndsWith(".dat", StringComparison.OrdinalIgnoreCase))
        {
            SaveLegacy(path);
        }
        else
        {
            SaveGguf(path);
        }
    }

    private static ImportanceMatrix LoadGguf(string path)
    {
        using GgufFile file = GgufFile.Open(path);
        var m = new ImportanceMatrix();
        if (file.Tensors.Count == 0)
        {
            throw new ModelFormatException(path, -1, "the GGUF file holds no tensors, so no importance data.");
        }
        GgufValue? datasets = file.Get("imatrix.datasets");
        if (datasets is { Type: GgufValueType.Array, ElementType: GgufValueType.String })
        {
            m.Datasets.AddRange(datasets.AsArray<string>());
        }
        if (!file.HasKey("imatrix.datasets") || !file.HasKey("imatrix.chunk_count") || !file.HasKey("imatrix.chunk_size"))
        {
            throw new ModelFormatException(path, -1, "imatrix.datasets, imatrix.chunk_count or imatrix.chunk_size is missing; llama-quantize refuses a GGUF imatrix without them (is this a model file rather than an imatrix?).");
        }
        m.ChunkCount = checked((int)file.GetInteger("imatrix.chunk_count"));
        m.ChunkSize = checked((int)file.GetInteger("imatrix.chunk_size"));

        var parts = new SortedDictionary<string, (GgufTensorInfo? Squares, GgufTensorInfo? Counts, GgufTensorInfo? Sums)>(StringComparer.Ordinal);
        foreach (GgufTensorInfo t in file.Tensors)
        {
            if (t.Name.EndsWith(".in_sum2", StringComparison.Ordinal))
            {
                string name = t.Name[..^".in_sum2".Length];
                parts[name] = parts.GetValueOrDefault(name) with { Squares = t };
            }
            else if (t.Name.EndsWith(".counts", StringComparison.Ordinal))
            {
                string name = t.Name[..^".counts".Length];
                parts[name] = parts.GetValueOrDefault(name) with { Counts = t };
            }
            else if (t.Name.EndsWith(".in_sum", StringComparison.Ordinal))
            {
                string name = t.Name[..^".in_sum".Length];
                parts[name] = parts.GetValueOrDefault(name) with { Sums = t };
            }
        }
        foreach ((string name, (GgufTensorInfo? squares, GgufTensorInfo? counts, GgufTensorInfo? sums)) in parts)
        {
            if (squares is null || counts is null || (sums is not null && sums.ElementCount != squares.ElementCount))
            {
                throw new ModelFormatException(path, -1, $"entry '{name}' has mismatched sums and counts (in_sum2 {(squares is null ? "missing" : squares.ShapeText)}, counts {(counts is null ? "missing" : counts.ShapeText)}).");
            }
            foreach (GgufTensorInfo? t in new[] { squares, counts, sums })
            {
                if (t is not null && t.Type != GgmlType.F32)
                {
                    throw new ModelFormatException(path, file.DataOffset + t.Offset, $"tensor '{t.Name}' is {t.Type}; imatrix sums and counts must be F32.");
                }
            }
            float[] sumSquares = Floats(file, squares);
            float[] countValues = Floats(file, counts);
            if (countValues.Length == 0 || sumSquares.Length % countValues.Length != 0)
            {
                throw new ModelFormatException(path, file.DataOffset + counts.Offset, $"entry '{name}' has {sumSquares.Length} values that do not split over {countValues.Length} counts.");
            }
            var countsLong = new long[countValues.Length];
            for (int i = 0; i < countValues.Length; i++)
            {
                if (!float.IsFinite(countValues[i]) || countValues[i] < 0)
                {
                    throw new ModelFormatException(path, file.DataOffset + counts.Offset, $"entry '{name}' count {i} is {countValues[i]}; counts are token numbers.");
                }
                countsLong[i] = (long)Math.Round((double)countValues[i], MidpointRounding.AwayFromZero);
            }
            m._entries[name] = new ImatrixEntry(sumSquares, countsLong, sums is null ? null : Floats(file, sums));
        }
        if (m._entries.Count == 0)
        {
            throw new ModelFormatException(path, -1, "no NAME.in_sum2 / NAME.counts tensor pairs; this is not an importance matrix.");
        }
        return m;
    }

    private static float[] Floats(GgufFile file, GgufTensorInfo t) => MemoryMarshal.Cast<byte, float>(file.GetTensorData(t).Span).ToArray();

    private static ImportanceMatrix LoadLegacy(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        var m = new ImportanceMatrix { IsLegacy = true };
        int offset = 0;
        int ReadInt(string what)
        {
            if (bytes.Length - offset < 4)
            {
                throw new ModelFormatException(path, offset, $"the file ends where {what} (4 bytes) should be; it is truncated or not an imatrix.");
            }
            int v = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(offset, 4));
            offset += 4;
            return v;
        }
        int entries = ReadInt("the entry count");
        if (entries < 1)
        {
            throw new ModelFormatException(path, 0, $"the entry count is {entries}; a legacy imatrix holds at least one entry (is this an imatrix file?).");
        }
        for (int i = 0; i < entries; i++)
        {
            int nameOffset = offset;
            int length = ReadInt($"the name length of entry {i + 1}");
            if (length < 0 || length > bytes.Length - offset)
            {
                throw new ModelFormatException(path, nameOffset, $"entry {i + 1} claims a name of {length} bytes, more than the file holds.");
            }
            string name = Encoding.UTF8.GetString(bytes, offset, length);
            int nul = name.IndexOf('\0', StringComparison.Ordinal);
            if (nul >= 0)
            {
                name = name[..nul];
            }
            offset += length;
            int ncall = ReadInt($"ncall of entry '{name}'");
            int valuesOffset = offset;
            int nval = ReadInt($"the value count of entry '{name}'");
            if (nval < 1 || (long)nval * 4 > bytes.Length - offset)
            {
                throw new ModelFormatException(path, valuesOffset, $"entry '{name}' claims {nval} values; the file holds {(bytes.Length - offset) / 4} more floats.");
            }
            float[] values = MemoryMarshal.Cast<byte, float>(bytes.AsSpan(offset, nval * 4)).ToArray();
            offset += nval * 4;
            if (m._entries.ContainsKey(name))
            {
                throw new ModelFormatException(path, nameOffset, $"entry '{name}' appears twice.");
            }
            m._entries[name] = new ImatrixEntry(values, [ncall]);
        }
        if (offset + 4 <= bytes.Length)
        {
            m.ChunkCount = ReadInt("the chunk count");
            if (offset + 4 <= bytes.Length)
            {
                int length = ReadInt("the dataset name length");
                if (length > 0 && length <= bytes.Length - offset)
                {
                    m.Datasets.Add(Encoding.UTF8.GetString(bytes, offset, length));
                }
            }
        }
        return m;
    }
}
