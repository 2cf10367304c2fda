using System.Text.Json;

namespace ModelSmith.Formats;

/// <summary>Byte positions and descriptions for errors in JSON that is read with <see cref="Utf8JsonReader"/>.</summary>
internal static class JsonText
{
    /// <summary>
    /// The offset into <paramref name="json"/> that a reader error points at. The reader reports a line
    /// (counted by '\n') and a byte position within it; this turns them back into one offset.
    /// </summary>
    public static long OffsetOf(JsonException e, ReadOnlySpan<byte> json)
    {
        long line = e.LineNumber ?? 0;
        long inLine = e.BytePositionInLine ?? 0;
        int lineStart = 0;
        for (long l = 0; l < line; l++)
        {
            int next = json[lineStart..].IndexOf((byte)'\n');
            if (next < 0) break;
            lineStart += next + 1;
        }
        return Math.Min(lineStart + inLine, json.Length);
    }

    /// <summary>The reader's message without its own "LineNumber: ... | BytePositionInLine: ..." suffix.</summary>
    public static string Reason(JsonException e)
    {
        string message = e.Message;
        int cut = message.IndexOf(" LineNumber:", StringComparison.Ordinal);
        return (cut >= 0 ? message[..cut] : message).TrimEnd();
    }

    /// <summary>A token type as a reader of the error message would call it.</summary>
    public static string Describe(JsonTokenType type) => type switch
    {
        JsonTokenType.StartObject => "an object",
        JsonTokenType.StartArray => "an array",
        JsonTokenType.String => "a string",
        JsonTokenType.Number => "a number",
        JsonTokenType.True or JsonTokenType.False => "a boolean",
        JsonTokenType.Null => "null",
        _ => type.ToString(),
    };
}
