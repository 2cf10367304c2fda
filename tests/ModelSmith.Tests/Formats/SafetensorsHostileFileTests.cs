using System.Text;
using ModelSmith.Formats;

namespace ModelSmith.Tests.Formats;

/// <summary>
/// Every defective safetensors file must be refused with a <see cref="ModelFormatException"/> that names the
/// file and the byte offset of the defect, never another exception type.
/// </summary>
public sealed class SafetensorsHostileFileTests : IDisposable
{
    private const string JsonBytes = "{}[]\",:0123456789 \\u";
    private const string Good = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    // ---- length prefix and truncation ----

    [Fact]
    public void A_zero_length_file_is_refused_at_byte_0()
    {
        Rejects([], 0, "too short");
    }

    [Fact]
    public void A_file_shorter_than_the_length_prefix_is_refused_at_byte_0()
    {
        Rejects([1, 2, 3, 4, 5], 0, "too short");
    }

    [Theory]
    [InlineData(100ul)]
    [InlineData(100_000_000ul)]
    public void A_header_length_beyond_the_file_is_refused_at_byte_0(ulong declared)
    {
        Rejects(SafetensorsTests.Layout(Good, new byte[8], declared), 0, "only 62 bytes follow");
    }

    [Theory]
    [InlineData(100_000_001ul)]
    [InlineData(1ul << 40)]
    [InlineData(ulong.MaxValue)]
    public void A_header_length_over_the_format_limit_is_refused_at_byte_0(ulong declared)
    {
        Rejects(SafetensorsTests.Layout(Good, new byte[8], declared), 0, "limit");
    }

    [Fact]
    public void A_header_length_that_cuts_the_json_short_is_refused_where_the_json_breaks_off()
    {
        Rejects(SafetensorsTests.Layout(Good, new byte[8], (ulong)Good.Length - 5), null, "not valid JSON");
    }

    [Fact]
    public void A_file_truncated_inside_the_data_is_refused_at_the_last_tensors_offsets()
    {
        byte[] bytes = SafetensorsTests.Layout(Good, new byte[8]);
        Rejects(bytes[..^3], 8 + Good.IndexOf("[0,8]", StringComparison.Ordinal), "reach past the end");
    }

    [Fact]
    public void A_valid_file_truncated_at_every_length_is_always_refused_with_a_format_error()
    {
        byte[] whole = SmallValidFile();
        string path = _temp.File("cut.safetensors");
        for (int length = 0; length < whole.Length; length++)
        {
            File.WriteAllBytes(path, whole[..length]);
            var e = Assert.Throws<ModelFormatException>(() => Open(path));
            Assert.Equal(path, e.FilePath);
            Assert.True(e.Offset >= 0 && e.Offset <= length, $"length {length}: offset {e.Offset} is outside the file");
        }
        File.WriteAllBytes(path, whole);
        Open(path);
    }

    [Fact]
    public void Random_byte_corruptions_give_a_format_error_or_a_valid_file_never_another_exception()
    {
        byte[] whole = SmallValidFile();
        string path = _temp.File("fuzz.safetensors");
        var random = new Random(4321);
        int refused = 0;
        for (int trial = 0; trial < 1000; trial++)
        {
            byte[] bytes = (byte[])whole.Clone();
            for (int f = 1 + random.Next(3); f > 0; f--)
            {
                int at = random.Next(bytes.Length);
                bytes[at] = random.Next(3) switch
                {
                    0 => (byte)(bytes[at] ^ (1 << random.Next(8))),
                    1 => (byte)JsonBytes[random.Next(JsonBytes.Length)],
                    _ => (byte)random.Next(256),
                };
            }
            File.WriteAllBytes(path, bytes);
            try
            {
                Open(path);
            }
            catch (ModelFormatException e)
            {
                Assert.Equal(path, e.FilePath);
                refused++;
            }
        }
        Assert.True(refused > 300, $"only {refused} of 1000 corrupted files were refused");
    }

    // ---- header text ----

