using System.IO.Compression;
using ModelSmith.Training.Data;

namespace ModelSmith.Tests.Training.Data;

public sealed class DataReaderTests
{
    [Fact]
    public void Text_files_split_into_documents_at_blank_lines()
    {
        using var dir = new TempDirectory();
        string path = DataFiles.Write(dir, "a.txt", "\nfirst para\nsecond para\n\n \n\nnext doc\r\nline two\n\nlast");
        List<TrainingDocument> docs = DataFiles.ReadAll(path);
        Assert.Equal(["first para\nsecond para", "next doc\nline two", "last"], docs.Select(d => d.Text));
        Assert.Equal([2L, 7L, 10L], docs.Select(d => d.Line));
        Assert.Equal([0, 1, 2], docs.Select(d => d.Index));
        Assert.All(docs, d => Assert.Equal(DataFormat.Text, d.Format));
        Assert.All(docs, d => Assert.Equal("a.txt", d.Source));
    }

    [Fact]
    public void Text_files_can_be_one_document_per_line_or_per_file()
    {
        using var dir = new TempDirectory();
        string path = DataFiles.Write(dir, "a.txt", "one\n\ntwo\nthree\n");
        Assert.Equal(["one", "two", "three"], DataFiles.ReadAll(path, new TrainingDataOptions { TextSplit = TextDocumentSplit.Lines }).Select(d => d.Text));
        Assert.Equal([1L, 3L, 4L], DataFiles.ReadAll(path, new TrainingDataOptions { TextSplit = TextDocumentSplit.Lines }).Select(d => d.Line));
        Assert.Equal(["one\n\ntwo\nthree\n"], DataFiles.ReadAll(path, new TrainingDataOptions { TextSplit = TextDocumentSplit.File }).Select(d => d.Text));
    }

    [Fact]
    public void Gzipped_text_reads_like_plain_text()
    {
        using var dir = new TempDirectory();
        string path = DataFiles.Write(dir, "a.txt.gz", "héllo wörld\n\nsecond");
        Assert.Equal(["héllo wörld", "second"], DataFiles.ReadAll(path).Select(d => d.Text));
    }

    [Fact]
    public void Bundled_brown_genre_reads_as_documents_of_paragraphs()
    {
        string path = Path.Combine(RepoPaths.Root, "data", "brown", "humor.txt.gz");
        List<TrainingDocument> docs = DataFiles.ReadAll(path);
        Assert.InRange(docs.Count, 5, 100);
        Assert.All(docs, d => Assert.False(string.IsNullOrWhiteSpace(d.Text)));
        Assert.Contains(docs, d => d.Text!.Contains('\n', StringComparison.Ordinal));
    }

    [Fact]
    public void Jsonl_text_records_are_detected_and_read()
    {
        using var dir = new TempDirectory();
        string path = DataFiles.Write(dir, "t.jsonl", "{\"text\": \"alpha\", \"label\": 1}\n\n{\"text\": \"beta\\ngamma\"}\n");
        List<TrainingDocument> docs = DataFiles.ReadAll(path);
        Assert.Equal(["alpha", "beta\ngamma"], docs.Select(d => d.Text));
        Assert.Equal([1L, 3L], docs.Select(d => d.Line));
        Assert.All(docs, d => Assert.Equal(DataFormat.JsonText, d.Format));
    }

    [Fact]
    public void Bundled_mail_jsonl_reads_as_text_records()
    {
        var stats = new DataReadStats();
        List<TrainingDocument> docs = DataFiles.ReadAll(Path.Combine(RepoPaths.Root, "data", "email", "hard-ham-1.jsonl.gz"), stats: stats);
        Assert.Equal(126, docs.Count);
        Assert.Equal(DataFormat.JsonText, stats.FormatOfFile["hard-ham-1.jsonl.gz"]);
    }

