using System.Buffers;
using System.Text;
using ModelSmith.Formats;

namespace ModelSmith.Tests.Formats;

/// <summary>
/// Every defective GGUF file must be refused with a <see cref="ModelFormatException"/> that names the file
/// and the byte offset of the defect; never another exception type, a hang, or an allocation sized by a
/// header field the reader has not checked against the file's real size.
/// </summary>
public sealed class GgufHostileFileTests : IDisposable
{
    private const int Header = 24;
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    // ---- truncation ----

    [Fact]
    public void A_zero_length_file_is_refused_at_byte_0()
    {
        Rejects([], 0, "too short");
    }

    [Fact]
    public void A_file_truncated_inside_the_header_is_refused_at_byte_0()
    {
        Rejects(new GgufBytes().Header(0, 0).ToArray()[..20], 0, "too short");
    }

    [Fact]
    public void A_file_truncated_inside_a_key_is_refused_at_the_key_length()
    {
        byte[] bytes = new GgufBytes().Header(0, 1).KeyString("general.architecture", "llama").ToArray();
        Rejects(bytes[..(Header + 8 + 5)], Header, "string of 20 bytes");
    }

    [Fact]
    public void A_file_truncated_inside_a_value_is_refused_at_the_value()
    {
        byte[] bytes = new GgufBytes().Header(0, 1).KeyU32("general.alignment", 32).ToArray();
        long valueAt = Header + 8 + "general.alignment".Length + 4;
        Rejects(bytes[..(int)(valueAt + 2)], valueAt, "truncated");
    }

    [Fact]
    public void A_file_truncated_inside_a_string_value_is_refused_at_its_length()
    {
        byte[] bytes = new GgufBytes().Header(0, 1).KeyString("general.name", "a rather long model name").ToArray();
        long lengthAt = Header + 8 + "general.name".Length + 4;
        Rejects(bytes[..(int)(lengthAt + 8 + 3)], lengthAt, "string of 24 bytes");
    }

    [Fact]
    public void A_file_truncated_inside_the_tensor_infos_is_refused_at_the_missing_field()
    {
        var b = new GgufBytes().Header(1, 0);
        b.Str("blk.0.attn_q.weight").U32(2).U64(64);
        long secondDimAt = b.Position;
        b.U64(64).U32(0).U64(0);
        Rejects(b.ToArray()[..(int)(secondDimAt + 3)], secondDimAt, "truncated");
    }

    [Fact]
    public void A_file_truncated_before_its_data_section_is_refused()
    {
        var b = new GgufBytes().Header(1, 0).Tensor("w", [8], GgmlType.F32, 0);
        long infosEnd = b.Position;
        byte[] bytes = b.Pad().Zeros(32).ToArray();
        Rejects(bytes[..(int)(infosEnd + 1)], infosEnd, "before its tensor data");
    }

    [Fact]
    public void A_file_truncated_inside_tensor_data_is_refused_at_that_tensors_offset_field()
    {
        var b = new GgufBytes().Header(2, 0).Tensor("a", [8], GgmlType.F32, 0).Tensor("b", [8], GgmlType.F32, 32, out long bOffsetAt);
        byte[] bytes = b.Pad().Zeros(64).ToArray();
        Rejects(bytes[..^10], bOffsetAt, "extends past the end");
    }

    [Fact]
    public void A_file_truncated_inside_the_padding_after_its_last_tensor_is_refused()
    {
        var b = new GgufBytes().Header(1, 0).Tensor("a", [3], GgmlType.F32, 0, out long offsetAt);
        byte[] bytes = b.Pad().Zeros(32).ToArray();
        Rejects(bytes[..^4], offsetAt, "padding");
    }