    [Fact]
    public void A_header_that_is_not_utf8_is_refused_at_the_bad_byte()
    {
        byte[] bytes = SafetensorsTests.Layout(Good, new byte[8]);
        int at = 8 + Good.IndexOf("\"a\"", StringComparison.Ordinal) + 1;
        bytes[at] = 0xFF;
        Rejects(bytes, at, "not valid UTF-8");
    }

    [Theory]
    [InlineData("", 8, "empty")]
    [InlineData("        ", 8, "empty")]
    [InlineData("not json", 9, "not valid JSON")]
    [InlineData("[]", 8, "expected a JSON object")]
    [InlineData("\"text\"", 8, "expected a JSON object")]
    [InlineData("{\"a\":", 13, "not valid JSON")]
    [InlineData("{} x", 11, "not valid JSON")]
    [InlineData("{}{}", 10, "not valid JSON")]
    [InlineData("{,}", 9, "not valid JSON")]
    [InlineData("{\"__metadata__\":{},}", 27, "not valid JSON")]
    [InlineData("{/* c */}", 9, "not valid JSON")]
    [InlineData("{\"a\":{\"dtype\":'F32'}}", 22, "not valid JSON")]
    public void A_header_that_is_not_a_json_object_is_refused_where_it_goes_wrong(string header, long offset, string problem)
    {
        Rejects(SafetensorsTests.Layout(header, []), offset, problem);
    }

    [Fact]
    public void A_header_a_line_down_reports_the_absolute_byte_offset_of_its_json_error()
    {
        string header = "{\n  \"__metadata__\": {\n    \"k\": \"v\",\n  }\n}";
        Rejects(SafetensorsTests.Layout(header, []), 8 + header.IndexOf("}\n}", StringComparison.Ordinal), "not valid JSON");
    }

    [Fact]
    public void Json_nested_deeper_than_the_reader_allows_is_refused()
    {
        string header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":" + new string('[', 5000) + new string(']', 5000) + "}}";
        Rejects(SafetensorsTests.Layout(header, new byte[8]), null, "not valid JSON");
    }

    [Fact]
    public void A_tensor_name_escaping_a_lone_surrogate_is_refused_at_the_name()
    {
        string header = "{\"a\\ud800\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
        Rejects(SafetensorsTests.Layout(header, new byte[8]), 9, "not a valid Unicode string");
    }

    // ---- entries ----

