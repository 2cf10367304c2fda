using System.IO.Compression;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using ModelSmith.Formats;

namespace ModelSmith.Cli.Demo;

/// <summary>
/// The demo's data. General text: the bundled Brown corpus, every genre but <c>learned</c> (held back so the base
/// model can also be fine-tuned on it by hand, see the README). Domain text: mail, the SpamAssassin ham messages of
/// <c>email/easy-ham-1</c> (plain bodies of mailing-list mail: code, URLs, quoting, signatures), a domain far enough
/// from edited prose that fine-tuning visibly pays. Each is split by document into training text and held-out test
/// text: every <see cref="HoldOutEvery"/>-th document is held out, so no model ever trains on it.
/// </summary>
internal sealed record DemoCorpus(string GeneralTrain, string GeneralTest, string DomainTrain, string DomainTest, long GeneralTrainChars, long DomainTrainChars)
{
    /// <summary>The Brown genre left out of the general text.</summary>
    public const string HeldBackGenre = "learned";

    /// <summary>The mail folder that plays the domain.</summary>
    public const string DomainFile = "easy-ham-1.jsonl.gz";

    /// <summary>One document in this many is held out for testing.</summary>
    public const int HoldOutEvery = 20;

    /// <summary>
    /// The folder holding <c>brown/*.txt.gz</c> and <c>email/</c>: <paramref name="requested"/> when given, else the repository's
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
    /// Writes the four data files into <paramref name="directory"/>: general training text (documents separated by a
    /// blank line), domain training mail (JSONL, one message a line, so blank lines inside a message stay inside it),
    /// and held-out text of both, each cut to at most <paramref name="testChars"/> characters (whole documents) so
    /// that evaluation takes seconds.
    /// </summary>
    public static DemoCorpus Prepare(string dataDirectory, string directory, int testChars)
    {
        string brown = Path.Combine(dataDirectory, "brown");
        string[] genres = Directory.GetFiles(brown, "*.txt.gz");
        Array.Sort(genres, StringComparer.Ordinal);
        string heldBack = Path.Combine(brown, HeldBackGenre + ".txt.gz");
        string domainFile = Path.Combine(dataDirectory, "email", DomainFile);
        if (!File.Exists(domainFile))
            throw new FileNotFoundException($"'{domainFile}' is missing; the demo needs the bundled mail corpus (data/email/*.jsonl.gz).", domainFile);
        Directory.CreateDirectory(directory);
        var generalTrain = new StringBuilder();
        var generalTest = new List<string>();
        foreach (string genre in genres)
        {
            if (genre == heldBack) continue;
            Split(ReadDocuments(genre), generalTrain, generalTest);
        }
        var domainTrain = new StringBuilder();
        var domainTest = new List<string>();
        List<string> mail = ReadMail(domainFile);
        for (int i = 0; i < mail.Count; i++)
        {
            if (i % HoldOutEvery == HoldOutEvery / 2) domainTest.Add(mail[i]);
            else domainTrain.Append(JsonSerializer.Serialize(new MailRecord(mail[i]), MailJson.Default.MailRecord)).Append('\n');
        }

        var corpus = new DemoCorpus(
            Path.Combine(directory, "general-train.txt"), Path.Combine(directory, "general-test.txt"),
            Path.Combine(directory, "mail-train.jsonl"), Path.Combine(directory, "mail-test.txt"),
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

    /// <summary>The "text" of every line of a mail JSONL file.</summary>
    private static List<string> ReadMail(string path)
    {
        using var reader = new StreamReader(new GZipStream(File.OpenRead(path), CompressionMode.Decompress), Encoding.UTF8);
        var texts = new List<string>();
        string? line;
        int number = 0;
        while ((line = reader.ReadLine()) != null)
        {
            number++;
            if (line.Length == 0) continue;
            MailRecord? record;
            try
            {
                record = JsonSerializer.Deserialize(line, MailJson.Default.MailRecord);
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{path}:{number}: not a JSON object ({e.Message}).", e);
            }
            if (record?.Text is { Length: > 0 } text) texts.Add(text.EndsWith('\n') ? text : text + "\n");
        }
        return texts;
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
        byte[] bytes = new UTF8Encoding(false).GetBytes(text);
        AtomicFile.Write(path, stream => stream.Write(bytes));
    }
}

/// <summary>One mail message as the bundled JSONL and the fine-tuning data hold it.</summary>
internal sealed record MailRecord([property: JsonPropertyName("text")] string Text);

[JsonSerializable(typeof(MailRecord))]
internal sealed partial class MailJson : JsonSerializerContext;