    [Fact]
    public void Alpaca_records_are_detected_with_optional_input()
    {
        using var dir = new TempDirectory();
        string path = DataFiles.Write(dir, "a.jsonl",
            "{\"instruction\": \"Add.\", \"input\": \"2 2\", \"output\": \"4\"}\n" +
            "{\"instruction\": \"Say hi.\", \"output\": \"hi\"}\n" +
            "{\"instruction\": \"Say no.\", \"input\": null, \"output\": \"no\"}\n");
        List<TrainingDocument> docs = DataFiles.ReadAll(path);
        Assert.All(docs, d => Assert.Equal(DataFormat.Alpaca, d.Format));
        Assert.Equal(["2 2", null, null], docs.Select(d => d.Input));
        Assert.Equal(["4", "hi", "no"], docs.Select(d => d.Output));
    }

    [Fact]
    public void Chat_records_are_detected_and_keep_roles_in_order()
    {
        using var dir = new TempDirectory();
        string path = DataFiles.Write(dir, "c.jsonl",
            "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"2+2?\"}, {\"role\": \"assistant\", \"content\": \"4\"}]}\n");
        TrainingDocument doc = Assert.Single(DataFiles.ReadAll(path));
        Assert.Equal(DataFormat.Chat, doc.Format);
        Assert.Equal([new ChatMessage("system", "Be brief."), new ChatMessage("user", "2+2?"), new ChatMessage("assistant", "4")], doc.Messages);
    }

    [Fact]
    public void A_forced_format_overrides_detection()
    {
        using var dir = new TempDirectory();
        string path = DataFiles.Write(dir, "x.data", "{\"text\": \"a\", \"instruction\": \"b\", \"output\": \"c\"}\n");
        Assert.Equal(DataFormat.Alpaca, Assert.Single(DataFiles.ReadAll(path)).Format);
        Assert.Equal("a", Assert.Single(DataFiles.ReadAll(path, new TrainingDataOptions { Format = DataFormat.JsonText })).Text);
        Assert.Equal("{\"text\": \"a\", \"instruction\": \"b\", \"output\": \"c\"}",
            Assert.Single(DataFiles.ReadAll(path, new TrainingDataOptions { Format = DataFormat.Text })).Text);
    }

    [Fact]
    public void A_file_with_another_extension_is_text_unless_it_starts_with_a_brace()
    {
        using var dir = new TempDirectory();
        Assert.Equal(DataFormat.Text, Assert.Single(DataFiles.ReadAll(DataFiles.Write(dir, "notes.md", "# Title\n"))).Format);
        Assert.Equal(DataFormat.JsonText, Assert.Single(DataFiles.ReadAll(DataFiles.Write(dir, "data.json", "\n  {\"text\": \"x\"}\n"))).Format);
    }

    [Fact]
    public void Folders_are_read_recursively_in_name_order_and_other_files_are_ignored()
    {
        using var dir = new TempDirectory();
        DataFiles.Write(dir, "corpus/b.txt", "b");
        DataFiles.Write(dir, "corpus/sub/a.jsonl.gz", "{\"text\": \"a\"}");
        DataFiles.Write(dir, "corpus/a.txt", "a");
        DataFiles.Write(dir, "corpus/readme.md", "ignored");
        IReadOnlyList<DataFile> files = DataFile.Find([dir.File("corpus")]);
        Assert.Equal(["corpus/a.txt", "corpus/b.txt", "corpus/sub/a.jsonl.gz"], files.Select(f => f.Name));
        Assert.Equal(["a", "b", "a"], DataReader.Read(files, new TrainingDataOptions(), new DataReadStats()).Select(d => d.Text));
    }

    [Fact]
    public void Missing_paths_empty_folders_and_repeated_files_are_refused()
    {
        using var dir = new TempDirectory();
        Assert.Contains("neither a file nor a folder", Assert.Throws<FileNotFoundException>(() => DataFile.Find([dir.File("nope")])).Message, StringComparison.Ordinal);
        Directory.CreateDirectory(dir.File("empty"));
        DataFiles.Write(dir, "empty/x.csv", "a,b");
        Assert.Contains("holds no training data", Assert.Throws<FileNotFoundException>(() => DataFile.Find([dir.File("empty")])).Message, StringComparison.Ordinal);
        string a = DataFiles.Write(dir, "d/a.txt", "a");
        Assert.Contains("named twice", Assert.Throws<ArgumentException>(() => DataFile.Find([a, dir.File("d")])).Message, StringComparison.Ordinal);
    }