    [Theory]
    [InlineData("{\"a\":5}", "5", "expected an object")]
    [InlineData("{\"a\":{\"dtype\":\"F128\",\"shape\":[2],\"data_offsets\":[0,8]}}", "\"F128\"", "does not define")]
    [InlineData("{\"a\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "\"f32\"", "does not define")]
    [InlineData("{\"a\":{\"dtype\":5,\"shape\":[2],\"data_offsets\":[0,8]}}", "5,", "expected a string")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", "2,", "expected an array")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", "-2", "non-negative integers")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", "2.0", "non-negative integers")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", "\"2\"", "non-negative integers")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,8]}}", "9999", "non-negative integers")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", "]}}", "holds 1 numbers")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,16]}}", "16", "more than 2")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,-8]}}", "-8", "non-negative integers")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,18446744073709551616]}}", "18446", "non-negative integers")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,9223372036854775808]}}", "92233", "non-negative integers")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":{\"b\":0}}}", "{\"b\"", "expected an array")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "\"dtype\":\"F32\",\"shape", "dtype twice")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"shape\":[2],\"data_offsets\":[0,8]}}", "\"shape\":[2],\"data", "shape twice")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"data_offsets\":[0,8]}}", "\"data_offsets\":[0,8]}", "data_offsets twice")]
    [InlineData("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", "\"a\"", "no dtype")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", "\"a\"", "no shape")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", "\"a\"", "no data_offsets")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "appears twice")]
    [InlineData("{\"__metadata__\":[],\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "[]", "object of strings")]
    [InlineData("{\"__metadata__\":{\"n\":1},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "1}", "only strings")]
    [InlineData("{\"__metadata__\":{\"n\":\"1\",\"n\":\"2\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "\"n\":\"2\"", "appears twice")]
    [InlineData("{\"__metadata__\":{},\"__metadata__\":{},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "\"__metadata__\":{},\"a\"", "appears twice")]
    public void A_malformed_entry_is_refused_at_the_offending_token(string header, string marker, string problem)
    {
        Rejects(SafetensorsTests.Layout(header, new byte[8]), 8 + ByteIndex(header, marker), problem);
    }

    // ---- offsets, sizes and coverage ----

    [Theory]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "[0,8]", "takes 12 bytes")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", 12, "[0,12]", "takes 8 bytes")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "[8,0]", "end before they begin")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", 8, "[0,16]", "reach past the end")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4096,4104]}}", 8, "[4096", "reach past the end")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[9223372036854775799,9223372036854775807]}}", 8, "[92", "reach past the end")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "[4,12]", "gap of 4 bytes after the start")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", 20, "[12,20]", "gap of 4 bytes after the end of tensor 'a'")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "[4,12]", "overlaps tensor 'a'")]
    [InlineData("{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "[0,8]}}", "overlaps tensor 'b'")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, "[4294967296,", "more elements than 64 bits")]
    [InlineData("{\"a\":{\"dtype\":\"F64\",\"shape\":[2147483648,2147483648],\"data_offsets\":[0,8]}}", 8, "[2147483648,", "more bits than 64 bits")]
    [InlineData("{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2, "[3]", "byte boundary")]
    [InlineData("{\"a\":{\"dtype\":\"F6_E2M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, "[2]", "byte boundary")]
    public void Offsets_that_do_not_tile_the_data_exactly_are_refused_at_the_tensor_at_fault(string header, int dataLength, string marker, string problem)
    {
        Rejects(SafetensorsTests.Layout(header, new byte[dataLength]), 8 + ByteIndex(header, marker), problem);
    }

    [Fact]
    public void Trailing_bytes_after_the_last_tensor_are_refused_where_they_begin()
    {
        Rejects(SafetensorsTests.Layout(Good, new byte[11]), 8 + Good.Length + 8, "last 3 bytes");
    }

    [Fact]
    public void Data_with_no_tensors_to_own_it_is_refused()
    {
        Rejects(SafetensorsTests.Layout("{}", new byte[4]), 10, "last 4 bytes");
    }

    // ---- paths ----

    [Fact]
    public void A_missing_file_is_a_file_not_found_error_naming_it()
    {
        string path = _temp.File("nope.safetensors");
        var e = Assert.Throws<FileNotFoundException>(() => Open(path));
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void A_directory_is_refused_with_a_format_error_naming_it()
    {
        string path = _temp.File("model.safetensors");
        Directory.CreateDirectory(path);
        var e = Assert.Throws<ModelFormatException>(() => Open(path));
        Assert.Equal(path, e.FilePath);
        Assert.Contains("directory", e.Problem);
    }

    // ---- helpers ----

    private static int ByteIndex(string text, string marker)
    {
        int index = text.IndexOf(marker, StringComparison.Ordinal);
        Assert.True(index >= 0, $"marker '{marker}' not in the header");
        return Encoding.UTF8.GetByteCount(text.AsSpan(0, index));
    }

    private static byte[] SmallValidFile()
    {
        var writer = new SafetensorsWriter()
            .SetMetadata("format", "pt")
            .AddTensor("w", [2, 2], [1, 2, 3, 4])
            .AddTensor("h", SafetensorsDtype.F16, [3], new byte[6])
            .AddTensor("m", SafetensorsDtype.BOOL, [1], new byte[] { 1 });
        var stream = new MemoryStream();
        writer.Write(stream);
        return stream.ToArray();
    }

    private static void Open(string path)
    {
        using var file = SafetensorsFile.Open(path);
    }

    private ModelFormatException Rejects(byte[] bytes, long? offset, string problem)
    {
        string path = _temp.File("bad.safetensors");
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<ModelFormatException>(() => Open(path));
        Assert.Equal(path, e.FilePath);
        Assert.StartsWith(path + ": at byte ", e.Message, StringComparison.Ordinal);
        if (offset is long expected)
            Assert.True(expected == e.Offset, $"expected offset {expected}, got {e.Offset}: {e.Message}");
        Assert.Contains(problem, e.Problem, StringComparison.OrdinalIgnoreCase);
        return e;
    }
}
