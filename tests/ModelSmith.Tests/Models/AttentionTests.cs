using ModelSmith.Inference;
using ModelSmith.Models;
using ModelSmith.Tensors;
using static ModelSmith.Tests.Tensors.KernelTestData;

namespace ModelSmith.Tests.Models;

/// <summary>
/// Causal attention against its definition written with the row kernels (<see cref="VectorOps.Dot"/>,
/// <see cref="Softmax"/>, <see cref="VectorOps.Axpy"/>): the same bits for every head size, grouping,
/// batch and cache offset, on one thread and several.
/// </summary>
[Trait("Category", "Kernels")]
public sealed class AttentionTests
{
    private static ModelConfig Config(int heads, int kvHeads, int headDim) => new()
    {
        Architecture = ModelArchitecture.Llama,
        VocabSize = 16,
        ContextLength = 64,
        EmbeddingLength = heads * headDim,
        BlockCount = 2,
        FeedForwardLength = 8,
        HeadCount = heads,
        KvHeadCount = kvHeads,
        HeadDim = headDim,
        NormEpsilon = 1e-5f,
    };

    // out[t, h] = Σ_j softmax_j(q[t, h]·K[g, j] / √D) · V[g, j] over the visible positions j ≤ start + t.
    private static float[] Expected(ModelConfig cfg, float[] q, float[] keys, float[] values, int start, int tokens)
    {
        int d = cfg.HeadDim;
        var output = new float[tokens * cfg.QDim];
        for (int t = 0; t < tokens; t++)
        {
            for (int h = 0; h < cfg.HeadCount; h++)
            {
                int g = h / cfg.GroupSize, visible = start + t + 1;
                var scores = new float[visible];
                ReadOnlySpan<float> query = q.AsSpan(t * cfg.QDim + h * d, d);
                for (int j = 0; j < visible; j++)
                    scores[j] = VectorOps.Dot(query, keys.AsSpan((j * cfg.KvHeadCount + g) * d, d)) * (1f / MathF.Sqrt(d));
                Softmax.Forward(scores, scores);
                Span<float> o = output.AsSpan(t * cfg.QDim + h * d, d);
                for (int j = 0; j < visible; j++) VectorOps.Axpy(scores[j], values.AsSpan((j * cfg.KvHeadCount + g) * d, d), o);
            }
        }
        return output;
    }

    [Fact]
    public void Attention_equals_its_definition_bit_for_bit_for_every_head_size_and_batch()
    {
        using var pool1 = new ComputePool(1);
        using var pool3 = new ComputePool(3);
        (int Heads, int KvHeads, int HeadDim)[] shapes = [(2, 1, 16), (3, 3, 32), (6, 2, 64), (4, 2, 128), (2, 1, 48), (2, 2, 8), (3, 1, 20)];
        int seed = 1;
        foreach ((int heads, int kvHeads, int headDim) in shapes)
        {
            foreach ((int start, int tokens) in new[] { (0, 1), (0, 9), (5, 1), (7, 13) })
            {
                ModelConfig cfg = Config(heads, kvHeads, headDim);
                int n = start + tokens;
                float[] keys = Uniform(n * cfg.KvDim, seed++, -2f, 2f);   // (n, Hkv·D)
                float[] values = Uniform(n * cfg.KvDim, seed++, -2f, 2f); // (n, Hkv·D)
                float[] q = Uniform(tokens * cfg.QDim, seed++, -2f, 2f);  // (T, H·D)
                var attention = new Attention(cfg);
                var cache = new KvCache(cfg, 64);
                attention.Store(keys, values, cache, 1, 0, n);
                float[] expected = Expected(cfg, q, keys, values, start, tokens);
                foreach (ComputePool pool in new[] { pool1, pool3 })
                {
                    var actual = new float[tokens * cfg.QDim];
                    attention.Forward(q, cache, 1, start, tokens, actual, pool);
                    for (int i = 0; i < expected.Length; i++)
                    {
                        if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                            Assert.Fail($"H={heads} Hkv={kvHeads} D={headDim} start={start} T={tokens} threads={pool.ThreadCount}: output {i} is {actual[i]:R}, expected {expected[i]:R}.");
                    }
                }
            }
        }
    }
}
