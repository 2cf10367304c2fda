using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using ModelSmith.Tensors;

namespace ModelSmith.Training;

/// <summary>
/// Rotary position embedding of the query and key heads inside a fused QKV row, in place, and its backward
/// pass: the rotation is orthogonal, so the gradient is the inverse rotation (by −θ) of the output gradient.
/// Token t of a sequence of T sits at position t mod T; every sequence starts at 0.
/// </summary>
internal static unsafe class RopeLayer
{
    /// <summary>Rotates the Q and K heads of every row. qkv: (N, H·D + 2·Hkv·D), in place; N = B·T.</summary>
    public static void Forward(ComputePool pool, float* qkv, int n, int seqLen, int heads, int kvHeads, int headDim, RopeTable table)
    {
        var k = new Rows { Qkv = qkv, SeqLen = seqLen, QDim = heads * headDim, KvDim = kvHeads * headDim, HeadDim = headDim, Table = table, Inverse = false };
        RowParallel.For(pool, n, RowParallel.Chunk(pool, n), in k);
    }

    /// <summary>Rotates the Q and K gradients back by −θ. dqkv: (N, H·D + 2·Hkv·D), in place; the V part is untouched.</summary>
    public static void Backward(ComputePool pool, float* dqkv, int n, int seqLen, int heads, int kvHeads, int headDim, RopeTable table)
    {
        var k = new Rows { Qkv = dqkv, SeqLen = seqLen, QDim = heads * headDim, KvDim = kvHeads * headDim, HeadDim = headDim, Table = table, Inverse = true };
        RowParallel.For(pool, n, RowParallel.Chunk(pool, n), in k);
    }

    private struct Rows : IRowsKernel
    {
        public float* Qkv;
        public int SeqLen, QDim, KvDim, HeadDim;
        public RopeTable Table;
        public bool Inverse;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Run(int start, int end, int worker)
        {
            int stride = QDim + 2 * KvDim, heads = (QDim + KvDim) / HeadDim, dims = Table.Dims;
            float sign = Inverse ? -1f : 1f;
            for (int t = start; t < end; t++)
            {
                int position = t % SeqLen;
                float* row = Qkv + (long)t * stride;
                fixed (float* cos = Table.Cos(position), sin = Table.Sin(position))
                {
                    for (int h = 0; h < heads; h++) RotateAdjacent(row + h * HeadDim, cos, sin, sign, dims);
                }
            }
        }
    }

    // x[i] = x[i]·cos[i] + x[i^1]·(sign·sin[i]) over adjacent pairs, products rounded then summed (no fused
    // multiply-add) exactly as Rope.Apply computes them, so the rotated values equal the inference engine's.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RotateAdjacent(float* x, float* cos, float* sin, float sign, int dims)
    {
        int i = 0;
        if (Avx512F.IsSupported)
        {
            Vector512<float> sg = Vector512.Create(sign);
            for (; i <= dims - 16; i += 16)
            {
                Vector512<float> v = Vector512.Load(x + i);
                Vector512<float> swapped = Avx512F.Permute4x32(v, 0b10_11_00_01);
                (v * Vector512.Load(cos + i) + swapped * (Vector512.Load(sin + i) * sg)).Store(x + i);
            }
        }
        if (Avx.IsSupported)
        {
            Vector256<float> sg = Vector256.Create(sign);
            for (; i <= dims - 8; i += 8)
            {
                Vector256<float> v = Vector256.Load(x + i);
                Vector256<float> swapped = Avx.Permute(v, 0b10_11_00_01);
                (v * Vector256.Load(cos + i) + swapped * (Vector256.Load(sin + i) * sg)).Store(x + i);
            }
        }
        for (; i < dims; i += 2)
        {
            float a = x[i], b = x[i + 1];
            x[i] = a * cos[i] + b * (sin[i] * sign);
            x[i + 1] = b * cos[i + 1] + a * (sin[i + 1] * sign);
        }
    }
}
