using System.IO.Compression;
using System.Text;
using ModelSmith.Models;
using ModelSmith.Tokenization;
using ModelSmith.Training;
using ModelSmith.Training.Data;

namespace ModelSmith.Tests.Training;

/// <summary>
/// Small training setups for the training-run tests: a slice of the bundled Brown corpus as a text file in a temp
/// folder, a vocabulary learned from it, and a Llama small enough that a step takes milliseconds.
/// </summary>
internal sealed class TrainingRunFixture : IDisposable
{
    public TrainingRunFixture(int lines = 400, int vocab = 320, int context = 16, string genre = "fiction-science")
    {
        Directory = Path.Combine(Path.GetTempPath(), $"smith-trainrun-{Environment.ProcessId}-{Guid.NewGuid():N}");
        System.IO.Directory.CreateDirectory(Directory);
        DataPath = Path.Combine(Directory, "corpus.txt");
        File.WriteAllText(DataPath, BrownSlice(genre, lines));
        DataOptions = new TrainingDataOptions { ContextLength = context, ValidationFraction = 0.1, Seed = 7, TextSplit = TextDocumentSplit.Lines };
        Spec = Pretraining.TrainTokenizer([DataPath], DataOptions, vocab);
        Tokenizer = Tokenizer.Create(Spec);
        Data = TrainingData.Load([DataPath], Tokenizer, DataOptions);
        Config = new ModelSize("test", 32, 2, 4, 2, 64, context, vocab).ToConfig(Spec.Tokens.Count);
    }

    public string Directory { get; }

    public string DataPath { get; }

    public TrainingDataOptions DataOptions { get; }

    public TokenizerSpec Spec { get; }

    public Tokenizer Tokenizer { get; }

    public TrainingData Data { get; }

    public ModelConfig Config { get; }

    public string PathOf(string name) => Path.Combine(Directory, name);

    /// <summary>A fresh model with the parameters of <paramref name="seed"/>.</summary>
    public TrainingModel Model(int batch = 2, ulong seed = 3)
    {
        var model = new TrainingModel(Config, batch, Config.ContextLength, threads: 2);
        model.Parameters.Initialize(seed);
        return model;
    }

    /// <summary>The first <paramref name="lines"/> lines of a bundled Brown genre (paragraphs are blank-line separated there).</summary>
    public static string BrownSlice(string genre, int lines)
    {
        using var file = File.OpenRead(Path.Combine(RepoPaths.Root, "data", "brown", genre + ".txt.gz"));
        using var gzip = new GZipStream(file, CompressionMode.Decompress);
        using var reader = new StreamReader(gzip, Encoding.UTF8);
        var text = new StringBuilder();
        for (int i = 0; i < lines && reader.ReadLine() is { } line; i++)
            text.Append(line).Append('\n');
        return text.ToString();
    }

    public void Dispose()
    {
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
