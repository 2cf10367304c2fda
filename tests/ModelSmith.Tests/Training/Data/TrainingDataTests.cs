using ModelSmith.Training.Data;

namespace ModelSmith.Tests.Training.Data;

public sealed class TrainingDataTests
{
    [Fact]
    public void Mixed_folder_loads_splits_and_packs_with_completion_masks()
    {
        using var dir = new TempDirectory();
        DataFiles.Write(dir, "d/text.txt", string.Join("\n\n", Enumerable.Range(0, 30).Select(i => $"The quick brown fox {i} jumps over the lazy dog.")));
        DataFiles.Write(dir, "d/chat.jsonl", string.Join("\n", Enumerable.Range(0, 30).Select(i =>
            $"{{\"messages\": [{{\"role\": \"user\", \"content\": \"What is {i} plus two?\"}}, {{\"role\": \"assistant\", \"content\": \"It is {i + 2}.\"}}]}}")));
        DataFiles.Write(dir, "d/alpaca.jsonl.gz", string.Join("\n", Enumerable.Range(0, 30).Select(i =>
            $"{{\"instruction\": \"Count to {i}.\", \"output\": \"{string.Join(" ", Enumerable.Range(1, i % 5 + 1))}\"}}")));
        var options = new TrainingDataOptions { ContextLength = 32, ValidationFraction = 0.1, Seed = 3 };
        TrainingData data = TrainingData.Load([dir.File("d")], DataFiles.Tokenizer, options);

        Assert.Equal(3, data.Files.Count);
        Assert.Equal(90, data.Stats.Documents);
        Assert.Equal(DataFormat.Alpaca, data.Stats.FormatOfFile["d/alpaca.jsonl.gz"]);
        Assert.Equal(DataFormat.Chat, data.Stats.FormatOfFile["d/chat.jsonl"]);
        Assert.Equal(DataFormat.Text, data.Stats.FormatOfFile["d/text.txt"]);
        Assert.Equal(81, data.Train.DocumentCount);
        Assert.Equal(9, data.Validation.DocumentCount);
        Assert.Equal(DataFile.Fingerprint(data.Files), data.Fingerprint);
        Assert.True(data.Train.TargetCount < data.Train.TokenCount);

        TrainingData again = TrainingData.Load([dir.File("d")], DataFiles.Tokenizer, options);
        Assert.Equal(data.Train.RowCount, again.Train.RowCount);
        for (int r = 0; r < data.Train.RowCount; r++)
        {
            Assert.True(data.Train.RowTokens(r).SequenceEqual(again.Train.RowTokens(r)));
            Assert.True(data.Train.RowMask(r).SequenceEqual(again.Train.RowMask(r)));
        }

        DataLoader loader = data.CreateTrainLoader(batchSize: 4);
        int[] tokens = new int[4 * 33];
        bool[] mask = new bool[4 * 33];
        loader.NextBatch(tokens, mask);
        Assert.Equal(new DataPosition(0, 4, loader.Position.EpochState), loader.Position);
    }

    [Fact]
    public void Bad_records_stop_loading_unless_skipped()
    {
        using var dir = new TempDirectory();
        string path = DataFiles.Write(dir, "t.jsonl", "{\"text\": \"one two\"}\n{\"text\": \"three\"\n{\"text\": \"four five\"}\n");
        DataFormatException e = Assert.Throws<DataFormatException>(() => TrainingData.Load([path], DataFiles.Tokenizer, new TrainingDataOptions()));
        Assert.Equal(2, e.Line);
        TrainingData data = TrainingData.Load([path], DataFiles.Tokenizer, new TrainingDataOptions { SkipBadRecords = true, ContextLength = 4 });
        Assert.Equal(1, data.Stats.Skipped);
        Assert.Equal(2, data.Stats.Documents);
    }

    [Fact]
    public void Data_with_no_document_is_refused()
    {
        using var dir = new TempDirectory();
        string path = DataFiles.Write(dir, "t.jsonl", "not json\n");
        var e = Assert.Throws<DataFormatException>(() => TrainingData.Load([path], DataFiles.Tokenizer, new TrainingDataOptions { SkipBadRecords = true }));
        Assert.Contains("no document (1 malformed records skipped)", e.Message, StringComparison.Ordinal);
    }
}
