using System.IO.Compression;
using System.Text;

namespace ModelSmith.Cli.Demo;

/// <summary>
/// The demo's data: the bundled Brown corpus split by genre into general text (every genre but the domain) and domain
/// text (<c>learned</c>: scientific and technical prose), each split by document into training text and held-out test
/// text. Every <see cref="HoldOutEvery"/>-th document of a genre is held out, so the test text spans every genre and
/// no model ever trains on it.
/// </summary>
internal sealed record DemoCorpus(string GeneralTrain, string GeneralTest, string DomainTrain, string DomainTest, long GeneralTrainChars, long DomainTrainChars)
{
    /// <summary>The genre that plays the domain.</summary>
    public const string DomainGenre = "learned";

    /// <summary>One document in this many is held out for testing.</summary>
    public const int HoldOutEvery = 20;

    /// <summary>
    /// The folder holding <c>brown/*.txt.gz</c>: <paramref name="requested"/> when given, else the repository's
    /// <c>data/</c> found upwards from the current directory or from the program's folder; null when none is found.
    /// </summary>
    public static string? FindDataDirectory(string? requested)
    {
        if (requested != null) return Directory.Exists(Path.Combine(requested, "brown")) ? Path.GetFullPath(requested) : null;
        foreach (string start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (DirectoryInfo? d = new(start); d != null; d = d.Parent)
            {
                string candidate = Path.Combine(d.FullName, "data");
                if (Directory.Exists(Path.Combine(candidate, "brown"))) return candidate;
            }
        }
        return null;
    }

    /// <summary>
    /// Writes the four text files into <paramref name="directory"/>: training text of every genre but the domain, and
    /// of the domain; held-out text of both, each cut to at most <paramref name="testChars"/> characters (whole
    /// documents) so that evaluation takes seconds.
    /// </summary>
    public static DemoCorpus Prepare(string dataDirectory, string directory, int testChars)
    {
        string brown = Path.Combine(dataDirectory, "brown");
        string[] genres = Directory.GetFiles(brown, "*.txt.gz");
        Array.Sort(genres, StringComparer.Ordinal);
        string domainFile = Path.Combine(brown, DomainGenre + ".txt.gz");
        if (!File.Exists(domainFile))
            throw new FileNotFoundException($"'{domainFile}' is missing; the demo needs the bundled Brown corpus (data/brown/*.txt.gz).", domainFile);
        Directory.CreateDirectory(directory);
        var generalTrain = new StringBuilder();
        var generalTest = new List<string>();
        foreach (string genre in genres)
        {
            if (genre == domainFile) continue;
            Split(ReadDocuments(genre), generalTrain, generalTest);
        }
        var domainTrain = new StringBuilder();
        var domainTest = new List<string>();
        Split(ReadDocuments(domainFile), domainTrain, domainTest);

        var corpus = new DemoCorpus(
            Path.Combine(directory, "general-train.txt"), Path.Combine(directory, "general-test.txt"),
            Path.Combine(directory, "learned-train.txt"), Path.Combine(directory, "learned-test.txt"),
            generalTrain.Length, domainTrain.Length);
        WriteAtomically(corpus.GeneralTrain, generalTrain.ToString());
        WriteAtomically(corpus.DomainTrain, domainTrain.ToString());
        WriteAtomically(corpus.GeneralTest, Interleave(generalTest, testChars));
        WriteAtomically(corpus.DomainTest, Interleave(domainTest, testChars));
        return corpus;
    }

    /// <summary>Documents of a Brown genre file: paragraphs one per line, documents separated by a blank line.</summary>
    private static List<string> ReadDocuments(string path)
    {
        using var reader = new StreamReader(new GZipStream(File.OpenRead(path), CompressionMode.Decompress), Encoding.UTF8);
        var documents = new List<string>();
        var current = new StringBuilder();
        string? line;
        while ((line = reader.ReadLine()) != null)
        {
            if (line.Length == 0)
            {
                if (current.Length > 0) documents.Add(current.ToString());
                current.Clear();
                continue;
            }
            current.Append(line).Append('\n');
        }
        if (current.Length > 0) documents.Add(current.ToString());
        return documents;
    }

    private static void Split(List<string> documents, StringBuilder train, List<string> test)
    {
        for (int i = 0; i < documents.Count; i++)
        {
            if (i % HoldOutEvery == HoldOutEvery / 2) test.Add(documents[i]);
            else train.Append(documents[i]).Append('\n');
        }
    }

    /// <summary>
    /// Held-out documents up to <paramref name="maxChars"/>, taken round-robin across the list so a cut sample
    /// still mixes genres (the list holds each genre's documents in turn).
    /// </summary>
    private static string Interleave(List<string> documents, int maxChars)
    {
        var text = new StringBuilder();
        int stride = Math.Max(1, documents.Count / 16);
        var used = new bool[documents.Count];
        for (int start = 0; start < stride; start++)
        {
            for (int i = start; i < documents.Count; i += stride)
            {
                if (used[i]) continue;
                if (text.Length + documents[i].Length > maxChars && text.Length > 0) return text.ToString();
                used[i] = true;
                text.Append(documents[i]).Append('\n');
            }
        }
        return text.ToString();
    }

    private static void WriteAtomically(string path, string text)
    {
        string temp = path + ".tmp";
        File.WriteAllText(temp, text, new UTF8Encoding(false));
        File.Move(temp, path, overwrite: true);
    }
}
