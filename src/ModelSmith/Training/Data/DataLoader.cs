namespace ModelSmith.Training.Data;

/// <summary>
/// Where a <see cref="DataLoader"/> is: the next batch's epoch, its index into that epoch's row order, and the
/// random state that epoch's order was drawn from. Storing it in a checkpoint and passing it back to a new loader
/// over the same data and seed gives exactly the batches the old loader would have given next. Plain data, so it
/// serialises with System.Text.Json as it is.
/// </summary>
/// <param name="Epoch">Passes over the rows completed before the next batch.</param>
/// <param name="Index">Rows of the current epoch already given out.</param>
/// <param name="EpochState">SplitMix64 state from which the current epoch's row order was shuffled.</param>
public readonly record struct DataPosition(int Epoch, long Index, ulong EpochState);

/// <summary>
/// Batches of packed rows for training: epoch after epoch, each a fresh seeded permutation of the rows (or the rows
/// in order without shuffling, for evaluation). A batch may run across an epoch boundary; rows are never dropped.
/// </summary>
public sealed class DataLoader
{
    private readonly PackedDataset _data;
    private readonly bool _shuffle;
    private readonly int[] _order;
    private int _epoch;
    private long _index;
    private ulong _epochState;
    private ulong _nextEpochState;

    /// <param name="data">Packed rows (at least one).</param>
    /// <param name="batchSize">Rows per batch (B).</param>
    /// <param name="seed">Seed of the row order.</param>
    /// <param name="shuffle">Shuffle the rows each epoch (true) or give them in order.</param>
    /// <param name="resumeFrom">A <see cref="Position"/> saved from a loader over the same data, seed and shuffle setting.</param>
    public DataLoader(PackedDataset data, int batchSize, ulong seed, bool shuffle = true, DataPosition? resumeFrom = null)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        if (data.RowCount == 0)
            throw new ArgumentException($"the data packs into no row of {data.ContextLength + 1} tokens; add data or shorten the context.", nameof(data));
        _data = data;
        _shuffle = shuffle;
        BatchSize = batchSize;
        _order = new int[data.RowCount];
        DataPosition start = resumeFrom ?? new DataPosition(0, 0, DataRng.StateFromSeed(seed));
        if (start.Epoch < 0 || start.Index < 0 || start.Index > data.RowCount)
            throw new ArgumentOutOfRangeException(nameof(resumeFrom), start,
                $"position (epoch {start.Epoch}, index {start.Index}) does not fit data of {data.RowCount} rows; was it saved for other data?");
        _epoch = start.Epoch;
        _index = start.Index;
        BeginEpoch(start.EpochState);
    }

    /// <summary>Rows per batch (B).</summary>
    public int BatchSize { get; }

    /// <summary>Tokens per row read by the model (T); batches hold T + 1 per row.</summary>
    public int ContextLength => _data.ContextLength;

    /// <summary>The position of the next batch.</summary>
    public DataPosition Position => new(_epoch, _index, _epochState);

    /// <summary>Fills the next batch.</summary>
    /// <param name="tokens">(B, T + 1) token ids, row-major.</param>
    /// <param name="mask">(B, T + 1) loss mask: entry (b, t + 1) says whether predicting token t + 1 of row b counts.</param>
    public void NextBatch(Span<int> tokens, Span<bool> mask)
    {
        int width = ContextLength + 1;
        if (tokens.Length != BatchSize * width || mask.Length != BatchSize * width)
            throw new ArgumentException($"a batch is {BatchSize} x {width} = {BatchSize * width} entries; got {tokens.Length} tokens and {mask.Length} mask entries.");
        for (int b = 0; b < BatchSize; b++)
        {
            if (_index == _order.Length)
            {
                _epoch++;
                _index = 0;
                BeginEpoch(_nextEpochState);
            }
            int row = _order[_index++];
            _data.RowTokens(row).CopyTo(tokens.Slice(b * width, width));
            _data.RowMask(row).CopyTo(mask.Slice(b * width, width));
        }
    }

    private void BeginEpoch(ulong state)
    {
        _epochState = state;
        for (int i = 0; i < _order.Length; i++)
            _order[i] = i;
        var rng = new DataRng(state);
        if (_shuffle)
            rng.Shuffle(_order.AsSpan());
        // Each epoch's state follows from the previous one's, so one state per position is enough to resume.
        rng.Next();
        _nextEpochState = rng.State;
    }
}
