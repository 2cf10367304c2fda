using System.IO.Compression;
using System.Text;
using System.Text.Json;
using ModelSmith.Formats;

namespace ModelSmith.Training.Data;

/// <summary>Counts of what <see cref="DataReader"/> read and skipped.</summary>
public sealed class DataReadStats
{
    /// <summary>How many skipped records keep their error in <see cref="SkippedRecords"/>.</summary>
    public const int MaxKeptErrors = 100;

    private readonly List<DataFormatException> _skipped = [];

    /// <summary>Files read so far.</summary>
    public int Files { get; internal set; }

    /// <summary>Documents produced so far.</summary>
    public long Documents { get; internal set; }

    /// <summary>Malformed records skipped (only with <see cref="TrainingDataOptions.SkipBadRecords"/>).</summary>
    public long Skipped { get; internal set; }

    /// <summary>The errors of the first <see cref="MaxKeptErrors"/> skipped records.</summary>
    public IReadOnlyList<DataFormatException> SkippedRecords => _skipped;

    /// <summary>The format each file was read as, by <see cref="DataFile.Name"/>.</summary>
    public Dictionary<string, DataFormat> FormatOfFile { get; } = new(StringComparer.Ordinal);

    internal void Skip(DataFormatException e)
    {
        Skipped++;
        if (_skipped.Count < MaxKeptErrors)
            _skipped.Add(e);
    }
}

