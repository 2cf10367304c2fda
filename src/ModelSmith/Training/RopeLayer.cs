using System.Runtime.CompilerServices;
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
            int stride = QDim + 2 * KvDim;
            for (int t = start; t < end; t++)
            {
                int position = t % SeqLen;
                var q = new Span<float>(Qkv + (long)t * stride, QDim);
                var k = new Span<float>(Qkv + (long)t * stride + QDim, KvDim);
                if (Inverse)
                {
                    Rope.ApplyInverse(q, HeadDim, position, Table);
                    Rope.ApplyInverse(k, HeadDim, position, Table);
                }
                else
                {
                    Rope.Apply(q, HeadDim, position, Table);
                    Rope.Apply(k, HeadDim, position, Table);
                }
            }
        }
    }
}
