using ModelSmith.Formats;

namespace ModelSmith.Tests.Formats;

public class GgufRoundTripTests
{
    [Fact]
    public void Stories260K_reads_with_its_architecture_and_tensors()
    {
        using var file = GgufFile.Open(RepoPaths.Stories260K);
        Assert.Equal(3u, file.Version);
        Assert.Equal("llama", file.GetString("general.architecture"));
        Assert.Equal(64, file.GetInteger("llama.embedding_length"));
        Assert.Equal(5, file.GetInteger("llama.block_count"));
        Assert.Equal(512, file.Require("tokenizer.ggml.tokens").ArrayLength);
        GgufTensorInfo embedding = file.RequireTensor("token_embd.weight");
        Assert.Equal(GgmlType.F32, embedding.Type);
        Assert.Equal(new long[] { 64, 512 }, embedding.Shape);
        Assert.Equal(64 * 512 * 4, file.GetTensorData(embedding).Length);
    }

    [Fact]
    public void A_gguf_read_and_written_back_unchanged_is_byte_identical()
    {
        using var temp = new TempDirectory();
        string copy = temp.File("copy.gguf");
        using (var file = GgufFile.Open(RepoPaths.Stories260K))
            GgufWriter.From(file).Write(copy);
        Assert.Equal(File.ReadAllBytes(RepoPaths.Stories260K), File.ReadAllBytes(copy));
    }

    [Fact]
    public void Every_metadata_value_type_survives_a_round_trip_including_nested_arrays()
    {
        using var temp = new TempDirectory();
        var writer = new GgufWriter()
            .Set("general.alignment", 64u)
            .Set("u8", GgufValue.FromUInt8(200)).Set("i8", GgufValue.FromInt8(-100))
            .Set("u16", GgufValue.FromUInt16(60000)).Set("i16", GgufValue.FromInt16(-30000))
            .Set("u32", GgufValue.FromUInt32(4_000_000_000)).Set("i32", GgufValue.FromInt32(-2_000_000_000))
            .Set("u64", GgufValue.FromUInt64(ulong.MaxValue)).Set("i64", GgufValue.FromInt64(long.MinValue))
            .Set("f32", GgufValue.FromFloat32(3.25f)).Set("f64", GgufValue.FromFloat64(-1e300))
            .Set("bool", GgufValue.FromBool(true)).Set("str", GgufValue.FromString("héllo 世界 🎉"))
            .Set("a.u8", GgufValue.FromArray(new byte[] { 1, 2, 3 }))
            .Set("a.i16", GgufValue.FromArray(new short[] { -1, 2 }))
            .Set("a.f32", GgufValue.FromArray(new float[] { 1.5f, -2 }))
            .Set("a.f64", GgufValue.FromArray(new double[] { 1e-9 }))
            .Set("a.i64", GgufValue.FromArray(new long[] { long.MaxValue }))
            .Set("a.bool", GgufValue.FromArray(new[] { true, false }))
            .Set("a.str", GgufValue.FromArray(new[] { "a", "", "ü" }))
            .Set("a.empty", GgufValue.FromArray(Array.Empty<int>()))
            .Set("a.nested", GgufValue.FromArray(new[] { GgufValue.FromArray(new[] { 1, 2 }), GgufValue.FromArray(new[] { "x" }) }));
        writer.AddTensor("t", [3, 2], [1, 2, 3, 4, 5, 6]);
        writer.AddTensor("h", GgmlType.F16, [4], new byte[8]);
        string path = temp.File("all.gguf");
        writer.Write(path);

        using var file = GgufFile.Open(path);
        Assert.Equal(64, file.Alignment);
        Assert.Equal(writer.Keys, file.MetadataKeys);
        foreach (string key in writer.Keys)
            Assert.Equal(writer.Get(key), file.Metadata[key]);
        Assert.Equal(0, file.DataOffset % 64);
        Assert.Equal(64, file.RequireTensor("h").Offset);

        string again = temp.File("again.gguf");
        GgufWriter.From(file).Write(again);
        Assert.Equal(File.ReadAllBytes(path), File.ReadAllBytes(again));
    }

    [Fact]
    public void The_same_inputs_always_give_the_same_bytes()
    {
        using var temp = new TempDirectory();
        static GgufWriter Build() => new GgufWriter().Set("general.architecture", "llama").AddTensor("w", [2, 2], [1, 2, 3, 4]);
        Build().Write(temp.File("a.gguf"));
        Build().Write(temp.File("b.gguf"));
        Assert.Equal(File.ReadAllBytes(temp.File("a.gguf")), File.ReadAllBytes(temp.File("b.gguf")));
    }
}