/// <summary>
/// Reads training documents from files: plain text (optionally gzip'd) and JSON Lines (optionally gzip'd) in the
/// text, Alpaca and chat formats (see <see cref="DataFormat"/> for the auto-detection rule). A malformed record
/// throws a <see cref="DataFormatException"/> naming the file, line and reason, or, with
/// <see cref="TrainingDataOptions.SkipBadRecords"/>, is counted in <see cref="DataReadStats"/> and left out.
/// Blank lines in JSON Lines are ignored. Input must be UTF-8 (a BOM is allowed).
/// </summary>
public static class DataReader
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>The documents of every file, file by file in the given order, each file's in file order.</summary>
    public static IEnumerable<TrainingDocument> Read(IReadOnlyList<DataFile> files, TrainingDataOptions options, DataReadStats stats)
    {
        ArgumentNullException.ThrowIfNull(files);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(stats);
        foreach (DataFile file in files)
            foreach (TrainingDocument document in ReadFile(file, options, stats))
                yield return document;
    }

    /// <summary>The documents of one file.</summary>
    public static IEnumerable<TrainingDocument> ReadFile(DataFile file, TrainingDataOptions options, DataReadStats stats)
    {
        ArgumentNullException.ThrowIfNull(file);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(stats);
        var reader = new LineReader(file);
        try
        {
            DataFormat format = options.Format;
            if (format == DataFormat.Auto && IsTextByName(file.Name))
                format = DataFormat.Text;
            if (format == DataFormat.Auto && !IsJsonLinesByName(file.Name) && !LineReader.StartsWithBrace(file))
                format = DataFormat.Text;
            stats.Files++;
            IEnumerable<TrainingDocument> documents = format == DataFormat.Text
                ? ReadText(reader, file, options.TextSplit)
                : ReadJsonLines(reader, file, format, options.SkipBadRecords, stats);
            if (format != DataFormat.Auto)
                stats.FormatOfFile[file.Name] = format;
            foreach (TrainingDocument document in documents)
            {
                stats.FormatOfFile[file.Name] = document.Format;
                stats.Documents++;
                yield return document;
            }
        }
        finally
        {
            reader.Dispose();
        }
    }

    private static bool IsJsonLinesByName(string name) =>
        name.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".jsonl.gz", StringComparison.OrdinalIgnoreCase);

    private static bool IsTextByName(string name) =>
        name.EndsWith(".txt", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".txt.gz", StringComparison.OrdinalIgnoreCase);

    private static IEnumerable<TrainingDocument> ReadText(LineReader reader, DataFile file, TextDocumentSplit split)
    {
        int index = 0;
        if (split == TextDocumentSplit.File)
        {
            string all = reader.ReadToEnd();
            if (all.Length > 0)
                yield return new TrainingDocument(file.Name, 1, 0, DataFormat.Text) { Text = all };
            yield break;
        }
        var document = new StringBuilder();
        long start = 0;
        for (string? line = reader.ReadLine(); line is not null; line = reader.ReadLine())
        {
            bool blank = string.IsNullOrWhiteSpace(line);
            if (split == TextDocumentSplit.Lines)
            {
                if (!blank)
                    yield return new TrainingDocument(file.Name, reader.LineNumber, index++, DataFormat.Text) { Text = line };
                continue;
            }
            if (blank)
            {
                if (document.Length > 0)
                {
                    yield return new TrainingDocument(file.Name, start, index++, DataFormat.Text) { Text = document.ToString() };
                    document.Clear();
                }
                continue;
            }
            if (document.Length == 0)
                start = reader.LineNumber;
            else
                document.Append('\n');
            document.Append(line);
        }
        if (document.Length > 0)
            yield return new TrainingDocument(file.Name, start, index, DataFormat.Text) { Text = document.ToString() };
    }

    private static IEnumerable<TrainingDocument> ReadJsonLines(LineReader reader, DataFile file, DataFormat format, bool skipBad, DataReadStats stats)
    {
        int index = 0;
        for (string? line = reader.ReadLine(); line is not null; line = reader.ReadLine())
        {
            if (string.IsNullOrWhiteSpace(line))
                continue;
            long number = reader.LineNumber;
            TrainingDocument? document;
            try
            {
                using JsonDocument json = Parse(line, file, number);
                JsonElement root = json.RootElement;
                if (root.ValueKind != JsonValueKind.Object)
                    throw Error(file, number, $"a record must be a JSON object, but this line holds {Describe(root)}.");
                if (format == DataFormat.Auto)
                    format = DetectFormat(root, file, number);
                document = format switch
                {
                    DataFormat.JsonText => new TrainingDocument(file.Name, number, index, format) { Text = RequiredString(root, "text", file, number) },
                    DataFormat.Alpaca => new TrainingDocument(file.Name, number, index, format)
                    {
                        Instruction = RequiredString(root, "instruction", file, number),
                        Input = OptionalString(root, "input", file, number),
                        Output = RequiredString(root, "output", file, number),
                    },
                    _ => new TrainingDocument(file.Name, number, index, format) { Messages = Messages(root, file, number) },
                };
            }
            catch (DataFormatException e) when (skipBad)
            {
                stats.Skip(e);
                continue;
            }
            index++;
            yield return document;
        }
    }

    private static JsonDocument Parse(string line, DataFile file, long number)
    {
        try
        {
            return JsonDocument.Parse(line);
        }
        catch (JsonException e)
        {
            long column = (e.BytePositionInLine ?? 0) + 1;
            throw Error(file, number, $"not valid JSON ({JsonText.Reason(e)}, at byte {column} of the line); each line must be one JSON object.", e);
        }
    }

    /// <summary>The format a file's first record says (see <see cref="DataFormat"/>).</summary>
    private static DataFormat DetectFormat(JsonElement record, DataFile file, long number)
    {
        if (record.TryGetProperty("messages", out _))
            return DataFormat.Chat;
        if (record.TryGetProperty("instruction", out _))
            return DataFormat.Alpaca;
        if (record.TryGetProperty("text", out _))
            return DataFormat.JsonText;
        var keys = new List<string>();
        foreach (JsonProperty property in record.EnumerateObject())
            keys.Add(property.Name);
        throw Error(file, number,
            $"cannot tell the format from the first record (keys: {(keys.Count == 0 ? "none" : string.Join(", ", keys))}); " +
            "expected 'text', 'instruction'/'input'/'output' (Alpaca) or 'messages' (chat), or name the format explicitly.");
    }

    private static string RequiredString(JsonElement record, string key, DataFile file, long number)
    {
        if (!record.TryGetProperty(key, out JsonElement value))
            throw Error(file, number, $"the record has no '{key}'; this file is read as {FormatName(record)} and every record needs it.");
        if (value.ValueKind != JsonValueKind.String)
            throw Error(file, number, $"'{key}' is {Describe(value)}; it must be a string.");
        return value.GetString()!;
    }

    private static string? OptionalString(JsonElement record, string key, DataFile file, long number)
    {
        if (!record.TryGetProperty(key, out JsonElement value) || value.ValueKind == JsonValueKind.Null)
            return null;
        if (value.ValueKind != JsonValueKind.String)
            throw Error(file, number, $"'{key}' is {Describe(value)}; it must be a string (or absent).");
        return value.GetString()!;
    }

    private static List<ChatMessage> Messages(JsonElement record, DataFile file, long number)
    {
        if (!record.TryGetProperty("messages", out JsonElement array))
            throw Error(file, number, "the record has no 'messages'; a chat record is {\"messages\": [{\"role\": ..., \"content\": ...}, ...]}.");
        if (array.ValueKind != JsonValueKind.Array)
            throw Error(file, number, $"'messages' is {Describe(array)}; it must be an array of {{\"role\", \"content\"}} objects.");
        var messages = new List<ChatMessage>(array.GetArrayLength());
        bool hasReply = false;
        int i = 0;
        foreach (JsonElement message in array.EnumerateArray())
        {
            string at = $"messages[{i}]";
            if (message.ValueKind != JsonValueKind.Object)
                throw Error(file, number, $"{at} is {Describe(message)}; it must be an object with 'role' and 'content'.");
            if (!message.TryGetProperty("role", out JsonElement role))
                throw Error(file, number, $"{at} has no 'role'.");
            if (role.ValueKind != JsonValueKind.String)
                throw Error(file, number, $"{at}.role is {Describe(role)}; it must be a string.");
            string roleName = role.GetString()!;
            if (roleName is not ("system" or "user" or "assistant"))
                throw Error(file, number, $"{at}.role is '{roleName}'; roles are 'system', 'user' and 'assistant'.");
            if (!message.TryGetProperty("content", out JsonElement content))
                throw Error(file, number, $"{at} has no 'content'.");
            if (content.ValueKind != JsonValueKind.String)
                throw Error(file, number, $"{at}.content is {Describe(content)}; it must be a string.");
            hasReply |= roleName == "assistant";
            messages.Add(new ChatMessage(roleName, content.GetString()!));
            i++;
        }
        if (!hasReply)
            throw Error(file, number, "the chat has no 'assistant' message, so there is nothing to learn from it.");
        return messages;
    }

    private static string FormatName(JsonElement record) =>
        record.TryGetProperty("messages", out _) ? "chat" : record.TryGetProperty("instruction", out _) ? "Alpaca" : "text";

    private static string Describe(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => $"a number ({value.GetRawText()})",
        JsonValueKind.True or JsonValueKind.False => $"a boolean ({value.GetRawText()})",
        JsonValueKind.Null => "null",
        _ => value.ValueKind.ToString(),
    };

    private static DataFormatException Error(DataFile file, long line, string reason, Exception? inner = null) =>
        new(file.Name, line, reason, inner);

    /// <summary>Lines of a (possibly gzip'd) UTF-8 file with their numbers; unreadable bytes become errors naming the line.</summary>
    private sealed class LineReader : IDisposable
    {
        private readonly DataFile _file;
        private readonly StreamReader _reader;

        public LineReader(DataFile file)
        {
            _file = file;
            var raw = new FileStream(file.FullPath, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan);
            Stream stream = file.FullPath.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? CheckedGzipStream.Open(raw, file) : raw;
            _reader = new StreamReader(stream, StrictUtf8, detectEncodingFromByteOrderMarks: false, bufferSize: 1 << 16);
        }

        /// <summary>Line number of the line last returned by <see cref="ReadLine"/>.</summary>
        public long LineNumber { get; private set; }

        private bool _skippedBom;

        public string? ReadLine()
        {
            string? line = Guard(() => _reader.ReadLine());
            if (line is null)
                return null;
            LineNumber++;
            if (!_skippedBom)
            {
                _skippedBom = true;
                if (line.StartsWith('\uFEFF'))
                    line = line[1..];
            }
            return line;
        }

        public string ReadToEnd()
        {
            string all = Guard(() => _reader.ReadToEnd());
            return all.StartsWith('\uFEFF') ? all[1..] : all;
        }

        /// <summary>Whether the file's first character after a BOM and whitespace is '{' (looks at its first 64 KiB).</summary>
        public static bool StartsWithBrace(DataFile file)
        {
            using var reader = new LineReader(file);
            char[] buffer = new char[1 << 16];
            int n = reader.Guard(() => reader._reader.ReadBlock(buffer));
            foreach (char c in buffer.AsSpan(0, n))
            {
                if (c == '\uFEFF' || char.IsWhiteSpace(c))
                    continue;
                return c == '{';
            }
            return false;
        }

        private T Guard<T>(Func<T> read)
        {
            try
            {
                return read();
            }
            catch (DecoderFallbackException e)
            {
                throw new DataFormatException(_file.Name, LineNumber + 1, "the line is not valid UTF-8; training data must be UTF-8 text.", e);
            }
            catch (InvalidDataException e)
            {
                throw new DataFormatException(_file.Name, LineNumber + 1, $"the gzip stream is corrupt ({e.Message}); recompress or replace the file.", e);
            }
            catch (EndOfStreamException e)
            {
                throw new DataFormatException(_file.Name, LineNumber + 1, "the gzip stream ends early (truncated file); recompress or replace the file.", e);
            }
        }

        public void Dispose() => _reader.Dispose();
    }

    /// <summary>
    /// Gzip decompression that notices truncation. .NET's GZipStream ends quietly when the compressed data stops
    /// early, so this compares the decompressed byte count with the size in the file's gzip trailer (ISIZE, the last 4
    /// bytes: size mod 2^32) at the end. A cut-off file fails that check (its last 4 bytes are then compressed data or
    /// the CRC); damaged data inside a complete file fails zlib's own CRC check. A file of several concatenated gzip
    /// members is reported too (its trailer only sizes the last member); recompress it as one.
    /// </summary>
    private sealed class CheckedGzipStream : Stream
    {
        private readonly GZipStream _inner;
        private readonly uint _expectedSize;
        private uint _size;

        private CheckedGzipStream(GZipStream inner, uint expectedSize)
        {
            _inner = inner;
            _expectedSize = expectedSize;
        }

        public static CheckedGzipStream Open(FileStream file, DataFile data)
        {
            long length = file.Length;
            if (length < 18)
            {
                file.Dispose();
                throw new DataFormatException(data.Name, 0, $"the file has {length} bytes, too few to be gzip (at least 18); recompress or replace it.");
            }
            Span<byte> trailer = stackalloc byte[4];
            file.Seek(-4, SeekOrigin.End);
            file.ReadExactly(trailer);
            file.Seek(0, SeekOrigin.Begin);
            return new CheckedGzipStream(new GZipStream(file, CompressionMode.Decompress), System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(trailer));
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            int n = _inner.Read(buffer);
            _size = unchecked(_size + (uint)n);
            if (n == 0 && buffer.Length > 0 && _size != _expectedSize)
                throw new InvalidDataException(
                    $"the data ends after {_size} bytes (mod 2^32) but the gzip trailer says {_expectedSize}: the file is truncated (or holds several gzip members)");
            return n;
        }

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
                _inner.Dispose();
            base.Dispose(disposing);
        }
    }
}
