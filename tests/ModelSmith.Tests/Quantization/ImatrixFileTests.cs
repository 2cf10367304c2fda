using System.Buffers.Binary;
using System.Text;
using ModelSmith.Formats;
using ModelSmith.Quantization;

namespace ModelSmith.Tests.Quantization;

/// <summary>llama.cpp's two imatrix file formats: round trips, the exact legacy byte layout, the values
/// llama-quantize derives from each, and damaged files.</summary>
public class ImatrixFileTests
{
    [Fact]
    public void A_gguf_imatrix_round_trips_entries_counts_datasets_and_chunks()
    {
        using var dir = new TempDirectory();
        var m = new ImportanceMatrix { ChunkCount = 12, ChunkSize = 256 };
        m.Datasets.Add("a.txt");
        m.Datasets.Add("b.jsonl.gz");
        m.Set("blk.0.attn_q.weight", new ImatrixEntry([1f, 2.5f, 0f], [3072], [0.1f, -0.2f, 0f]));
        m.Set("blk.1.ffn_down_exps.weight", new ImatrixEntry([1f, 2f, 3f, 4f], [7, 0]));
        m.SaveGguf(dir.File("m.gguf"));

        ImportanceMatrix read = ImportanceMatrix.Load(dir.File("m.gguf"));
        Assert.False(read.IsLegacy);
        Assert.Equal(new[] { "a.txt", "b.jsonl.gz" }, read.Datasets);
        Assert.Equal(12, read.ChunkCount);
        Assert.Equal(256, read.ChunkSize);
        Assert.Equal(new[] { "blk.0.attn_q.weight", "blk.1.ffn_down_exps.weight" }, read.Entries.Keys);
        ImatrixEntry q = read.Entries["blk.0.attn_q.weight"];
        Assert.Equal(new[] { 1f, 2.5f, 0f }, q.SumSquares);
        Assert.Equal(new long[] { 3072 }, q.Counts);
        Assert.Equal(new[] { 0.1f, -0.2f, 0f }, q.Sums);
        ImatrixEntry experts = read.Entries["blk.1.ffn_down_exps.weight"];
        Assert.Equal(2, experts.Columns);
        Assert.Equal(new long[] { 7, 0 }, experts.Counts);
        Assert.Null(experts.Sums);

        using GgufFile file = GgufFile.Open(dir.File("m.gguf"));
        Assert.Equal("imatrix", file.GetString("general.type"));
        Assert.Equal(new long[] { 3 }, file.RequireTensor("blk.0.attn_q.weight.in_sum2").Shape);
        Assert.Equal(new long[] { 1 }, file.RequireTensor("blk.0.attn_q.weight.counts").Shape);
        Assert.Equal(new long[] { 2, 2 }, file.RequireTensor("blk.1.ffn_down_exps.weight.in_sum2").Shape);
        Assert.Equal(new long[] { 1, 2 }, file.RequireTensor("blk.1.ffn_down_exps.weight.counts").Shape);
        Assert.Equal(
            new[] { "blk.0.attn_q.weight.in_sum2", "blk.0.attn_q.weight.counts", "blk.0.attn_q.weight.in_sum", "blk.1.ffn_down_exps.weight.in_sum2", "blk.1.ffn_down_exps.weight.counts" },
            file.Tensors.Select(t => t.Name));
    }

    [Fact]
    public void Mean_squares_divide_by_the_count_and_give_ones_where_no_token_came()
    {
        var m = new ImportanceMatrix { ChunkSize = 4 };
        m.Set("w", new ImatrixEntry([8f, 4f, 30f, 60f], [4, 0]));
        Assert.Equal(new[] { 2f, 1f, 1f, 1f }, m.MeanSquares("w"));
        Assert.Null(m.MeanSquares("missing"));
    }

    [Fact]
    public void The_legacy_format_is_written_byte_for_byte_as_llama_imatrix_writes_it()
    {
        using var dir = new TempDirectory();
        var m = new ImportanceMatrix { ChunkCount = 3, ChunkSize = 2 };
        m.Datasets.Add("old.txt");
        m.Datasets.Add("calib.txt");
        m.Set("b", new ImatrixEntry([2f, 4f], [4]));
        m.Set("a", new ImatrixEntry([9f], [3]));
        m.Set("z", new ImatrixEntry([5f], [0]));
        m.SaveLegacy(dir.File("m.dat"));

        var expected = new List<byte>();
        void Int(int v) => expected.AddRange(BitConverter.GetBytes(v));
        void Float(float v) => expected.AddRange(BitConverter.GetBytes(v));
        Int(2);                                         // entries ("z" has no data and is left out)
        Int(1); expected.Add((byte)'a'); Int(2); Int(1); Float(9f / 3 * 2);      // ncall = ceil(3/2) = 2; value = mean·ncall
        Int(1); expected.Add((byte)'b'); Int(2); Int(2); Float(2f / 4 * 2); Float(4f / 4 * 2);
        Int(3);                                         // chunks
        Int(9); expected.AddRange(Encoding.UTF8.GetBytes("calib.txt"));
        Assert.Equal(expected.ToArray(), File.ReadAllBytes(dir.File("m.dat")));
    }