    public static TheoryData<string, string, long, string> Malformed => new()
    {
        { "{\"text\": \"ok\"}\n{\"text\": \"broken\n", "t.jsonl", 2, "not valid JSON" },
        { "{\"text\": \"ok\"}\n\n[1, 2]\n", "t.jsonl", 3, "must be a JSON object, but this line holds an array" },
        { "{\"text\": \"ok\"}\n{\"txt\": \"typo\"}\n", "t.jsonl", 2, "the record has no 'text'" },
        { "{\"text\": \"ok\"}\n{\"text\": 42}\n", "t.jsonl", 2, "'text' is a number (42); it must be a string" },
        { "{\"instruction\": \"i\", \"output\": \"o\"}\n{\"instruction\": \"i\"}\n", "a.jsonl", 2, "the record has no 'output'" },
        { "{\"instruction\": \"i\", \"output\": \"o\"}\n{\"instruction\": \"i\", \"input\": [], \"output\": \"o\"}\n", "a.jsonl", 2, "'input' is an array; it must be a string (or absent)" },
        { "{\"instruction\": true, \"output\": \"o\"}\n", "a.jsonl", 1, "'instruction' is a boolean (true); it must be a string" },
        { "{\"messages\": \"hi\"}\n", "c.jsonl", 1, "'messages' is a string; it must be an array" },
        { "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\"}]}\n", "c.jsonl", 1, "messages[1] has no 'content'" },
        { "{\"messages\": [{\"content\": \"q\"}]}\n", "c.jsonl", 1, "messages[0] has no 'role'" },
        { "{\"messages\": [{\"role\": \"bot\", \"content\": \"q\"}]}\n", "c.jsonl", 1, "messages[0].role is 'bot'" },
        { "{\"messages\": [{\"role\": 1, \"content\": \"q\"}]}\n", "c.jsonl", 1, "messages[0].role is a number (1)" },
        { "{\"messages\": [{\"role\": \"user\", \"content\": null}]}\n", "c.jsonl", 1, "messages[0].content is null; it must be a string" },
        { "{\"messages\": [\"hello\"]}\n", "c.jsonl", 1, "messages[0] is a string; it must be an object" },
        { "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}]}\n", "c.jsonl", 1, "no 'assistant' message" },
        { "\n{\"prompt\": \"p\", \"completion\": \"c\"}\n", "x.jsonl", 2, "cannot tell the format from the first record (keys: prompt, completion)" },
    };

