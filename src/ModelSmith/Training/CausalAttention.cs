using System.Runtime.CompilerServices;
using ModelSmith.Tensors;

namespace ModelSmith.Training;

/// <summary>
/// Causal multi-head attention with grouped-query sharing over a fused QKV activation, and its backward pass.
/// For sequence b, query head h and its key/value head g = h / (H / Hkv):
/// S = Q·Kᵀ/√D (T, T), P = softmax(S) over the visible prefix j ≤ t, O = P·V (T, D).
/// </summary>
/// <remarks>
/// <para>Backward: dP = dO·Vᵀ; dS = P ⊙ (dP − rowsum(P ⊙ dP)) / √D; dQ = dS·K; dK = Σ_h dSᵀ·Q; dV = Σ_h Pᵀ·dO,
/// the sums over the query heads sharing a key/value head.</para>
/// <para>Every product is a <see cref="Gemm"/> with a causal mask that skips the tiles above the diagonal.
/// The forward runs one (sequence, query head) per work item; the backward one (sequence, key/value head),
/// so that each item owns its dK and dV and adds its query heads in order: the same result for every thread
/// count. P is kept from the forward pass: (B, H, T, T).</para>
/// </remarks>
internal static unsafe class CausalAttention
{
    /// <summary>
    /// qkv: (B·T, H·D + 2·Hkv·D) with rows [Q | K | V], already rotated; att: (B, H, T, T) receives P;
    /// output: (B·T, H·D).
    /// </summary>
    public static void Forward(ComputePool pool, float* qkv, int batch, int seqLen, int heads, int kvHeads, int headDim, float* att, float* output)
    {
        var job = new ForwardJob { Qkv = qkv, T = seqLen, H = heads, Hkv = kvHeads, D = headDim, Att = att, Output = output, Pool = pool };
        pool.Run(in job, batch * heads);
    }

    /// <summary>
    /// dout: (B·T, H·D); qkv, att as in the forward pass; dqkv: (B·T, H·D + 2·Hkv·D) receives dQ, dK, dV
    /// (overwritten, not accumulated).
    /// </summary>
    public static void Backward(ComputePool pool, float* dout, float* qkv, float* att, int batch, int seqLen, int heads, int kvHeads, int headDim, float* dqkv)
    {
        var job = new BackwardJob { DOut = dout, Qkv = qkv, Att = att, T = seqLen, H = heads, Hkv = kvHeads, D = headDim, DQkv = dqkv, Pool = pool };
        pool.Run(in job, batch * kvHeads);
    }

    private static long Align(long n) => (n + 15) & ~15L;