    [Fact]
    public void A_legacy_file_reads_back_with_ncall_counts_and_means_divided_by_ncall()
    {
        using var dir = new TempDirectory();
        byte[] bytes = Legacy(("blk.0.attn_k.weight", 4, [8f, 12f]), ("blk.0.ffn_down.weight", 0, [3f]));
        File.WriteAllBytes(dir.File("m.dat"), [.. bytes, .. BitConverter.GetBytes(17), .. BitConverter.GetBytes(4), .. "wiki"u8.ToArray()]);
        ImportanceMatrix m = ImportanceMatrix.Load(dir.File("m.dat"));
        Assert.True(m.IsLegacy);
        Assert.Equal(17, m.ChunkCount);
        Assert.Equal(new[] { "wiki" }, m.Datasets);
        Assert.Equal(new long[] { 4 }, m.Entries["blk.0.attn_k.weight"].Counts);
        Assert.Equal(new[] { 2f, 3f }, m.MeanSquares("blk.0.attn_k.weight"));
        Assert.Equal(new[] { 3f }, m.MeanSquares("blk.0.ffn_down.weight"));

        ImportanceMatrix stats = m.ToStatistics(512);
        Assert.False(stats.IsLegacy);
        Assert.Equal(512, stats.ChunkSize);
        Assert.Equal(new long[] { 4 * 512 }, stats.Entries["blk.0.attn_k.weight"].Counts);
        Assert.Equal(new[] { 2f, 3f }, stats.MeanSquares("blk.0.attn_k.weight"));
    }

    [Fact]
    public void A_legacy_file_without_the_trailer_reads_with_no_chunk_count()
    {
        using var dir = new TempDirectory();
        File.WriteAllBytes(dir.File("m.dat"), Legacy(("w", 2, [1f])));
        ImportanceMatrix m = ImportanceMatrix.Load(dir.File("m.dat"));
        Assert.Equal(0, m.ChunkCount);
        Assert.Empty(m.Datasets);
    }

    [Fact]
    public void Converting_between_the_formats_keeps_the_means()
    {
        using var dir = new TempDirectory();
        var m = new ImportanceMatrix { ChunkCount = 2, ChunkSize = 64 };
        m.Set("blk.0.attn_v.weight", new ImatrixEntry([12.8f, 0.64f], [128]));
        m.Save(dir.File("m.dat"));
        ImportanceMatrix legacy = ImportanceMatrix.Load(dir.File("m.dat"));
        legacy.Save(dir.File("m.gguf"));
        ImportanceMatrix back = ImportanceMatrix.Load(dir.File("m.gguf"));
        Assert.Equal(m.MeanSquares("blk.0.attn_v.weight"), legacy.MeanSquares("blk.0.attn_v.weight"));
        Assert.Equal(m.MeanSquares("blk.0.attn_v.weight"), back.MeanSquares("blk.0.attn_v.weight"));
    }

    [Fact]
    public void Accumulating_adds_sums_and_counts_and_takes_new_entries()
    {
        var a = new ImportanceMatrix { ChunkSize = 10, ChunkCount = 1 };
        a.Set("w", new ImatrixEntry([1f, 2f], [10], [0.5f, 0.5f]));
        a.Datasets.Add("a");
        var b = new ImportanceMatrix { ChunkSize = 10, ChunkCount = 2 };
        b.Set("w", new ImatrixEntry([3f, 4f], [20], [1f, 1f]));
        b.Set("v", new ImatrixEntry([5f], [20]));
        b.Datasets.Add("b");
        a.Accumulate(b);
        Assert.Equal(new[] { 4f, 6f }, a.Entries["w"].SumSquares);
        Assert.Equal(new long[] { 30 }, a.Entries["w"].Counts);
        Assert.Equal(new[] { 1.5f, 1.5f }, a.Entries["w"].Sums);
        Assert.Equal(new[] { 5f }, a.Entries["v"].SumSquares);
        Assert.Equal(new[] { "a", "b" }, a.Datasets);
        Assert.Equal(3, a.ChunkCount);
    }