    [Theory]
    [MemberData(nameof(Malformed))]
    public void A_malformed_record_stops_reading_with_file_line_and_reason(string content, string name, long line, string reason)
    {
        using var dir = new TempDirectory();
        string path = DataFiles.Write(dir, name, content);
        DataFormatException e = DataFiles.ReadError(path);
        Assert.Equal(name, e.FilePath);
        Assert.Equal(line, e.Line);
        Assert.Contains(reason, e.Reason, StringComparison.Ordinal);
        Assert.StartsWith($"{name}:{line}: ", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Skipping_bad_records_counts_them_and_keeps_the_good_ones()
    {
        using var dir = new TempDirectory();
        string path = DataFiles.Write(dir, "t.jsonl", "{\"text\": \"a\"}\nnot json\n{\"text\": 1}\n{\"text\": \"b\"}\n[]\n");
        var stats = new DataReadStats();
        List<TrainingDocument> docs = DataFiles.ReadAll(path, new TrainingDataOptions { SkipBadRecords = true }, stats);
        Assert.Equal(["a", "b"], docs.Select(d => d.Text));
        Assert.Equal([0, 1], docs.Select(d => d.Index));
        Assert.Equal(3, stats.Skipped);
        Assert.Equal([2L, 3L, 5L], stats.SkippedRecords.Select(e => e.Line));
        Assert.Equal(2, stats.Documents);
    }

    [Fact]
    public void Skipping_bad_records_also_skips_them_before_the_format_is_known()
    {
        using var dir = new TempDirectory();
        string path = DataFiles.Write(dir, "t.jsonl", "{oops\n{\"messages\": [{\"role\": \"assistant\", \"content\": \"x\"}]}\n");
        var stats = new DataReadStats();
        TrainingDocument doc = Assert.Single(DataFiles.ReadAll(path, new TrainingDataOptions { SkipBadRecords = true }, stats));
        Assert.Equal(DataFormat.Chat, doc.Format);
        Assert.Equal(1, stats.Skipped);
    }

    [Fact]
    public void Invalid_utf8_is_reported_at_its_line()
    {
        using var dir = new TempDirectory();
        string path = dir.File("bad.txt");
        File.WriteAllBytes(path, [.. "good line\nsecond\n"u8, 0x66, 0xC3, 0x28, (byte)'\n']);
        DataFormatException e = DataFiles.ReadError(path);
        Assert.Contains("not valid UTF-8", e.Reason, StringComparison.Ordinal);
        Assert.Equal("bad.txt", e.FilePath);
        Assert.InRange(e.Line, 1, 3);
    }

    [Fact]
    public void A_truncated_gzip_file_is_reported_not_silently_shortened()
    {
        using var dir = new TempDirectory();
        string full = DataFiles.Write(dir, "whole.txt.gz", string.Concat(Enumerable.Repeat("some words to compress\n", 2000)));
        byte[] bytes = File.ReadAllBytes(full);
        string path = dir.File("cut.txt.gz");
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        DataFormatException e = DataFiles.ReadError(path);
        Assert.Equal("cut.txt.gz", e.FilePath);
        Assert.Contains("gzip", e.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void A_gzip_file_too_short_to_hold_a_header_and_trailer_is_refused()
    {
        using var dir = new TempDirectory();
        string path = dir.File("tiny.jsonl.gz");
        File.WriteAllBytes(path, [0x1F, 0x8B, 8, 0]);
        DataFormatException e = DataFiles.ReadError(path);
        Assert.Equal(0, e.Line);
        Assert.Contains("too few to be gzip", e.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void A_byte_order_mark_is_not_part_of_the_first_record()
    {
        using var dir = new TempDirectory();
        string path = dir.File("bom.jsonl");
        File.WriteAllText(path, "{\"text\": \"x\"}\n", new System.Text.UTF8Encoding(true));
        Assert.Equal("x", Assert.Single(DataFiles.ReadAll(path)).Text);
        string text = dir.File("bom.txt");
        File.WriteAllText(text, "hello", new System.Text.UTF8Encoding(true));
        Assert.Equal("hello", Assert.Single(DataFiles.ReadAll(text)).Text);
    }

    [Fact]
    public void Fingerprint_changes_with_content_and_names_but_not_with_location()
    {
        using var one = new TempDirectory();
        using var two = new TempDirectory();
        DataFiles.Write(one, "d/a.txt", "alpha");
        DataFiles.Write(one, "d/b.txt", "beta");
        DataFiles.Write(two, "d/b.txt", "beta");
        DataFiles.Write(two, "d/a.txt", "alpha");
        string first = DataFile.Fingerprint(DataFile.Find([one.File("d")]));
        Assert.Matches("^[0-9a-f]{64}$", first);
        Assert.Equal(first, DataFile.Fingerprint(DataFile.Find([two.File("d")])));
        DataFiles.Write(two, "d/a.txt", "alphA");
        Assert.NotEqual(first, DataFile.Fingerprint(DataFile.Find([two.File("d")])));
        DataFiles.Write(two, "d/a.txt", "alpha");
        File.Move(two.File("d/b.txt"), two.File("d/c.txt"));
        Assert.NotEqual(first, DataFile.Fingerprint(DataFile.Find([two.File("d")])));
    }
}
