using System.IO.Compression;
using System.Text;
using System.Text.Json;
using ModelSmith.Formats;

namespace ModelSmith.Quantization;

/// <summary>
/// Reads calibration text for an importance matrix: plain UTF-8 text files, or JSON Lines whose objects
/// carry a "text" string (one record a line), either optionally gzip-compressed (".gz"). Several files are
/// joined with a blank line between them, JSON records likewise.
/// </summary>
public static class CalibrationText
{
    /// <summary>The text of all <paramref name="paths"/>, in order.</summary>
    public static string Read(IReadOnlyList<string> paths)
    {
        ArgumentNullException.ThrowIfNull(paths);
        if (paths.Count == 0)
        {
            throw new ArgumentException("No calibration files were given.", nameof(paths));
        }
        var text = new StringBuilder();
        foreach (string path in paths)
        {
            if (!File.Exists(path))
            {
                throw new FileNotFoundException($"Calibration file '{path}' does not exist.", path);
            }
            if (text.Length > 0)
            {
                text.Append("\n\n");
            }
            string name = path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? path[..^3] : path;
            using Stream stream = Open(path);
            using var reader = new StreamReader(stream, new UTF8Encoding(false, throwOnInvalidBytes: true));
            try
            {
                if (name.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase))
                {
                    ReadJsonLines(path, reader, text);
                }
                else
                {
                    text.Append(reader.ReadToEnd());
                }
            }
            catch (Exception e) when (e is DecoderFallbackException or InvalidDataException)
            {
                throw new ModelFormatException(path, -1, $"cannot be read as {(path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? "gzip-compressed " : "")}UTF-8 text: {e.Message}", e);
            }
        }
        return text.ToString();
    }

    private static Stream Open(string path)
    {
        FileStream file = File.OpenRead(path);
        return path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? new GZipStream(file, CompressionMode.Decompress) : file;
    }

    private static void ReadJsonLines(string path, StreamReader reader, StringBuilder text)
    {
        int lineNumber = 0;
        bool first = true;
        while (reader.ReadLine() is { } line)
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line))
            {
                continue;
            }
            string? value;
            try
            {
                using JsonDocument doc = JsonDocument.Parse(line);
                value = doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("text", out JsonElement t) && t.ValueKind == JsonValueKind.String
                    ? t.GetString()
                    : throw new ModelFormatException(path, -1, $"line {lineNumber} has no \"text\" string; each line must be a JSON object like {{\"text\": \"...\"}}.");
            }
            catch (JsonException e)
            {
                throw new ModelFormatException(path, -1, $"line {lineNumber} is not valid JSON: {e.Message}", e);
            }
            if (!first)
            {
                text.Append("\n\n");
            }
            text.Append(value);
            first = false;
        }
    }
}
