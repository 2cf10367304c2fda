using ModelSmith.Inference;
using ModelSmith.Tensors;

namespace ModelSmith.Models;

/// <summary>
/// Causal multi-head attention over a KV cache, with grouped-query sharing: query head h reads
/// key/value head h / (H / Hkv), as ggml broadcasts it. Effectively, for token t at position p:
/// out[t, h] = softmax(q[t, h] · K[g, 0..p]ᵀ / √D) · V[g, 0..p].
/// </summary>
internal sealed class Attention
{
    private readonly ModelConfig _config;
    public Attention(ModelConfig config) => _config = config;

    /// <summary>Copies keys and values of T new tokens into the cache at positions start..start+T-1.</summary>
    public void Store(
        ReadOnlySpan<float> k, // (T, Hkv·D)
        ReadOnlySpan<float> v, // (T, Hkv·D)
        KvCache cache, int layer, int start, int tokens)
    {
        int d = _config.HeadDim;
        for (int g = 0; g < _config.KvHeadCount; g++)
        {
            Span<float> keys = cache.Keys(layer, g);     // (capacity, D)
            Span<float> values = cache.Values(layer, g); // (capacity, D)
            for (int t = 0; t < tokens; t++)
            {
                k.Slice(t * _config.KvDim + g * d, d).CopyTo(keys.Slice((start + t) * d, d));
                v.Slice(t * _config.KvDim + g * d, d).CopyTo(values.Slice((start + t) * d, d));
            }
        }
    }

    /// <summary>Attention of T tokens at positions start.. over the cache (which already holds them).</summary>
    public void Forward(
        ReadOnlySpan<float> q, // (T, H·D)
        KvCache cache, int layer, int start, int tokens,
        Span<float> output, // (T, H·D)
        ComputePool pool)
    {
        unsafe
        {
            fixed (float* qp = q)
            fixed (float* op = output)
            {
                var job = new HeadJob
                {
                    Config = _config,
                    Cache = cache,
                    Pool = pool,
                    Layer = layer,
                    Start = start,
                    Q = qp,
                    Output = op,
                };
                pool.Run(in job, _config.HeadCount * tokens);
            }
        }
    }

    /// <summary>One (token, query head) pair per item; scores live in the worker's scratch.</summary>
    private unsafe struct HeadJob : IParallelJob
    {
        public ModelConfig Config;
        public KvCache Cache;
        public ComputePool Pool;
        public int Layer, Start;
        public float* Q, Output;

        public readonly void Execute(int item, int worker)
        {
            int d = Config.HeadDim, qDim = Config.QDim;
            int t = item / Config.HeadCount, h = item % Config.HeadCount;
            int g = h / Config.GroupSize;
            int visible = Start + t + 1;
            float scale = 1f / MathF.Sqrt(d);
            ReadOnlySpan<float> keys = Cache.Keys(Layer, g);     // (capacity, D)
            ReadOnlySpan<float> values = Cache.Values(Layer, g); // (capacity, D)
            Span<float> scores = Pool.GetScratch(worker, visible); // (visible)
            var query = new ReadOnlySpan<float>(Q + (long)t * qDim + h * d, d);
            for (int j = 0; j < visible; j++)
                scores[j] = VectorOps.Dot(query, keys.Slice(j * d, d)) * scale;
            Softmax.Forward(scores, scores);
            var output = new Span<float>(Output + (long)t * qDim + h * d, d);
            output.Clear();
            for (int j = 0; j < visible; j++)
                VectorOps.Axpy(scores[j], values.Slice(j * d, d), output);
        }
    }
}
