using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using ModelSmith.Formats;

namespace ModelSmith.Tests.Formats;

public sealed class SafetensorsTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    /// <summary>u64 little-endian header length, the header text, then the data.</summary>
    internal static byte[] Layout(string header, byte[] data, ulong? declaredLength = null)
    {
        byte[] json = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + json.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, declaredLength ?? (ulong)json.Length);
        json.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + json.Length);
        return bytes;
    }

    private static byte[] Floats(params float[] values) => MemoryMarshal.AsBytes(values.AsSpan()).ToArray();

    private static byte[] Pattern(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    private byte[] WriteAndRead(SafetensorsWriter writer, string name = "model.safetensors")
    {
        string path = _temp.File(name);
        writer.Write(path);
        return File.ReadAllBytes(path);
    }

    [Fact]
    public void The_layout_from_the_reference_documentation_reads_as_one_int32_tensor()
    {
        // The example of huggingface/safetensors: an unpadded 60-byte header and 16 zero bytes.
        string path = _temp.File("doc.safetensors");
        File.WriteAllBytes(path, Layout("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", new byte[16]));
        using var file = SafetensorsFile.Open(path);
        Assert.Equal(60, file.HeaderLength);
        Assert.Equal(68, file.DataOffset);
        Assert.Empty(file.Metadata);
        SafetensorsTensorInfo t = Assert.Single(file.Tensors);
        Assert.Equal(("test", SafetensorsDtype.I32, 0L, 16L), (t.Name, t.Dtype, t.Begin, t.End));
        Assert.Equal(new long[] { 2, 2 }, t.Shape);
        Assert.Equal(4, t.ElementCount);
        Assert.Equal(new byte[16], file.GetTensorData(t).ToArray());
    }

    [Fact]
    public void A_hand_built_file_reads_correctly_and_the_writer_reproduces_it_byte_for_byte()
    {
        // Per the spec: metadata first, then tensors by dtype rank descending (F32 before F16 before U8) and
        // name, data packed in that order, header padded with spaces to a multiple of 8.
        string json = "{\"__metadata__\":{\"format\":\"pt\"},"
            + "\"b.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
            + "\"a.bias\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[24,30]},"
            + "\"mask\":{\"dtype\":\"U8\",\"shape\":[1,2],\"data_offsets\":[30,32]}}";
        Assert.Equal(214, json.Length);
        string header = json + "  ";
        byte[] weight = Floats(1, 2, 3, 4, 5, 6);
        byte[] bias = [0x00, 0x3C, 0x00, 0x40, 0x00, 0xC0]; // 1, 2, -2 in F16
        byte[] mask = [1, 0];
        byte[] expected = Layout(header, [.. weight, .. bias, .. mask]);

        string path = _temp.File("hand.safetensors");
        File.WriteAllBytes(path, expected);
        using (var file = SafetensorsFile.Open(path))
        {
            Assert.Equal(216, file.HeaderLength);
            Assert.Equal("pt", file.Metadata["format"]);
            Assert.Equal(["b.weight", "a.bias", "mask"], file.Tensors.Select(t => t.Name));
            SafetensorsTensorInfo w = file.RequireTensor("b.weight");
            Assert.Equal(new long[] { 2, 3 }, w.Shape);
            Assert.Equal(new float[] { 1, 2, 3, 4, 5, 6 }, MemoryMarshal.Cast<byte, float>(file.GetTensorData(w).Span).ToArray());
            Assert.Equal(bias, file.GetTensorData(file.RequireTensor("a.bias")).ToArray());
            Assert.Equal(SafetensorsDtype.U8, file.RequireTensor("mask").Dtype);
        }

        var writer = new SafetensorsWriter()
            .SetMetadata("format", "pt")
            .AddTensor("mask", SafetensorsDtype.U8, [1, 2], mask)
            .AddTensor("a.bias", SafetensorsDtype.F16, [3], bias)
            .AddTensor("b.weight", [2, 3], [1, 2, 3, 4, 5, 6]);
        Assert.Equal(expected, WriteAndRead(writer));
    }

    [Fact]
    public void The_writer_matches_the_reference_serialization_of_one_f32_tensor()
    {
        // huggingface/safetensors serializes {"attn.0": F32 [1, 2, 3] of 0..5} to a 64-byte header with no padding.
        byte[] data = Floats(0, 1, 2, 3, 4, 5);
        byte[] expected = Layout("{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}", data);
        Assert.Equal(64ul, BinaryPrimitives.ReadUInt64LittleEndian(expected));
        Assert.Equal(expected, WriteAndRead(new SafetensorsWriter().AddTensor("attn.0", [1, 2, 3], [0, 1, 2, 3, 4, 5])));
    }

    [Fact]
    public void Tensors_are_laid_out_by_dtype_rank_descending_then_by_name_bytes()
    {
        var writer = new SafetensorsWriter();
        (string Name, SafetensorsDtype Dtype)[] inputs =
        [
            ("z", SafetensorsDtype.BOOL), ("b", SafetensorsDtype.F16), ("a", SafetensorsDtype.F32), ("c", SafetensorsDtype.U8),
            ("a16", SafetensorsDtype.F16), ("B", SafetensorsDtype.F16), ("i", SafetensorsDtype.I64), ("u", SafetensorsDtype.U64),
            ("d", SafetensorsDtype.F64), ("h", SafetensorsDtype.BF16), ("\u00e9", SafetensorsDtype.F16), ("\U0001F600", SafetensorsDtype.F16),
            ("\uFF21", SafetensorsDtype.F16),
        ];
        foreach (var (name, dtype) in inputs)
            writer.AddTensor(name, dtype, [2], new byte[2 * SafetensorsDtypeInfo.BitSize(dtype) / 8]);
        string path = _temp.File("order.safetensors");
        writer.Write(path);
        using var file = SafetensorsFile.Open(path);
        // U64 > I64 > F64 > F32 > BF16 > F16 > U8 > BOOL; among F16 names, byte order puts U+FF21 before U+1F600
        // (EF BC A1 < F0 9F 98 80) although UTF-16 order would not.
        Assert.Equal(["u", "i", "d", "a", "h", "B", "a16", "b", "\u00e9", "\uFF21", "\U0001F600", "c", "z"], file.Tensors.Select(t => t.Name));
    }

    [Fact]
    public void Every_dtype_round_trips_and_a_rewrite_is_byte_identical()
    {
        var writer = new SafetensorsWriter().SetMetadata("format", "pt").SetMetadata("note", "every dtype");
        var expected = new Dictionary<string, (SafetensorsDtype, long[], byte[])>();
        int seed = 0;
        foreach (SafetensorsDtype dtype in Enum.GetValues<SafetensorsDtype>())
        {
            long[] shape = SafetensorsDtypeInfo.BitSize(dtype) switch { 4 => [2, 3], 6 => [4], _ => [3, 2] };
            long elements = shape.Aggregate(1L, (a, b) => a * b);
            byte[] data = Pattern((int)(elements * SafetensorsDtypeInfo.BitSize(dtype) / 8), seed++);
            string name = "t." + SafetensorsDtypeInfo.Name(dtype).ToLowerInvariant();
            writer.AddTensor(name, dtype, shape, data);
            expected[name] = (dtype, shape, data);
        }
        string path = _temp.File("all.safetensors");
        writer.Write(path);

        using (var file = SafetensorsFile.Open(path))
        {
            Assert.Equal(0, file.HeaderLength % 8);
            Assert.Equal(["format", "note"], file.MetadataKeys);
            Assert.Equal("every dtype", file.Metadata["note"]);
            Assert.Equal(expected.Count, file.Tensors.Count);
            foreach (SafetensorsTensorInfo t in file.Tensors)
            {
                var (dtype, shape, data) = expected[t.Name];
                Assert.Equal(dtype, t.Dtype);
                Assert.Equal(shape, t.Shape);
                Assert.Equal(data, file.GetTensorData(t).ToArray());
            }
            string again = _temp.File("again.safetensors");
            SafetensorsWriter.From(file).Write(again);
            Assert.Equal(File.ReadAllBytes(path), File.ReadAllBytes(again));
        }
    }

    [Fact]
    public void Scalars_zero_size_tensors_and_an_empty_file_round_trip()
    {
        var writer = new SafetensorsWriter()
            .AddTensor("scalar", [], [42f])
            .AddTensor("empty", SafetensorsDtype.F32, [0, 4], ReadOnlyMemory<byte>.Empty)
            .AddTensor("also.empty", SafetensorsDtype.I8, [3, 0], ReadOnlyMemory<byte>.Empty);
        string path = _temp.File("edge.safetensors");
        writer.Write(path);
        using (var file = SafetensorsFile.Open(path))
        {
            SafetensorsTensorInfo scalar = file.RequireTensor("scalar");
            Assert.Empty(scalar.Shape);
            Assert.Equal(1, scalar.ElementCount);
            Assert.Equal(42f, MemoryMarshal.Read<float>(file.GetTensorData(scalar).Span));
            Assert.Equal(0, file.GetTensorData(file.RequireTensor("empty")).Length);
            Assert.Equal(new long[] { 3, 0 }, file.RequireTensor("also.empty").Shape);
        }

        byte[] empty = WriteAndRead(new SafetensorsWriter(), "empty.safetensors");
        Assert.Equal(Layout("{}      ", []), empty);
        using var none = SafetensorsFile.Open(_temp.File("empty.safetensors"));
        Assert.Empty(none.Tensors);
    }

    [Fact]
    public void Names_and_metadata_are_escaped_as_serde_json_escapes_them_and_read_back_unchanged()
    {
        const string name = "q\"b\\s/l\nn\tt\u0001\u001f\u007f<&>+'é🎉";
        const string escaped = "q\\\"b\\\\s/l\\nn\\tt\\u0001\\u001f\u007f<&>+'é🎉";
        var writer = new SafetensorsWriter().SetMetadata("k\r\b\f", "v\u0000").AddTensor(name, [1], [1f]);
        byte[] bytes = WriteAndRead(writer);
        string header = Encoding.UTF8.GetString(bytes, 8, (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes));
        Assert.StartsWith("{\"__metadata__\":{\"k\\r\\b\\f\":\"v\\u0000\"},\"" + escaped + "\":{", header, StringComparison.Ordinal);

        using var file = SafetensorsFile.Open(_temp.File("model.safetensors"));
        Assert.Equal(name, Assert.Single(file.Tensors).Name);
        Assert.Equal("v\u0000", file.Metadata["k\r\b\f"]);
    }

    [Fact]
    public void Tensors_may_be_listed_in_any_order_and_with_extra_members_and_escaped_keys()
    {
        string json = "{\"b\":{\"data_offsets\":[8,12],\"shape\":[1],\"dtype\":\"F32\",\"note\":{\"x\":[1,{}]}},"
            + "\"__metadata__\":null,"
            + "\"a\":{\"\\u0064type\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
        string path = _temp.File("loose.safetensors");
        File.WriteAllBytes(path, Layout(json, Floats(1, 2, 3)));
        using var file = SafetensorsFile.Open(path);
        Assert.Equal(["a", "b"], file.Tensors.Select(t => t.Name));
        Assert.Equal(new float[] { 3 }, MemoryMarshal.Cast<byte, float>(file.GetTensorData(file.RequireTensor("b")).Span).ToArray());
        Assert.Empty(file.Metadata);
    }

    [Fact]
    public void The_same_inputs_always_give_the_same_bytes()
    {
        static SafetensorsWriter Build() => new SafetensorsWriter().SetMetadata("b", "2").SetMetadata("a", "1")
            .AddTensor("y", [2], [1, 2]).AddTensor("x", SafetensorsDtype.BF16, [2], new byte[4]);
        Assert.Equal(WriteAndRead(Build(), "one.safetensors"), WriteAndRead(Build(), "two.safetensors"));
    }

    [Fact]
    public void Tensor_data_is_mapped_without_copying_and_only_for_tensors_of_that_file()
    {
        string path = _temp.File("m.safetensors");
        new SafetensorsWriter().AddTensor("w", [2], [1, 2]).Write(path);
        using var file = SafetensorsFile.Open(path);
        SafetensorsTensorInfo w = file.RequireTensor("w");
        Assert.False(MemoryMarshal.TryGetArray(file.GetTensorData(w), out _));
        Assert.Throws<ArgumentException>(() => file.GetTensorData(w with { End = 1 << 20 }));
        Assert.Null(file.FindTensor("v"));
        var e = Assert.Throws<ModelFormatException>(() => file.RequireTensor("v"));
        Assert.Contains("'v' is missing", e.Message);
    }

    [Theory]
    [InlineData(SafetensorsDtype.F32, GgmlType.F32)]
    [InlineData(SafetensorsDtype.F16, GgmlType.F16)]
    [InlineData(SafetensorsDtype.BF16, GgmlType.BF16)]
    [InlineData(SafetensorsDtype.I8, GgmlType.I8)]
    [InlineData(SafetensorsDtype.F64, GgmlType.F64)]
    public void Shared_element_types_map_to_their_ggml_type(SafetensorsDtype dtype, GgmlType expected)
    {
        Assert.True(SafetensorsDtypeInfo.TryGetGgmlType(dtype, out GgmlType type));
        Assert.Equal(expected, type);
        Assert.Equal(SafetensorsDtypeInfo.BitSize(dtype), 8 * GgmlTypeInfo.TypeSize(type));
    }

    [Fact]
    public void Types_ggml_lacks_have_no_ggml_type()
    {
        Assert.False(SafetensorsDtypeInfo.TryGetGgmlType(SafetensorsDtype.U8, out _));
        Assert.False(SafetensorsDtypeInfo.TryGetGgmlType(SafetensorsDtype.F8_E4M3, out _));
    }

    [Fact]
    public void The_writer_refuses_inputs_that_would_make_a_bad_file()
    {
        var w = new SafetensorsWriter();
        Assert.Throws<ArgumentException>(() => w.AddTensor("a", SafetensorsDtype.F32, [3], new byte[8]));
        Assert.Throws<ArgumentException>(() => w.AddTensor("__metadata__", [1], [1f]));
        Assert.Throws<ArgumentException>(() => w.AddTensor("bad\ud800", [1], [1f]));
        Assert.Throws<ArgumentException>(() => w.SetMetadata("k", "bad\udc00"));
        Assert.Throws<ArgumentException>(() => w.AddTensor("f4", SafetensorsDtype.F4, [3], new byte[2]));
        Assert.Throws<ArgumentException>(() => w.AddTensor("neg", SafetensorsDtype.F32, [-1], ReadOnlyMemory<byte>.Empty));
        Assert.Throws<ArgumentException>(() => w.AddTensor("huge", SafetensorsDtype.F32, [1L << 40, 1L << 40], ReadOnlyMemory<byte>.Empty));
        w.AddTensor("a", [1], [1f]);
        Assert.Throws<ArgumentException>(() => w.AddTensor("a", [1], [1f]));
    }

    [Fact]
    public void A_write_that_fails_midway_leaves_the_previous_file_intact_and_no_temp_file()
    {
        string path = _temp.File("model.safetensors");
        new SafetensorsWriter().AddTensor("w", [2], [1, 2]).Write(path);
        byte[] before = File.ReadAllBytes(path);

        var failing = new SafetensorsWriter().AddTensor("a", [2], [3, 4]).AddTensor("b", SafetensorsDtype.F32, [4], new FailingMemory(16).Memory);
        Assert.Throws<IOException>(() => failing.Write(path));

        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Equal([path], Directory.GetFiles(_temp.Path));
    }

    private sealed class FailingMemory(int length) : System.Buffers.MemoryManager<byte>
    {
        public override Span<byte> GetSpan() => throw new IOException("source went away");

        public override System.Buffers.MemoryHandle Pin(int elementIndex = 0) => throw new IOException("source went away");

        public override void Unpin() { }

        protected override void Dispose(bool disposing) { }

        public override Memory<byte> Memory => CreateMemory(length);
    }
}