    private struct ForwardJob : IParallelJob
    {
        public float* Qkv, Att, Output;
        public int T, H, Hkv, D;
        public ComputePool Pool;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int item, int worker)
        {
            int b = item / H, h = item % H, g = h / (H / Hkv);
            int t = T, d = D, qDim = H * D, stride = qDim + 2 * Hkv * D;
            long packed = Align(Math.Max(Gemm.PackedBLength(d, t), Gemm.PackedBLength(t, d)));
            float* scratch = Pool.GetScratchPointer(worker, (int)(packed + Gemm.PackedALength));
            float* packA = scratch + packed;
            float* rows = Qkv + (long)b * t * stride;
            float* p = Att + (long)item * t * t;
            float scale = 1f / MathF.Sqrt(d);

            // S = Q·Kᵀ on and below the diagonal; then P = softmax(S/√D) over each row's visible prefix.
            Gemm.PackB(Strided.Columns(rows + qDim + g * d, stride), d, t, 0, Gemm.PanelCount(t), scratch);
            Gemm.MultiplyPacked(Strided.Rows(rows + h * d, stride), scratch, t, t, d, p, t, false, GemmMask.LowerColumns, packA);
            for (int i = 0; i < t; i++) RowMath.SoftmaxPrefix(p + (long)i * t, i + 1, t, scale);

            // O = P·V, P lower triangular.
            Gemm.PackB(Strided.Rows(rows + qDim + Hkv * d + g * d, stride), t, d, 0, Gemm.PanelCount(d), scratch);
            Gemm.MultiplyPacked(Strided.Rows(p, t), scratch, t, d, t, Output + (long)b * t * qDim + h * d, qDim, false, GemmMask.LowerDepth, packA);
        }
    }

    private struct BackwardJob : IParallelJob
    {
        public float* DOut, Qkv, Att, DQkv;
        public int T, H, Hkv, D;
        public ComputePool Pool;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int item, int worker)
        {
            int b = item / Hkv, g = item % Hkv, group = H / Hkv;
            int t = T, d = D, qDim = H * D, kvDim = Hkv * D, stride = qDim + 2 * kvDim;
            long vt = Align(Gemm.PackedBLength(d, t)), td = Align(Gemm.PackedBLength(t, d)), tt = Align((long)t * t);
            float* scratch = Pool.GetScratchPointer(worker, (int)(vt + 3 * td + tt + Gemm.PackedALength));
            float* packVt = scratch, packK = packVt + vt, packQ = packK + td, packDo = packQ + td, ds = packDo + td, packA = ds + tt;

            float* rows = Qkv + (long)b * t * stride;
            float* drows = DQkv + (long)b * t * stride;
            float* k = rows + qDim + g * d, v = rows + qDim + kvDim + g * d;
            float* dk = drows + qDim + g * d, dv = drows + qDim + kvDim + g * d;
            float scale = 1f / MathF.Sqrt(d);
            Gemm.PackB(Strided.Columns(v, stride), d, t, 0, Gemm.PanelCount(t), packVt);
            Gemm.PackB(Strided.Rows(k, stride), t, d, 0, Gemm.PanelCount(d), packK);

            for (int i = 0; i < group; i++)
            {
                int h = g * group + i;
                float* p = Att + ((long)b * H + h) * t * t;
                float* q = rows + h * d;
                float* dout = DOut + (long)b * t * qDim + h * d;

                // dP = dO·Vᵀ (lower triangle), then dS = P ⊙ (dP − rowsum(P ⊙ dP)) / √D, zero above the diagonal.
                Gemm.MultiplyPacked(Strided.Rows(dout, qDim), packVt, t, t, d, ds, t, false, GemmMask.LowerColumns, packA);
                for (int r = 0; r < t; r++) RowMath.SoftmaxBackward(p + (long)r * t, ds + (long)r * t, r + 1, t, scale);

                // dQ = dS·K; dK += dSᵀ·Q; dV += Pᵀ·dO (the first head of the group overwrites).
                Gemm.MultiplyPacked(Strided.Rows(ds, t), packK, t, d, t, drows + h * d, stride, false, GemmMask.LowerDepth, packA);
                Gemm.PackB(Strided.Rows(q, stride), t, d, 0, Gemm.PanelCount(d), packQ);
                Gemm.MultiplyPacked(Strided.Columns(ds, t), packQ, t, d, t, dk, stride, i > 0, GemmMask.UpperDepth, packA);
                Gemm.PackB(Strided.Rows(dout, qDim), t, d, 0, Gemm.PanelCount(d), packDo);
                Gemm.MultiplyPacked(Strided.Columns(p, t), packDo, t, d, t, dv, stride, i > 0, GemmMask.UpperDepth, packA);
            }
        }
    }

    /// <summary>The definition, one score at a time, sums in double. Same shapes as the fast path.</summary>
    internal static class Reference
    {
        public static void Forward(ReadOnlySpan<float> qkv, int batch, int seqLen, int heads, int kvHeads, int headDim, Span<float> att, Span<float> output)
        {
            int t = seqLen, d = headDim, qDim = heads * d, stride = qDim + 2 * kvHeads * d;
            for (int b = 0; b < batch; b++)
                for (int h = 0; h < heads; h++)
                {
                    int g = h / (heads / kvHeads);
                    for (int i = 0; i < t; i++)
                    {
                        int qi = (b * t + i) * stride + h * d;
                        Span<float> p = att.Slice(((b * heads + h) * t + i) * t, t);
                        double max = double.NegativeInfinity;
                        var s = new double[i + 1];
                        for (int j = 0; j <= i; j++)
                        {
                            int kj = (b * t + j) * stride + qDim + g * d;
                            double dot = 0;
                            for (int e = 0; e < d; e++) dot += (double)qkv[qi + e] * qkv[kj + e];
                            s[j] = dot / Math.Sqrt(d);
                            max = Math.Max(max, s[j]);
                        }
                        double sum = 0;
                        for (int j = 0; j <= i; j++) sum += s[j] = Math.Exp(s[j] - max);
                        p.Clear();
                        for (int j = 0; j <= i; j++) p[j] = (float)(s[j] / sum);
                        for (int e = 0; e < d; e++)
                        {
                            double o = 0;
                            for (int j = 0; j <= i; j++) o += (double)p[j] * qkv[(b * t + j) * stride + qDim + kvHeads * d + g * d + e];
                            output[(b * t + i) * qDim + h * d + e] = (float)o;
                        }
                    }
                }
        }

        public static void Backward(ReadOnlySpan<float> dout, ReadOnlySpan<float> qkv, ReadOnlySpan<float> att, int batch, int seqLen, int heads, int kvHeads, int headDim, Span<float> dqkv)
        {
            int t = seqLen, d = headDim, qDim = heads * d, kvDim = kvHeads * d, stride = qDim + 2 * kvDim;
            var acc = new double[dqkv.Length];
            double scale = 1 / Math.Sqrt(d);
            for (int b = 0; b < batch; b++)
                for (int h = 0; h < heads; h++)
                {
                    int g = h / (heads / kvHeads);
                    for (int i = 0; i < t; i++)
                    {
                        ReadOnlySpan<float> p = att.Slice(((b * heads + h) * t + i) * t, t);
                        int oi = (b * t + i) * qDim + h * d;
                        var dp = new double[i + 1];
                        double dot = 0;
                        for (int j = 0; j <= i; j++)
                        {
                            int vj = (b * t + j) * stride + qDim + kvDim + g * d;
                            for (int e = 0; e < d; e++)
                            {
                                dp[j] += (double)dout[oi + e] * qkv[vj + e];
                                acc[vj + e] += (double)p[j] * dout[oi + e];
                            }
                            dot += p[j] * dp[j];
                        }
                        int qi = (b * t + i) * stride + h * d;
                        for (int j = 0; j <= i; j++)
                        {
                            double ds = p[j] * (dp[j] - dot) * scale;
                            int kj = (b * t + j) * stride + qDim + g * d;
                            for (int e = 0; e < d; e++)
                            {
                                acc[qi + e] += ds * qkv[kj + e];
                                acc[kj + e] += ds * qkv[qi + e];
                            }
                        }
                    }
                }
            for (int i = 0; i < acc.Length; i++) dqkv[i] = (float)acc[i];
        }
    }
}