    [Fact]
    public void A_valid_file_truncated_at_every_length_is_always_refused_with_a_format_error()
    {
        byte[] whole = SmallValidFile();
        string path = _temp.File("cut.gguf");
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
        string path = _temp.File("fuzz.gguf");
        var random = new Random(1234);
        int refused = 0;
        for (int trial = 0; trial < 1000; trial++)
        {
            byte[] bytes = (byte[])whole.Clone();
            int flips = 1 + random.Next(3);
            for (int f = 0; f < flips; f++)
            {
                int at = random.Next(bytes.Length);
                bytes[at] = random.Next(4) switch
                {
                    0 => 0xFF,
                    1 => 0x00,
                    2 => (byte)(bytes[at] ^ (1 << random.Next(8))),
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
        Assert.True(refused > 100, $"only {refused} of 1000 corrupted files were refused");
    }

    // ---- header ----

    [Fact]
    public void A_wrong_magic_is_refused_at_byte_0()
    {
        Rejects(new GgufBytes().Header(0, 0, magic: 0x4C4C5547).Pad().ToArray(), 0, "not a GGUF file");
    }

    [Fact]
    public void Version_1_is_refused_at_the_version_field()
    {
        Rejects(new GgufBytes().Header(0, 0, version: 1).Pad().ToArray(), 4, "version 1");
    }

    [Fact]
    public void A_big_endian_file_is_refused_at_the_version_field()
    {
        Rejects(new GgufBytes().Header(0, 0, version: 0x03000000).Pad().ToArray(), 4, "big-endian");
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(4u)]
    [InlineData(uint.MaxValue)]
    public void An_unknown_version_is_refused_at_the_version_field(uint version)
    {
        Rejects(new GgufBytes().Header(0, 0, version: version).Pad().ToArray(), 4, "expected 2 or 3");
    }

    [Theory]
    [InlineData(1000ul)]
    [InlineData(1ul << 40)]
    [InlineData(ulong.MaxValue)]
    public void A_tensor_count_larger_than_the_file_could_hold_is_refused_at_the_count(ulong count)
    {
        Rejects(new GgufBytes().Header(count, 0).Pad(64).ToArray(), 8, "tensors");
    }

    [Theory]
    [InlineData(1000ul)]
    [InlineData(1ul << 40)]
    [InlineData(ulong.MaxValue)]
    public void A_metadata_count_larger_than_the_file_could_hold_is_refused_at_the_count(ulong count)
    {
        Rejects(new GgufBytes().Header(0, count).Pad(64).ToArray(), 16, "metadata entries");
    }

    // ---- strings and metadata values ----

    [Theory]
    [InlineData(100ul)]
    [InlineData(1ul << 31)]
    [InlineData(1ul << 63)]
    [InlineData(ulong.MaxValue)]
    public void A_key_length_larger_than_the_file_is_refused_at_the_length(ulong length)
    {
        byte[] bytes = new GgufBytes().Header(0, 1).U64(length).Raw(Encoding.ASCII.GetBytes("general.name")).U32(8).Zeros(16).ToArray();
        Rejects(bytes, Header, "string of");
    }

    [Fact]
    public void A_string_value_length_larger_than_the_file_is_refused_at_the_length()
    {
        var b = new GgufBytes().Header(0, 1).Str("general.name").U32((uint)GgufValueType.String);
        long lengthAt = b.Position;
        Rejects(b.U64(1ul << 62).Raw("abc"u8.ToArray()).ToArray(), lengthAt, "string of");
    }

    [Fact]
    public void An_empty_key_is_refused_at_the_key()
    {
        Rejects(new GgufBytes().Header(0, 1).Str("").U32((uint)GgufValueType.UInt8).U8(1).Pad().ToArray(), Header, "empty key");
    }

    [Theory]
    [InlineData(GgufValueType.UInt8)]
    [InlineData(GgufValueType.Bool)]
    [InlineData(GgufValueType.Int32)]
    [InlineData(GgufValueType.Float64)]
    [InlineData(GgufValueType.String)]
    [InlineData(GgufValueType.Array)]
    public void An_absurd_array_length_is_refused_at_the_length_before_anything_is_allocated(GgufValueType elementType)
    {
        var b = new GgufBytes().Header(0, 1).Str("a").U32((uint)GgufValueType.Array).U32((uint)elementType);
        long countAt = b.Position;
        Rejects(b.U64(1ul << 62).Zeros(64).ToArray(), countAt, "elements");
    }

    [Theory]
    [InlineData(13u)]
    [InlineData(1000u)]
    [InlineData(uint.MaxValue)]
    public void An_unknown_metadata_value_type_is_refused_at_the_type_field(uint type)
    {
        var b = new GgufBytes().Header(0, 1).Str("key");
        long typeAt = b.Position;
        Rejects(b.U32(type).Zeros(32).ToArray(), typeAt, "value type");
    }

    [Fact]
    public void An_unknown_array_element_type_is_refused_at_the_element_type_field()
    {
        var b = new GgufBytes().Header(0, 1).Str("key").U32((uint)GgufValueType.Array);
        long typeAt = b.Position;
        Rejects(b.U32(13).U64(1).Zeros(32).ToArray(), typeAt, "array of type 13");
    }

    [Fact]
    public void A_bool_holding_2_is_refused_at_that_byte()
    {
        var b = new GgufBytes().Header(0, 1).Str("flag").U32((uint)GgufValueType.Bool);
        long valueAt = b.Position;
        Rejects(b.U8(2).Pad().ToArray(), valueAt, "bool holding 2");
    }

    [Fact]
    public void A_bool_array_element_holding_7_is_refused_at_that_byte()
    {
        var b = new GgufBytes().Header(0, 1).Str("flags").U32((uint)GgufValueType.Array).U32((uint)GgufValueType.Bool).U64(3).U8(1).U8(0);
        long badAt = b.Position;
        Rejects(b.U8(7).Pad().ToArray(), badAt, "bool holding 7");
    }

    [Theory]
    [InlineData(new byte[] { 0x61, 0xFF, 0x62 }, 1)]
    [InlineData(new byte[] { 0x61, 0x62, 0xC3 }, 2)]
    [InlineData(new byte[] { 0xC0, 0x80 }, 0)]
    [InlineData(new byte[] { 0x61, 0xED, 0xA0, 0x80 }, 1)]
    public void A_key_that_is_not_utf8_is_refused_at_the_bad_byte(byte[] key, int badIndex)
    {
        byte[] bytes = new GgufBytes().Header(0, 1).Str(key).U32((uint)GgufValueType.UInt8).U8(1).Pad().ToArray();
        Rejects(bytes, Header + 8 + badIndex, "not valid UTF-8");
    }

    [Fact]
    public void A_string_value_that_is_not_utf8_is_refused_at_the_bad_byte()
    {
        var b = new GgufBytes().Header(0, 1).Str("general.name").U32((uint)GgufValueType.String);
        long textAt = b.Position + 8;
        Rejects(b.Str(new byte[] { 0x6F, 0x6B, 0xFE, 0x21 }).Pad().ToArray(), textAt + 2, "not valid UTF-8");
    }

    [Fact]
    public void A_string_array_element_that_is_not_utf8_is_refused()
    {
        var b = new GgufBytes().Header(0, 1).Str("tokenizer.ggml.tokens").U32((uint)GgufValueType.Array).U32((uint)GgufValueType.String).U64(2).Str("ok");
        long textAt = b.Position + 8;
        Rejects(b.Str(new byte[] { 0x80 }).Pad().ToArray(), textAt, "not valid UTF-8");
    }

    [Fact]
    public void A_duplicate_key_is_refused_at_its_second_occurrence()
    {
        var b = new GgufBytes().Header(0, 2).KeyU32("n", 1);
        long secondAt = b.Position;
        Rejects(b.KeyU32("n", 2).Pad().ToArray(), secondAt, "appears twice");
    }

    [Fact]
    public void Arrays_nested_deeper_than_8_levels_are_refused_where_the_ninth_begins()
    {
        var b = new GgufBytes().Header(0, 1).Str("deep").U32((uint)GgufValueType.Array);
        long ninthAt = 0;
        for (int level = 0; level < 9; level++)
        {
            if (level == 8) ninthAt = b.Position;
            b.U32((uint)GgufValueType.Array).U64(1);
        }
        b.U32((uint)GgufValueType.UInt8).U64(0).Pad();
        Rejects(b.ToArray(), ninthAt, "nests arrays deeper");
    }

    [Fact]
    public void Arrays_nested_a_hundred_thousand_levels_are_refused_without_exhausting_the_stack()
    {
        var b = new GgufBytes().Header(0, 1).Str("deep").U32((uint)GgufValueType.Array);
        for (int level = 0; level < 100_000; level++) b.U32((uint)GgufValueType.Array).U64(1);
        var e = Rejects(b.ToArray(), null, "nests arrays deeper");
        Assert.True(e.Offset > Header);
    }

    // ---- general.alignment ----

    [Theory]
    [InlineData(0u)]
    [InlineData(3u)]
    [InlineData(48u)]
    [InlineData(1u << 21)]
    [InlineData(uint.MaxValue)]
    public void An_alignment_that_is_not_a_power_of_two_up_to_1_MiB_is_refused_at_its_value(uint alignment)
    {
        long valueAt = Header + 8 + "general.alignment".Length + 4;
        Rejects(new GgufBytes().Header(0, 1).KeyU32("general.alignment", alignment).Pad().ToArray(), valueAt, "power of two");
    }

    [Fact]
    public void An_alignment_stored_as_int32_is_refused_at_its_type_field()
    {
        long typeAt = Header + 8 + "general.alignment".Length;
        byte[] bytes = new GgufBytes().Header(0, 1).Str("general.alignment").U32((uint)GgufValueType.Int32).U32(32).Pad().ToArray();
        Rejects(bytes, typeAt, "requires UInt32");
    }

    [Fact]
    public void An_alignment_stored_as_a_string_is_refused_at_its_type_field()
    {
        long typeAt = Header + 8 + "general.alignment".Length;
        Rejects(new GgufBytes().Header(0, 1).KeyString("general.alignment", "32").Pad().ToArray(), typeAt, "requires UInt32");
    }

    // ---- tensor infos ----

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    public void A_tensor_with_a_dimension_count_outside_1_to_4_is_refused_at_that_count(int dims)
    {
        var b = new GgufBytes().Header(1, 0).Str("w");
        long dimsAt = b.Position;
        b.U32((uint)dims);
        for (int d = 0; d < dims; d++) b.U64(1);
        Rejects(b.U32(0).U64(0).Pad().Zeros(32).ToArray(), dimsAt, "dimensions");
    }

    [Fact]
    public void A_huge_dimension_count_is_refused_before_it_sizes_an_allocation()
    {
        var b = new GgufBytes().Header(1, 0).Str("w");
        long dimsAt = b.Position;
        Rejects(b.U32(uint.MaxValue).Zeros(64).ToArray(), dimsAt, "dimensions");
    }

    [Fact]
    public void Dimensions_whose_product_overflows_are_refused_at_the_overflowing_dimension()
    {
        var b = new GgufBytes().Header(1, 0).Str("w").U32(3).U64(1ul << 32).U64(1ul << 30);
        long thirdAt = b.Position;
        Rejects(b.U64(1ul << 2).U32(0).U64(0).Pad().Zeros(32).ToArray(), thirdAt, "overflows");
    }

    [Fact]
    public void A_dimension_above_int64_max_is_refused_at_that_dimension()
    {
        var b = new GgufBytes().Header(1, 0).Str("w").U32(2).U64(4);
        long secondAt = b.Position;
        Rejects(b.U64(1ul << 63).U32(0).U64(0).Pad().Zeros(32).ToArray(), secondAt, "overflows");
    }

    [Fact]
    public void An_element_count_whose_byte_size_overflows_is_refused()
    {
        // 2^31 * 2^31 = 2^62 F64 elements fit in a long; their 2^65 bytes do not.
        var b = new GgufBytes().Header(1, 0).Str("w");
        long dimsAt = b.Position;
        b.U32(2).U64(1ul << 31).U64(1ul << 31).U32((uint)GgmlType.F64).U64(0).Pad().Zeros(32);
        Rejects(b.ToArray(), dimsAt, "bytes");
    }

    [Theory]
    [InlineData(4u)]
    [InlineData(5u)]
    [InlineData(31u)]
    [InlineData(32u)]
    [InlineData(33u)]
    [InlineData(36u)]
    [InlineData(43u)]
    [InlineData(1000u)]
    [InlineData(uint.MaxValue)]
    public void An_unknown_tensor_type_id_is_refused_at_the_type_field(uint type)
    {
        var b = new GgufBytes().Header(1, 0).Str("w").U32(1).U64(32);
        long typeAt = b.Position;
        Rejects(b.U32(type).U64(0).Pad().Zeros(256).ToArray(), typeAt, $"type id {type}");
    }

    [Fact]
    public void A_row_length_that_is_not_a_whole_number_of_blocks_is_refused_at_the_dimensions()
    {
        var b = new GgufBytes().Header(1, 0).Str("w");
        long dimsAt = b.Position;
        Rejects(b.U32(1).U64(33).U32((uint)GgmlType.Q4_0).U64(0).Pad().Zeros(64).ToArray(), dimsAt, "block size");
    }

    [Fact]
    public void A_tensor_name_that_is_not_utf8_is_refused_at_the_bad_byte()
    {
        var b = new GgufBytes().Header(1, 0);
        long textAt = b.Position + 8;
        Rejects(b.Tensor(new byte[] { 0x77, 0xFF }, [8], 0, 0).Pad().Zeros(32).ToArray(), textAt + 1, "not valid UTF-8");
    }

    [Fact]
    public void A_tensor_name_longer_than_ggml_allows_is_refused_at_the_name()
    {
        var b = new GgufBytes().Header(1, 0);
        long nameAt = b.Position;
        Rejects(b.Tensor(new string('n', 64), [8], GgmlType.F32, 0).Pad().Zeros(32).ToArray(), nameAt, "63");
    }

    [Fact]
    public void A_duplicate_tensor_name_is_refused_at_its_second_entry()
    {
        var b = new GgufBytes().Header(2, 0).Tensor("w", [8], GgmlType.F32, 0);
        long secondAt = b.Position;
        Rejects(b.Tensor("w", [8], GgmlType.F32, 32).Pad().Zeros(64).ToArray(), secondAt, "appears twice");
    }

    [Fact]
    public void Tensor_data_extending_past_the_end_of_the_file_is_refused_at_its_offset_field()
    {
        var b = new GgufBytes().Header(1, 0).Tensor("w", [1024], GgmlType.F32, 0, out long offsetAt);
        Rejects(b.Pad().Zeros(64).ToArray(), offsetAt, "extends past the end");
    }

    [Fact]
    public void A_tensor_offset_beyond_the_file_is_refused_at_its_offset_field()
    {
        var b = new GgufBytes().Header(1, 0).Tensor("w", [8], GgmlType.F32, 1ul << 40, out long offsetAt);
        Rejects(b.Pad().Zeros(64).ToArray(), offsetAt, "extends past the end");
    }

    [Fact]
    public void A_tensor_offset_above_int64_max_is_refused_at_its_offset_field()
    {
        var b = new GgufBytes().Header(1, 0).Tensor("w", [8], GgmlType.F32, ulong.MaxValue - 31, out long offsetAt);
        Rejects(b.Pad().Zeros(64).ToArray(), offsetAt, "data offset");
    }

    [Fact]
    public void Overlapping_tensor_data_is_refused_at_the_second_tensors_offset_field()
    {
        var b = new GgufBytes().Header(2, 0).Tensor("a", [16], GgmlType.F32, 0).Tensor("b", [8], GgmlType.F32, 32, out long bOffsetAt);
        Rejects(b.Pad().Zeros(128).ToArray(), bOffsetAt, "overlaps tensor 'a'");
    }

    [Fact]
    public void Two_tensors_at_the_same_offset_are_refused()
    {
        var b = new GgufBytes().Header(2, 0).Tensor("a", [8], GgmlType.F32, 0).Tensor("b", [8], GgmlType.F32, 0);
        var e = Rejects(b.Pad().Zeros(64).ToArray(), null, "overlaps");
        Assert.True(e.Offset > Header);
    }

    [Theory]
    [InlineData(4ul)]
    [InlineData(33ul)]
    [InlineData(48ul)]
    public void A_tensor_offset_that_is_not_a_multiple_of_the_alignment_is_refused_at_its_offset_field(ulong offset)
    {
        var b = new GgufBytes().Header(1, 0).Tensor("w", [1], GgmlType.F32, offset, out long offsetAt);
        Rejects(b.Pad().Zeros(128).ToArray(), offsetAt, "alignment");
    }

    [Fact]
    public void A_tensor_aligned_to_a_custom_alignment_reads_and_one_off_it_is_refused()
    {
        var good = new GgufBytes().Header(2, 1).KeyU32("general.alignment", 8).Tensor("a", [1], GgmlType.F32, 0).Tensor("b", [1], GgmlType.F32, 8);
        string path = Write(good.Pad(8).Zeros(16).ToArray());
        using (var file = GgufFile.Open(path))
            Assert.Equal(8, file.RequireTensor("b").Offset);

        var bad = new GgufBytes().Header(2, 1).KeyU32("general.alignment", 8).Tensor("a", [1], GgmlType.F32, 0).Tensor("b", [1], GgmlType.F32, 12, out long offsetAt);
        Rejects(bad.Pad(8).Zeros(16).ToArray(), offsetAt, "alignment 8");
    }

    // ---- paths ----

    [Fact]
    public void A_missing_file_is_a_file_not_found_error_naming_it()
    {
        string path = _temp.File("nope.gguf");
        var e = Assert.Throws<FileNotFoundException>(() => Open(path));
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void A_directory_is_refused_with_a_format_error_naming_it()
    {
        string path = _temp.File("model.gguf");
        Directory.CreateDirectory(path);
        var e = Assert.Throws<ModelFormatException>(() => Open(path));
        Assert.Equal(path, e.FilePath);
        Assert.Contains("directory", e.Problem);
    }

    // ---- atomic writes ----

    [Fact]
    public void A_write_that_fails_midway_leaves_the_previous_file_intact_and_no_temp_file()
    {
        string path = _temp.File("model.gguf");
        new GgufWriter().Set("general.name", "first").AddTensor("w", [4], [1, 2, 3, 4]).Write(path);
        byte[] before = File.ReadAllBytes(path);

        var failing = new GgufWriter().Set("general.name", "second")
            .AddTensor("a", [4], [5, 6, 7, 8])
            .AddTensor("b", GgmlType.F32, [4], new FailingMemory(16).Memory);
        var e = Assert.Throws<IOException>(() => failing.Write(path));
        Assert.Contains("source went away", e.Message);

        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Equal([path], Directory.GetFiles(_temp.Path));
    }

    [Fact]
    public void A_write_whose_final_rename_fails_leaves_no_temp_file()
    {
        string path = _temp.File("occupied");
        Directory.CreateDirectory(path);
        Assert.ThrowsAny<IOException>(() => new GgufWriter().AddTensor("w", [4], [1, 2, 3, 4]).Write(path));
        Assert.Empty(Directory.GetFiles(_temp.Path));
        Assert.True(Directory.Exists(path));
    }

    [Fact]
    public void The_writer_refuses_a_tensor_name_llama_cpp_could_not_load()
    {
        var e = Assert.Throws<ArgumentException>(() => new GgufWriter().AddTensor(new string('x', 64), [1], [1f]));
        Assert.Contains("63", e.Message);
    }

    // ---- helpers ----

    /// <summary>A GGUF with several metadata types and two tensors whose data needs trailing padding.</summary>
    private static byte[] SmallValidFile()
    {
        var writer = new GgufWriter()
            .Set("general.architecture", "llama")
            .Set("llama.block_count", 2u)
            .Set("flag", true)
            .Set("scores", GgufValue.FromArray(new float[] { 0.5f, -1 }))
            .Set("tokens", GgufValue.FromArray(new[] { "a", "bc" }))
            .Set("nested", GgufValue.FromArray(new[] { GgufValue.FromArray(new short[] { 1 }) }));
        writer.AddTensor("a", [3, 2], [1, 2, 3, 4, 5, 6]);
        writer.AddTensor("b", GgmlType.F16, [5], new byte[10]);
        var stream = new MemoryStream();
        writer.Write(stream);
        return stream.ToArray();
    }

    private string Write(byte[] bytes)
    {
        string path = _temp.File("bad.gguf");
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static void Open(string path)
    {
        using var file = GgufFile.Open(path);
    }

    /// <summary>Asserts the bytes are refused with the file named and, when given, the offset and problem text.</summary>
    private ModelFormatException Rejects(byte[] bytes, long? offset, string problem)
    {
        string path = Write(bytes);
        var e = Assert.Throws<ModelFormatException>(() => Open(path));
        Assert.Equal(path, e.FilePath);
        Assert.StartsWith(path + ": at byte ", e.Message, StringComparison.Ordinal);
        if (offset is long expected)
        {
            Assert.True(expected == e.Offset, $"expected offset {expected}, got {e.Offset}: {e.Message}");
            Assert.Contains($"at byte {expected}:", e.Message);
        }
        Assert.Contains(problem, e.Problem, StringComparison.OrdinalIgnoreCase);
        return e;
    }

    /// <summary>Memory whose contents cannot be read: stands in for a data source that fails mid-write.</summary>
    private sealed class FailingMemory(int length) : MemoryManager<byte>
    {
        public override Span<byte> GetSpan() => throw new IOException("source went away");

        public override MemoryHandle Pin(int elementIndex = 0) => throw new IOException("source went away");

        public override void Unpin() { }

        protected override void Dispose(bool disposing) { }

        public override Memory<byte> Memory => CreateMemory(length);
    }
}
