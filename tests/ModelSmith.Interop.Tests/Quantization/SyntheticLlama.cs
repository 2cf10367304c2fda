using ModelSmith.Formats;

namespace ModelSmith.Interop.Tests.Quantization;

/// <summary>
/// A small F32 Llama GGUF that llama.cpp's quantizer accepts, with every matrix row a multiple of 256
/// values so that every block type applies to every tensor, and each matrix drawn from a different
/// <see cref="WeightPattern"/>. The tokenizer and its keys come from the bundled stories260K; the
/// hyperparameters are replaced to match the new shapes (dim 256, 4 heads of 64, 2 KV heads, FFN 768).
/// </summary>
internal static class SyntheticLlama
{
    public const int Embedding = 256;
    public const int FeedForward = 768;
    public const int Layers = 2;
    public const int Heads = 4;
    public const int KvHeads = 2;

    /// <summary>Writes the model to <paramref name="path"/> and returns its matrices by tensor name, each
    /// (rows, cols) row-major with cols = ne0.</summary>
    public static Dictionary<string, (float[] Values, int Rows, int Cols)> Write(string path)
    {
        using var stories = GgufFile.Open(RepoPaths.Stories260K);
        int vocab = checked((int)stories.RequireTensor("token_embd.weight").Rows);
        var writer = new GgufWriter();
        foreach (string key in stories.MetadataKeys)
        {
            writer.Set(key, stories.Metadata[key]);
        }
        writer.Set("general.name", "synthetic-quantization-oracle");
        writer.Set("general.file_type", 0u);
        writer.Set("llama.context_length", 256u);
        writer.Set("llama.embedding_length", (uint)Embedding);
        writer.Set("llama.block_count", (uint)Layers);
        writer.Set("llama.feed_forward_length", (uint)FeedForward);
        writer.Set("llama.rope.dimension_count", (uint)(Embedding / Heads));
        writer.Set("llama.attention.head_count", (uint)Heads);
        writer.Set("llama.attention.head_count_kv", (uint)KvHeads);

        var matrices = new Dictionary<string, (float[] Values, int Rows, int Cols)>(StringComparer.Ordinal);
        int kvDim = Embedding / Heads * KvHeads;
        int seed = 0;
        void Matrix(string name, int rows, int cols, WeightPattern pattern)
        {
            float[] values = WeightPatterns.Make(pattern, rows, cols, seed: ++seed);
            writer.AddTensor(name, [cols, rows], values);
            matrices[name] = (values, rows, cols);
        }
        void Norm(string name) => writer.AddTensor(name, [Embedding], Enumerable.Repeat(1f, Embedding).ToArray());

        Matrix("token_embd.weight", vocab, Embedding, WeightPattern.Normal);
        WeightPattern[] patterns = WeightPatterns.All;
        int next = 1;
        WeightPattern Next() => patterns[next++ % patterns.Length];
        for (int l = 0; l < Layers; l++)
        {
            string p = $"blk.{l}.";
            Norm(p + "attn_norm.weight");
            Matrix(p + "attn_q.weight", Embedding, Embedding, Next());
            Matrix(p + "attn_k.weight", kvDim, Embedding, Next());
            Matrix(p + "attn_v.weight", kvDim, Embedding, Next());
            Matrix(p + "attn_output.weight", Embedding, Embedding, Next());
            Norm(p + "ffn_norm.weight");
            Matrix(p + "ffn_gate.weight", FeedForward, Embedding, Next());
            Matrix(p + "ffn_up.weight", FeedForward, Embedding, Next());
            Matrix(p + "ffn_down.weight", Embedding, FeedForward, Next());
        }
        Norm("output_norm.weight");
        Matrix("output.weight", vocab, Embedding, Next());
        writer.Write(path);
        return matrices;
    }
}
