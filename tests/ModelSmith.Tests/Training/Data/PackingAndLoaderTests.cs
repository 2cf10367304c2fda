using System.Text.Json;
using ModelSmith.Training.Data;

namespace ModelSmith.Tests.Training.Data;

public sealed class PackingAndLoaderTests
{
    /// <summary>Example i: tokens 100*i + 0..length-1, mask true except the first token.</summary>
    private static TokenizedExample Example(int i, int length)
    {
        int[] tokens = [.. Enumerable.Range(100 * i, length)];
        bool[] mask = [.. Enumerable.Range(0, length).Select(k => k > 0)];
        return new TokenizedExample(tokens, mask, "f", i);
    }

    [Fact]
    public void Rows_hold_t_plus_one_tokens_overlapping_by_one_and_the_last_is_padded()
    {
        TokenizedExample[] examples = [Example(1, 5), Example(2, 4)];
        PackedDataset packed = PackedDataset.Pack(examples, contextLength: 3, padToken: 7);
        // stream: 100 101 102 103 104 200 201 202 203 (9 tokens) -> ceil(8 / 3) = 3 rows
        Assert.Equal(3, packed.RowCount);
        Assert.Equal(9, packed.TokenCount);
        Assert.Equal([100, 101, 102, 103], packed.RowTokens(0).ToArray());
        Assert.Equal([103, 104, 200, 201], packed.RowTokens(1).ToArray());
        Assert.Equal([201, 202, 203, 7], packed.RowTokens(2).ToArray());
        Assert.Equal([true, true, false, true], packed.RowMask(1).ToArray());
        Assert.Equal([true, true, true, false], packed.RowMask(2).ToArray());
        Assert.Equal(7, packed.TargetCount); // 4 + 3 targets; the stream's first token is never one
    }

    [Fact]
    public void Every_target_appears_in_exactly_one_row_position_that_is_scored()
    {
        TokenizedExample[] examples = [.. Enumerable.Range(1, 9).Select(i => Example(i, 3 + i))];
        PackedDataset packed = PackedDataset.Pack(examples, 8, 0);
        var scored = new List<int>();
        for (int r = 0; r < packed.RowCount; r++)
            for (int t = 1; t <= 8; t++)
                if (packed.RowMask(r)[t])
                    scored.Add(packed.RowTokens(r)[t]);
        int[] expected = [.. examples.SelectMany(e => e.Tokens.Where((_, k) => e.Mask[k]))];
        Assert.Equal(expected, scored);
        Assert.Equal(expected.Length, packed.TargetCount);
    }

    [Fact]
    public void A_shuffle_seed_reorders_whole_documents_reproducibly()
    {
        TokenizedExample[] examples = [.. Enumerable.Range(1, 20).Select(i => Example(i, 4))];
        PackedDataset a = PackedDataset.Pack(examples, 4, 0, shuffleSeed: 5);
        PackedDataset b = PackedDataset.Pack(examples, 4, 0, shuffleSeed: 5);
        PackedDataset c = PackedDataset.Pack(examples, 4, 0, shuffleSeed: 6);
        int[] Firsts(PackedDataset p) => [.. Enumerable.Range(0, p.RowCount).Select(r => p.RowTokens(r)[1])];
        Assert.Equal(Firsts(a), Firsts(b));
        Assert.NotEqual(Firsts(a), Firsts(c));
        Assert.Equal(Enumerable.Range(1, 20).Select(i => 100 * i + 1).Order(), Firsts(a).Order());
    }

    [Fact]
    public void Split_is_by_document_deterministic_and_does_not_depend_on_other_documents()
    {
        List<TrainingDocument> docs = [.. Enumerable.Range(0, 200).Select(i => new TrainingDocument(i < 100 ? "a.txt" : "b.txt", i + 1, i % 100, DataFormat.Text) { Text = $"d{i}" })];
        (List<TrainingDocument> train, List<TrainingDocument> validation) = DatasetSplit.Split(docs, 0.1, 42);
        Assert.Equal(20, validation.Count);
        Assert.Equal(180, train.Count);
        Assert.Empty(train.Intersect(validation));
        Assert.Equal(validation, DatasetSplit.Split(docs, 0.1, 42).Validation);
        Assert.NotEqual(validation, DatasetSplit.Split(docs, 0.1, 43).Validation);
        // original order kept
        Assert.Equal(validation.OrderBy(d => d.Line), validation);
        // a document's key is its own: reversing the list keeps the same validation set
        List<TrainingDocument> reversed = [.. docs.AsEnumerable().Reverse()];
        Assert.Equal(validation.Select(d => d.Text).Order(), DatasetSplit.Split(reversed, 0.1, 42).Validation.Select(d => d.Text).Order());
    }

