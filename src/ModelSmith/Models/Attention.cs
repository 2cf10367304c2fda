using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
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
            var output = new Span<float>(Output + (long)t * qDim + h * d, d);
            if (Vector512.IsHardwareAccelerated && d % 16 == 0)
            {
                fixed (float* k = keys)
                fixed (float* v = values)
                fixed (float* p = scores)
                {
                    Scores16(Q + (long)t * qDim + h * d, k, d, visible, scale, p);
                    Softmax.Forward(scores, scores);
                    Mix16(p, v, d, visible, Output + (long)t * qDim + h * d);
                }
                return;
            }
            for (int j = 0; j < visible; j++)
                scores[j] = VectorOps.Dot(query, keys.Slice(j * d, d)) * scale;
            Softmax.Forward(scores, scores);
            output.Clear();
            for (int j = 0; j < visible; j++)
                VectorOps.Axpy(scores[j], values.Slice(j * d, d), output);
        }

        /// <summary>
        /// scores[j] = (q · keys[j])·scale for j &lt; n, with the operations of <see cref="VectorOps.Dot"/> on
        /// 512-bit vectors (so the same bits), two keys at a time so their reduction chains overlap.
        /// q: (D), keys: (n, D), scores: (n); D a multiple of 16.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void Scores16(float* q, float* keys, int d, int n, float scale, float* scores)
        {
            int j = 0;
            for (; j + 2 <= n; j += 2)
            {
                float* k0 = keys + (long)j * d, k1 = k0 + d;
                scores[j] = Dot16(q, k0, d) * scale;
                scores[j + 1] = Dot16(q, k1, d) * scale;
            }
            for (; j < n; j++) scores[j] = Dot16(q, keys + (long)j * d, d) * scale;
        }

        // VectorOps.Dot's 512-bit path for N a multiple of 16 (its narrower paths then see no elements).
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static float Dot16(float* a, float* b, int n)
        {
            Vector512<float> c0 = Vector512<float>.Zero, c1 = c0, c2 = c0, c3 = c0;
            int i = 0;
            for (; i <= n - 64; i += 64)
            {
                c0 = Vector512.MultiplyAddEstimate(Vector512.Load(a + i), Vector512.Load(b + i), c0);
                c1 = Vector512.MultiplyAddEstimate(Vector512.Load(a + i + 16), Vector512.Load(b + i + 16), c1);
                c2 = Vector512.MultiplyAddEstimate(Vector512.Load(a + i + 32), Vector512.Load(b + i + 32), c2);
                c3 = Vector512.MultiplyAddEstimate(Vector512.Load(a + i + 48), Vector512.Load(b + i + 48), c3);
            }
            for (; i <= n - 16; i += 16) c0 = Vector512.MultiplyAddEstimate(Vector512.Load(a + i), Vector512.Load(b + i), c0);
            return Vector512.Sum((c0 + c1) + (c2 + c3));
        }

        /// <summary>
        /// output = Σ_j p[j]·values[j], each element's multiply-adds in j order as <see cref="VectorOps.Axpy"/>
        /// does them from a cleared output (so the same bits), with the output held in registers across j:
        /// 64 elements at a time, so four independent multiply-add chains overlap.
        /// p: (n), values: (n, D), output: (D); D a multiple of 16.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void Mix16(float* p, float* values, int d, int n, float* output)
        {
            int c = 0;
            for (; c + 64 <= d; c += 64)
            {
                Vector512<float> o0 = Vector512<float>.Zero, o1 = o0, o2 = o0, o3 = o0;
                float* v = values + c;
                for (int j = 0; j < n; j++)
                {
                    Vector512<float> pj = Vector512.Create(p[j]);
                    float* vj = v + (long)j * d;
                    o0 = Vector512.MultiplyAddEstimate(pj, Vector512.Load(vj), o0);
                    o1 = Vector512.MultiplyAddEstimate(pj, Vector512.Load(vj + 16), o1);
                    o2 = Vector512.MultiplyAddEstimate(pj, Vector512.Load(vj + 32), o2);
                    o3 = Vector512.MultiplyAddEstimate(pj, Vector512.Load(vj + 48), o3);
                }
                o0.Store(output + c);
                o1.Store(output + c + 16);
                o2.Store(output + c + 32);
                o3.Store(output + c + 48);
            }
            for (; c < d; c += 16)
            {
                Vector512<float> o = Vector512<float>.Zero;
                float* v = values + c;
                for (int j = 0; j < n; j++) o = Vector512.MultiplyAddEstimate(Vector512.Create(p[j]), Vector512.Load(v + (long)j * d), o);
                o.Store(output + c);
            }
        }
    }
}