    [Fact]
    public void A_truncated_legacy_file_is_refused_with_the_offset()
    {
        using var dir = new TempDirectory();
        byte[] bytes = Legacy(("blk.0.attn_q.weight", 1, [1f, 2f, 3f]));
        File.WriteAllBytes(dir.File("m.dat"), bytes[..^5]);
        var e = Assert.Throws<ModelFormatException>(() => ImportanceMatrix.Load(dir.File("m.dat")));
        Assert.Contains("claims 3 values", e.Message, StringComparison.Ordinal);
        Assert.Equal(4 + 4 + 19 + 4, e.Offset);
    }

    [Fact]
    public void A_file_that_is_no_imatrix_is_refused_clearly()
    {
        using var dir = new TempDirectory();
        File.WriteAllBytes(dir.File("empty.dat"), BitConverter.GetBytes(0));
        Assert.Contains("at least one entry", Assert.Throws<ModelFormatException>(() => ImportanceMatrix.Load(dir.File("empty.dat"))).Message, StringComparison.Ordinal);
        File.WriteAllBytes(dir.File("tiny.dat"), [1, 2]);
        Assert.Contains("truncated", Assert.Throws<ModelFormatException>(() => ImportanceMatrix.Load(dir.File("tiny.dat"))).Message, StringComparison.Ordinal);
        Assert.Contains("model file", Assert.Throws<ModelFormatException>(() => ImportanceMatrix.Load(RepoPaths.Stories260K)).Message, StringComparison.Ordinal);
        Assert.Throws<FileNotFoundException>(() => ImportanceMatrix.Load(dir.File("missing.gguf")));
    }

    [Fact]
    public void A_gguf_imatrix_with_mismatched_or_non_f32_tensors_is_refused()
    {
        using var dir = new TempDirectory();
        var writer = new GgufWriter();
        writer.Set("general.type", "imatrix");
        writer.Set("imatrix.datasets", GgufValue.FromArray(new[] { "x" }));
        writer.Set("imatrix.chunk_count", 1u);
        writer.Set("imatrix.chunk_size", 512u);
        writer.AddTensor("w.in_sum2", [4], [1f, 2f, 3f, 4f]);
        writer.Write(dir.File("nocounts.gguf"));
        Assert.Contains("mismatched sums and counts", Assert.Throws<ModelFormatException>(() => ImportanceMatrix.Load(dir.File("nocounts.gguf"))).Message, StringComparison.Ordinal);

        writer.AddTensor("w.counts", GgmlType.F16, [1], new byte[2]);
        writer.Write(dir.File("f16.gguf"));
        Assert.Contains("must be F32", Assert.Throws<ModelFormatException>(() => ImportanceMatrix.Load(dir.File("f16.gguf"))).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_output_format_follows_the_file_name()
    {
        using var dir = new TempDirectory();
        var m = new ImportanceMatrix { ChunkSize = 8, ChunkCount = 1 };
        m.Set("w", new ImatrixEntry([1f], [8]));
        m.Save(dir.File("x.dat"));
        m.Save(dir.File("x.imatrix"));
        Assert.NotEqual(GgufFile.Magic, BinaryPrimitives.ReadUInt32LittleEndian(File.ReadAllBytes(dir.File("x.dat"))));
        Assert.Equal(GgufFile.Magic, BinaryPrimitives.ReadUInt32LittleEndian(File.ReadAllBytes(dir.File("x.imatrix"))));
    }

    /// <summary>Legacy entries without the trailer: count, then per entry name length, name, ncall, value count, values.</summary>
    private static byte[] Legacy(params (string Name, int Ncall, float[] Values)[] entries)
    {
        var bytes = new List<byte>(BitConverter.GetBytes(entries.Length));
        foreach ((string name, int ncall, float[] values) in entries)
        {
            byte[] n = Encoding.UTF8.GetBytes(name);
            bytes.AddRange(BitConverter.GetBytes(n.Length));
            bytes.AddRange(n);
            bytes.AddRange(BitConverter.GetBytes(ncall));
            bytes.AddRange(BitConverter.GetBytes(values.Length));
            foreach (float v in values)
            {
                bytes.AddRange(BitConverter.GetBytes(v));
            }
        }
        return bytes.ToArray();
    }
}
