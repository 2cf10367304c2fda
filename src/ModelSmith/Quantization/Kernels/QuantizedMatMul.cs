using ModelSmith.Formats;
using ModelSmith.Tensors;

namespace ModelSmith.Quantization.Kernels;

/// <summary>
/// y = x·Wᵀ + b for a block-quantized W (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K), computed as llama.cpp's
/// CPU backend computes it: x quantized to the weight type's vec_dot_type, integer dot products per block,
/// the block scales applied in ggml's order. Every output equals <see cref="VecDotReference.Dot"/> of its
/// row and token bit for bit, whatever the path, thread count, or number of tokens in the call.
/// </summary>
/// <remarks>
/// <para><b>Activations</b> are quantized once per call (all T tokens) on the calling thread, into
/// <see cref="QuantizedActivations"/>, before the work is split.</para>
/// <para><b>Work split.</b> Items are blocks of weight rows. Decode (one token) multiplies each stored row
/// directly (<see cref="QuantKernel.DotPackedRows"/>: levels unpacked in registers, each weight read from
/// memory once). Prefill unpacks the item's <see cref="PrefillRows"/> rows once into the worker's scratch
/// and runs the tokens against them in tiles of <see cref="TokenTile"/> (<see cref="QuantKernel.DotTile"/>,
/// which may block rows × tokens in registers), so the unpacking is paid once per weight and the unpacked
/// rows (16 × ~2·K bytes) stay in L2 while the tokens stream through L1.</para>
/// </remarks>
internal static unsafe class QuantizedMatMul
{
    /// <summary>Weight rows per prefill work item.</summary>
    public const int PrefillRows = 16;

    /// <summary>Tokens per prefill tile.</summary>
    public const int TokenTile = 4;

    /// <summary>y = x·Wᵀ + b on the widest path this CPU has. x: (T, Cols), bias: (Rows) or empty, y: (T, Rows).</summary>
    public static void Forward(ReadOnlySpan<float> x, WeightMatrix w, ReadOnlySpan<float> bias, int tokens, Span<float> y, ComputePool pool) =>
        Forward(x, w, bias, tokens, y, pool, QuantKernel.BestPath);

    /// <summary>y = x·Wᵀ + b on <paramref name="path"/> (which must be supported here; tests run every one).</summary>
    public static void Forward(ReadOnlySpan<float> x, WeightMatrix w, ReadOnlySpan<float> bias, int tokens, Span<float> y, ComputePool pool, QuantKernelPath path)
    {
        ArgumentNullException.ThrowIfNull(pool);
        if (!QuantKernel.IsSupported(path)) throw new ArgumentException($"This CPU cannot run the {path} kernels.", nameof(path));
        if (w.Kernel is null) throw new ArgumentException("The weight matrix is uninitialized (default struct).", nameof(w));
        QuantKernel kernel = QuantKernel.For(w.Type);
        ArgumentOutOfRangeException.ThrowIfNegative(tokens);
        if (x.Length < (long)tokens * w.Cols)
            throw new ArgumentException($"x holds {x.Length} floats but {tokens} tokens x {w.Cols} columns = {(long)tokens * w.Cols} are needed.", nameof(x));
        if (y.Length < (long)tokens * w.Rows)
            throw new ArgumentException($"y holds {y.Length} floats but {tokens} tokens x {w.Rows} rows = {(long)tokens * w.Rows} are needed.", nameof(y));
        if (!bias.IsEmpty && bias.Length != w.Rows)
            throw new ArgumentException($"bias holds {bias.Length} floats but the matrix has {w.Rows} rows; pass {w.Rows} values or an empty span.", nameof(bias));
        if (tokens == 0 || w.Rows == 0) return;
        if (x.Overlaps(y))
            throw new ArgumentException("MatMul input x and output y overlap; give the output its own buffer.", nameof(y));

        QuantizedActivations act = QuantizedActivations.ForCurrentThread();
        bool packedDecode = tokens == 1 && kernel.HasPackedDot;
        act.Quantize(x, tokens, w.Cols, kernel.ActivationType, grouped: kernel.GroupsBlocks && !packedDecode);

        fixed (byte* pw = w.Data.Span)
        fixed (float* pb = bias)
        fixed (float* py = y)
        {
            int block = tokens == 1 ? DecodeRows(w.Rows, pool.ThreadCount) : PrefillRows;
            var job = new Job
            {
                W = pw,
                RowBytes = w.RowBytes,
                Rows = w.Rows,
                Cols = w.Cols,
                Tokens = tokens,
                Block = block,
                Bias = pb,
                Y = py,
                Kernel = kernel,
                Unpacked = kernel.UnpackedRowBytes(w.Cols),
                Activations = act,
                Path = path,
                Pool = pool,
            };
            pool.Run(ref job, (w.Rows + block - 1) / block);
        }
    }

    // About four items per thread, 16..64 rows each: few enough to keep the hand-out cheap, enough to balance.
    private static int DecodeRows(int rows, int threads) => Math.Clamp(rows / (4 * threads) & ~3, PrefillRows, 64);

    private struct Job : IParallelJob
    {
        public byte* W;         // (Rows, RowBytes)
        public int RowBytes, Rows, Cols, Tokens;
        public int Block;       // rows per item
        public float* Bias;     // (Rows) or null
        public float* Y;        // (Tokens, Rows)
        public QuantKernel Kernel;
        public int Unpacked;    // bytes per unpacked row
        public QuantizedActivations Activations;
        public QuantKernelPath Path;
        public ComputePool Pool;

        public readonly void Execute(int item, int worker)
        {
            int r0 = item * Block;
            int n = Math.Min(Block, Rows - r0);
            if (Tokens == 1)
            {
                if (Kernel.HasPackedDot) Kernel.DotPackedRows(W + (long)r0 * RowBytes, RowBytes, n, Activations, 0, Path, Y + r0);
                else
                {
                    byte* row = (byte*)Pool.GetScratchPointer(worker, Unpacked / 4);
                    for (int r = r0; r < r0 + n; r++)
                    {
                        Kernel.Unpack(W + (long)r * RowBytes, Cols, row, Path);
                        Y[r] = Kernel.Dot(row, Activations, 0, Path);
                    }
                }
                if (Bias != null)
                {
                    for (int r = r0; r < r0 + n; r++) Y[r] += Bias[r];
                }
                return;
            }

            byte* rows = (byte*)Pool.GetScratchPointer(worker, n * (Unpacked / 4));
            for (int r = 0; r < n; r++) Kernel.Unpack(W + (long)(r0 + r) * RowBytes, Cols, rows + (long)r * Unpacked, Path);
            // Tiles of TokenTile tokens: the tile's quants stay in L1 while they meet every row of the item,
            // and the kernel blocks rows × tokens in registers.
            for (int t = 0; t < Tokens; t += TokenTile)
            {
                int tc = Math.Min(TokenTile, Tokens - t);
                Kernel.DotTile(rows, Unpacked, n, Activations, t, tc, Path, Y + (long)t * Rows + r0, Rows);
            }
            if (Bias != null)
            {
                for (int t = 0; t < Tokens; t++)
                {
                    float* yt = Y + (long)t * Rows;
                    for (int r = r0; r < r0 + n; r++) yt[r] += Bias[r];
                }
            }
        }
    }
}
