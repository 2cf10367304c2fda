using ModelSmith.Tokenization;

namespace ModelSmith.Training.Data;

/// <summary>
/// Training data ready for a training loop: files found and fingerprinted, documents read and split into training
/// and validation sets by document, rendered and tokenized with loss masks, and packed into rows (training rows in
/// a seeded document order, validation rows in file order).
/// </summary>
public sealed class TrainingData
{
    private TrainingData(TrainingDataOptions options, IReadOnlyList<DataFile> files, string fingerprint, DataReadStats stats,
        PackedDataset train, PackedDataset validation)
    {
        Options = options;
        Files = files;
        Fingerprint = fingerprint;
        Stats = stats;
        Train = train;
        Validation = validation;
    }

    public TrainingDataOptions Options { get; }

    /// <summary>The files read, sorted by name.</summary>
    public IReadOnlyList<DataFile> Files { get; }

    /// <summary><see cref="DataFile.Fingerprint"/> of <see cref="Files"/>.</summary>
    public string Fingerprint { get; }

    /// <summary>Files, documents and skipped records.</summary>
    public DataReadStats Stats { get; }

    public PackedDataset Train { get; }

    public PackedDataset Validation { get; }

    /// <summary>Reads, splits, tokenizes (on all cores, with results in document order) and packs the data at <paramref name="paths"/>.</summary>
    public static TrainingData Load(IEnumerable<string> paths, Tokenizer tokenizer, TrainingDataOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(paths);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.ContextLength, 1, nameof(options));
        if (tokenizer.Eos < 0)
            throw new ArgumentException("the tokenizer has no EOS token, which training appends to every document; use a vocabulary with an end-of-text token.", nameof(tokenizer));
        IReadOnlyList<DataFile> files = DataFile.Find(paths);
        string fingerprint = DataFile.Fingerprint(files);
        var stats = new DataReadStats();
        var documents = new List<TrainingDocument>();
        foreach (TrainingDocument document in DataReader.Read(files, options, stats))
        {
            documents.Add(document);
            if ((documents.Count & 1023) == 0)
                cancellationToken.ThrowIfCancellationRequested();
        }
        if (documents.Count == 0)
            throw new DataFormatException(files[0].Name, 0, $"the {files.Count} file(s) hold no document{(stats.Skipped > 0 ? $" ({stats.Skipped} malformed records skipped)" : "")}.");

        (List<TrainingDocument> train, List<TrainingDocument> validation) = DatasetSplit.Split(documents, options.ValidationFraction, options.Seed);
        int pad = tokenizer.Padding >= 0 ? tokenizer.Padding : tokenizer.Eos;
        PackedDataset trainRows = PackedDataset.Pack(Tokenize(train, tokenizer, options, cancellationToken), options.ContextLength, Math.Max(pad, 0), options.Seed);
        PackedDataset validationRows = PackedDataset.Pack(Tokenize(validation, tokenizer, options, cancellationToken), options.ContextLength, Math.Max(pad, 0));
        return new TrainingData(options, files, fingerprint, stats, trainRows, validationRows);
    }

    /// <summary>A shuffling loader over the training rows, seeded with <see cref="TrainingDataOptions.Seed"/>.</summary>
    public DataLoader CreateTrainLoader(int batchSize, DataPosition? resumeFrom = null) =>
        new(Train, batchSize, Options.Seed, shuffle: true, resumeFrom);

    private static TokenizedExample[] Tokenize(List<TrainingDocument> documents, Tokenizer tokenizer, TrainingDataOptions options, CancellationToken cancellationToken)
    {
        var examples = new TokenizedExample[documents.Count];
        var parallel = new ParallelOptions { CancellationToken = cancellationToken, MaxDegreeOfParallelism = Environment.ProcessorCount };
        Parallel.For(0, documents.Count, parallel, i => examples[i] = ExampleTokenizer.Tokenize(documents[i], tokenizer, options));
        return examples;
    }
}
