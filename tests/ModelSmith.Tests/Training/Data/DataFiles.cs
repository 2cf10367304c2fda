using System.IO.Compression;
using System.Text;
using ModelSmith.Tokenization;
using ModelSmith.Training.Data;

namespace ModelSmith.Tests.Training.Data;

/// <summary>Temp data files and a small trained tokenizer for the data tests.</summary>
internal static class DataFiles
{
    private static readonly Lazy<Tokenizer> s_tokenizer = new(() => Tokenizer.Create(BpeTrainer.Train(
        [
            "The quick brown fox jumps over the lazy dog.", "What is two plus two? It is four.",
            "user assistant system instruction input response", "Below is an instruction that describes a task.",
        ],
        new BpeTrainerOptions { VocabSize = 400, MinFrequency = 1, SpecialTokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] })));

    /// <summary>A byte-level BPE vocabulary with &lt;|endoftext|&gt; (EOS), &lt;|im_start|&gt; and &lt;|im_end|&gt;.</summary>
    public static Tokenizer Tokenizer => s_tokenizer.Value;

    public static string Write(TempDirectory dir, string name, string content)
    {
        string path = dir.File(name);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        if (name.EndsWith(".gz", StringComparison.Ordinal))
        {
            using var gzip = new GZipStream(File.Create(path), CompressionLevel.Fastest);
            gzip.Write(Encoding.UTF8.GetBytes(content));
        }
        else
        {
            File.WriteAllText(path, content, new UTF8Encoding(false));
        }
        return path;
    }

    public static List<TrainingDocument> ReadAll(string path, TrainingDataOptions? options = null, DataReadStats? stats = null) =>
        [.. DataReader.Read(DataFile.Find([path]), options ?? new TrainingDataOptions(), stats ?? new DataReadStats())];

    public static DataFormatException ReadError(string path, TrainingDataOptions? options = null) =>
        Assert.Throws<DataFormatException>(() => ReadAll(path, options));
}
