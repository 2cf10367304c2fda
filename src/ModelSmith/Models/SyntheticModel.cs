using System.Runtime.InteropServices;
using ModelSmith.Formats;

namespace ModelSmith.Models;

/// <summary>
/// Random-weight models of any shape, written as complete GGUF files that llama.cpp loads: used to test the
/// engine against llama.cpp across shapes and to benchmark at realistic sizes without downloading weights.
/// Weights are drawn from a seeded normal distribution scaled by 1/√fan-in, so activations keep unit scale
/// and the logits are peaked enough for greedy decoding to be well defined.
/// </summary>
public static class SyntheticModel
{
    /// <summary>
    /// Writes a random model of <paramref name="config"/> with every matrix in <paramref name="weightType"/>: F32, F16,
    /// BF16, or a block type the quantizer supports (llama.cpp's reference quantizer, no importance matrix; every
    /// matrix's row length must then be a multiple of the type's block size).
    /// </summary>
    public static void Write(string path, ModelConfig config, GgmlType weightType = GgmlType.F32, ulong seed = 1)
    {
        ArgumentNullException.ThrowIfNull(config);
        string? problem = config.Validate();
        if (problem != null) throw new ArgumentException(problem, nameof(config));
        if (!Quantization.BlockQuantizer.IsSupported(weightType))
            throw new ArgumentOutOfRangeException(nameof(weightType), weightType, "Synthetic models are written in F32, F16, BF16 or a block type the quantizer supports.");

        var rng = new NormalRandom(seed);
        var writer = new GgufWriter();
        ModelMetadata.SetArchitecture(writer, config, $"synthetic-{config.ArchitectureName}", weightType);
        ModelMetadata.SetPlaceholderVocabulary(writer, config.VocabSize);

        int c = config.EmbeddingLength, f = config.FeedForwardLength, v = config.VocabSize;
        void Matrix(string name, int rows, int cols, float gain = 1f) =>
            AddMatrix(writer, name, rows, cols, weightType, rng, gain / MathF.Sqrt(cols));
        void Norm(string name, int n) => writer.AddTensor(name, [n], rng.Fill(n, 1f, 0.1f));
        void Bias(string name, int n) => writer.AddTensor(name, [n], rng.Fill(n, 0f, 0.1f));

        AddMatrix(writer, "token_embd.weight", v, c, weightType, rng, 0.3f);
        if (config.Architecture == ModelArchitecture.Gpt2)
            AddMatrix(writer, "position_embd.weight", config.ContextLength, c, weightType, rng, 0.5f);
        for (int l = 0; l < config.BlockCount; l++)
        {
            string p = $"blk.{l}.";
            if (config.Architecture == ModelArchitecture.Llama)
            {
                Norm(p + "attn_norm.weight", c);
                Matrix(p + "attn_q.weight", config.QDim, c, 2f);
                Matrix(p + "attn_k.weight", config.KvDim, c, 2f);
                Matrix(p + "attn_v.weight", config.KvDim, c);
                Matrix(p + "attn_output.weight", c, config.QDim, 2f);
                Norm(p + "ffn_norm.weight", c);
                Matrix(p + "ffn_gate.weight", f, c);
                Matrix(p + "ffn_up.weight", f, c);
                Matrix(p + "ffn_down.weight", c, f, 2f);
            }
            else
            {
                Norm(p + "attn_norm.weight", c);
                Bias(p + "attn_norm.bias", c);
                Matrix(p + "attn_qkv.weight", config.QDim + 2 * config.KvDim, c, 2f);
                Bias(p + "attn_qkv.bias", config.QDim + 2 * config.KvDim);
                Matrix(p + "attn_output.weight", c, config.QDim, 2f);
                Bias(p + "attn_output.bias", c);
                Norm(p + "ffn_norm.weight", c);
                Bias(p + "ffn_norm.bias", c);
                Matrix(p + "ffn_up.weight", f, c);
                Bias(p + "ffn_up.bias", f);
                Matrix(p + "ffn_down.weight", c, f, 2f);
                Bias(p + "ffn_down.bias", c);
            }
        }
        Norm("output_norm.weight", c);
        if (config.Architecture == ModelArchitecture.Gpt2) Bias("output_norm.bias", c);
        if (!config.TiedOutput) Matrix("output.weight", v, c, 4f);
        writer.Write(path);
    }

    private static void AddMatrix(GgufWriter writer, string name, int rows, int cols, GgmlType type, NormalRandom rng, float std)
    {
        float[] values = rng.Fill(rows * cols, 0f, std);
        byte[] bytes;
        switch (type)
        {
            case GgmlType.F32:
                bytes = MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
                break;
            case GgmlType.F16:
            {
                var halves = new Half[values.Length];
                for (int i = 0; i < values.Length; i++) halves[i] = (Half)values[i];
                bytes = MemoryMarshal.AsBytes(halves.AsSpan()).ToArray();
                break;
            }
            case GgmlType.BF16:
            {
                // BF16 keeps the top 16 bits of the float, rounded to nearest even.
                var raw = new ushort[values.Length];
                for (int i = 0; i < values.Length; i++)
                {
                    uint bits = BitConverter.SingleToUInt32Bits(values[i]);
                    raw[i] = (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
                }
                bytes = MemoryMarshal.AsBytes(raw.AsSpan()).ToArray();
                break;
            }
            default:
                bytes = new byte[(long)Quantization.BlockQuantizer.RowSize(type, cols) * rows];
                Quantization.BlockQuantizer.Quantize(type, values, rows, cols, bytes);
                break;
        }
        writer.AddTensor(name, type, [cols, rows], bytes);
    }

    /// <summary>Seeded normal draws (Box–Muller over SplitMix64), identical on every machine.</summary>
    private sealed class NormalRandom(ulong seed)
    {
        private ulong _state = seed;

        public float[] Fill(int n, float mean, float std)
        {
            var values = new float[n];
            for (int i = 0; i < n; i++) values[i] = mean + std * Next();
            return values;
        }

        private float Next()
        {
            double u1 = (NextBits() >> 11) * (1.0 / (1UL << 53));
            double u2 = (NextBits() >> 11) * (1.0 / (1UL << 53));
            return (float)(Math.Sqrt(-2 * Math.Log(1 - u1)) * Math.Cos(2 * Math.PI * u2));
        }

        private ulong NextBits()
        {
            ulong z = _state += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }
    }
}