    [Fact]
    public void Split_keeps_at_least_one_document_on_each_side()
    {
        List<TrainingDocument> two = [new("a", 1, 0, DataFormat.Text) { Text = "x" }, new("a", 2, 1, DataFormat.Text) { Text = "y" }];
        Assert.Single(DatasetSplit.Split(two, 0.01, 1).Validation);
        Assert.Single(DatasetSplit.Split(two, 0.99, 1).Train);
        Assert.Empty(DatasetSplit.Split(two, 0, 1).Validation);
        Assert.Throws<ArgumentOutOfRangeException>(() => DatasetSplit.Split(two, 1, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => DatasetSplit.Split(two, double.NaN, 1));
    }

    private static PackedDataset Rows(int count) =>
        PackedDataset.Pack([.. Enumerable.Range(0, count).Select(i => new TokenizedExample([i, i], [true, i % 2 == 0], "f", i))], contextLength: 2, padToken: 0);

    [Fact]
    public void An_epoch_gives_every_row_once_in_a_seeded_order_that_changes_per_epoch()
    {
        PackedDataset data = Rows(20); // 40 tokens -> 20 rows of 3 (ceil(39/2))
        Assert.Equal(20, data.RowCount);
        var loader = new DataLoader(data, batchSize: 4, seed: 9);
        var epochs = new List<int[]>();
        for (int e = 0; e < 2; e++)
        {
            var firsts = new List<int>();
            for (int b = 0; b < 5; b++)
            {
                int[] tokens = new int[4 * 3];
                bool[] mask = new bool[4 * 3];
                loader.NextBatch(tokens, mask);
                for (int r = 0; r < 4; r++)
                    firsts.Add(tokens[r * 3] * 1000 + tokens[r * 3 + 1]);
            }
            epochs.Add([.. firsts]);
        }
        Assert.Equal(20, epochs[0].Distinct().Count());
        Assert.Equal(epochs[0].Order(), epochs[1].Order());
        Assert.NotEqual(epochs[0], epochs[1]);
        Assert.Equal(new DataPosition(1, 20, loader.Position.EpochState), loader.Position);
    }

    [Fact]
    public void Without_shuffling_rows_come_in_order_across_epochs()
    {
        PackedDataset data = Rows(3); // 6 tokens -> 3 rows
        var loader = new DataLoader(data, batchSize: 2, seed: 1, shuffle: false);
        var firsts = new List<int>();
        for (int b = 0; b < 3; b++)
        {
            int[] tokens = new int[6];
            loader.NextBatch(tokens, new bool[6]);
            firsts.Add(tokens[0]);
            firsts.Add(tokens[3]);
        }
        Assert.Equal([data.RowTokens(0)[0], data.RowTokens(1)[0], data.RowTokens(2)[0], data.RowTokens(0)[0], data.RowTokens(1)[0], data.RowTokens(2)[0]], firsts);
    }

    [Fact]
    public void A_resumed_loader_gives_exactly_the_batches_of_an_uninterrupted_one()
    {
        PackedDataset data = Rows(37);
        const int B = 5, W = 3;
        var uninterrupted = new DataLoader(data, B, seed: 77);
        var expected = new List<int[]>();
        for (int i = 0; i < 40; i++)
        {
            int[] tokens = new int[B * W];
            bool[] mask = new bool[B * W];
            uninterrupted.NextBatch(tokens, mask);
            expected.Add([.. tokens, .. mask.Select(m => m ? 1 : 0)]);
        }

        // 37 rows, 5 a batch: stop 8 is inside epoch 1, stop 37 is exactly at the end of epoch 4 (185 rows)
        foreach (int stop in (int[])[0, 1, 7, 8, 23, 37, 39])
        {
            var first = new DataLoader(data, B, seed: 77);
            for (int i = 0; i < stop; i++)
                first.NextBatch(new int[B * W], new bool[B * W]);
            // the position goes through a checkpoint as JSON
            string saved = JsonSerializer.Serialize(first.Position);
            DataPosition restored = JsonSerializer.Deserialize<DataPosition>(saved);
            Assert.Equal(first.Position, restored);
            var resumed = new DataLoader(data, B, seed: 77, resumeFrom: restored);
            for (int i = stop; i < 40; i++)
            {
                int[] tokens = new int[B * W];
                bool[] mask = new bool[B * W];
                resumed.NextBatch(tokens, mask);
                int[] actual = [.. tokens, .. mask.Select(m => m ? 1 : 0)];
                Assert.Equal(expected[i], actual);
            }
        }
    }

    [Fact]
    public void A_position_that_does_not_fit_the_data_is_refused()
    {
        PackedDataset data = Rows(4);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new DataLoader(data, 2, 1, resumeFrom: new DataPosition(0, 99, 1)));
        Assert.Contains("other data", e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => new DataLoader(PackedDataset.Pack([], 4, 0), 2, 1));
        Assert.Throws<ArgumentException>(() => new DataLoader(data, 2, 1).NextBatch(new int[5], new bool[6]));
    }
}
