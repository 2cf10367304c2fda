using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using ModelSmith.Formats;
using ModelSmith.Quantization.Kernels;

namespace ModelSmith.Tensors;

/// <summary>
/// y = x·Wᵀ + b for a weight stored in any <see cref="RowKernel"/> type: the decode matvec (one token)
/// and the prefill GEMM (many tokens) of every linear layer.
/// </summary>
/// <remarks>
/// <para><b>Work split.</b> The weight's rows are cut into blocks (<see cref="RowBlock"/> rows for prefill,
/// 16-64 for decode); each block is one pool work item, computed for all tokens by one thread.</para>
/// <para><b>Decode (one token)</b> is bound by memory bandwidth: each weight row is streamed once, one row
/// at a time (F16, and F32 on 64-byte boundaries: a single stream, which the hardware prefetcher follows
/// best, helped across 4 KiB pages by <see cref="StreamPrefetch"/>) or four rows at a time against the
/// same x registers (BF16, F32 otherwise). 16-bit weights are widened in registers (F16 by three integer
/// ops to w·2^-112 against an x scaled by 2^112, see <see cref="LoadF16Finite"/>; BF16 by a shift), so 2
/// bytes per weight are read from memory rather than 4; for BF16 the next rows are prefetched in software
/// while the current ones are read.</para>
/// <para><b>Prefill (many tokens)</b> is bound by arithmetic. The tokens are copied once per call into
/// 64-byte-aligned rows, and each work item copies or widens its weight block once into an aligned
/// float panel in the worker's scratch (RowBlock × Cols floats, 192 KiB at 3072 columns, which stays in
/// L2), so the conversion is paid once per weight however many tokens there are. Then, after llamafile's
/// tinyBLAS, register tiles of tokens × rows keep one vector accumulator per output and walk K one
/// register at a time: 4 tokens × 4 rows with AVX-512's 32 registers (16 accumulators, 8 loads per 16
/// FMAs), 2 × 4 with 16 registers (AVX2/SSE), 1 × 4 for leftover tokens. K is walked in passes of
/// <see cref="KChunk"/> columns with the accumulators saved between passes, so the 4-token slice of x
/// stays in L1 while it meets every row of the block.</para>
/// <para><b>Determinism.</b> Every output element is computed the same way on every path: one accumulator
/// updated with a fused multiply-add per register of K in increasing order, then the lanes summed (a
/// fixed order per width), then the K % lanes leftover products added one by one in order, then the bias.
/// So a result does not depend on the thread count, the tile it fell in, or the number of tokens in the
/// call (a decoded token gives bit-identical logits to the same token in a prefill batch). It does depend
/// on the vector width (AVX-512 vs AVX2 vs SSE).</para>
/// <para><b>Activations.</b> For F16 and BF16 weights x is first rounded to the weight type, as ggml's
/// vec_dot_type conversion does, so results track llama.cpp's rather than the exact product.</para>
/// <para><b>Accuracy.</b> Compared with the exact product (<see cref="Reference"/> accumulates in double),
/// |y − y_ref| ≤ 1e-5 · Σ_k |x_k·w_k| for K up to a few thousand: float rounding of a K-term sum is at
/// most ~(K/lanes + lanes) · 2^-24 relative to that sum, and in practice far below.</para>
/// <para><b>Other storage types</b> plug in through <see cref="RowKernel"/>: its <c>ToSingle</c> feeds the
/// prefill panel and, unless it offers a direct dot product, decode too (through the same panel).</para>
/// </remarks>
internal static unsafe class MatMul
{
    /// <summary>Weight rows per prefill work item: the height of the float panel each item builds.</summary>
    public const int RowBlock = 16;

    /// <summary>
    /// y = x·Wᵀ + b. x: (T, Cols), bias: (Rows) or empty for none, y: (T, Rows); T = <paramref name="tokens"/>.
    /// x and y must not overlap. Runs on <paramref name="pool"/>; results are identical for every thread count.
    /// </summary>
    public static void Forward(ReadOnlySpan<float> x, WeightMatrix w, ReadOnlySpan<float> bias, int tokens, Span<float> y, ComputePool pool)
    {
        ArgumentNullException.ThrowIfNull(pool);
        Validate(x, w, bias, tokens, y);
        if (tokens == 0 || w.Rows == 0) return;
        if (x.Overlaps(y))
            throw new ArgumentException("MatMul input x and output y overlap; give the output its own buffer.", nameof(y));
        if (QuantKernel.Supports(w.Type))
        {
            // Block-quantized weights: integer dot products against quantized activations, as ggml does.
            QuantizedMatMul.Forward(x, w, bias, tokens, y, pool);
            return;
        }

        int k = w.Cols;
        fixed (float* px = x)
        fixed (byte* pw = w.Data.Span)
        fixed (float* pb = bias)
        fixed (float* py = y)
        {
            // Prefill reads every x row many times: give each row a 64-byte-aligned start, which matters
            // as much as 30% to the micro-kernels (a misaligned 64-byte load touches two cache lines).
            float* xs = px;
            int ldx = k;
            bool round = RoundsActivations(w.Type);
            if (tokens > 1 || round)
            {
                ldx = AlignedStride(k);
                xs = PackBuffer(tokens * ldx);
                for (int t = 0; t < tokens; t++)
                {
                    var source = new ReadOnlySpan<float>(px + (long)t * k, k);
                    var packed = new Span<float>(xs + (long)t * ldx, k);
                    if (round) RoundToWeightType(source, w.Type, packed);
                    else source.CopyTo(packed);
                }
                // F16 decode widens weights without re-biasing their exponent (w·2^-112, see LoadF16Finite), so x
                // carries the 2^112 instead: exact, as |x| ≤ 65504 after rounding to half.
                if (tokens == 1 && w.Type == GgmlType.F16)
                    TensorPrimitives.Multiply(new ReadOnlySpan<float>(xs, k), RowConvert.TwoPow112, new Span<float>(xs, k));
            }

            int block = RowsPerItem(tokens, w.Rows, pool.ThreadCount);
            var job = new Job
            {
                Block = block,
                X = xs,
                Ldx = ldx,
                W = pw,
                Bias = pb,
                Y = py,
                Tokens = tokens,
                Rows = w.Rows,
                Cols = k,
                RowBytes = w.RowBytes,
                Kernel = w.Kernel,
                HalvesAreFinite = tokens == 1 && w.HalvesAreFinite,
                Pool = pool,
            };
            pool.Run(ref job, (w.Rows + block - 1) / block);
        }
    }

    // Prefill: RowBlock rows per item (the panel size). Decode: bigger items (multiples of 8 rows), fewer
    // hand-offs, but still about four items per thread.
    private static int RowsPerItem(int tokens, int rows, int threads)
    {
        if (tokens > 1) return RowBlock;
        int perThread = rows / (4 * threads) & ~7;
        return Math.Clamp(perThread, RowBlock, 4 * RowBlock);
    }

    /// <summary>
    /// True when llama.cpp multiplies this weight type with activations rounded to it: ggml's CPU backend
    /// converts the input to the type's vec_dot_type before the dot products, and for F16 and BF16 weights
    /// that is F16 and BF16 themselves. Doing the same keeps our logits within ~1e-5 of llama.cpp's
    /// instead of ~2e-3 (F16) or ~2e-2 (BF16) of their range.
    /// </summary>
    internal static bool RoundsActivations(GgmlType type) => type is GgmlType.F16 or GgmlType.BF16;

    /// <summary>x rounded to the weight type's precision (round to nearest even) and widened back. x, dst: (K).</summary>
    internal static void RoundToWeightType(ReadOnlySpan<float> x, GgmlType type, Span<float> dst)
    {
        const int Chunk = 1024;
        Span<ushort> narrow = stackalloc ushort[Chunk];
        for (int i = 0; i < x.Length; i += Chunk)
        {
            int n = Math.Min(Chunk, x.Length - i);
            Span<ushort> bits = narrow[..n];
            if (type == GgmlType.F16)
            {
                RowConvert.SingleToHalf(x.Slice(i, n), bits);
                RowConvert.HalfToSingle(bits, dst.Slice(i, n));
            }
            else
            {
                RowConvert.SingleToBFloat16(x.Slice(i, n), bits);
                RowConvert.BFloat16ToSingle(bits, dst.Slice(i, n));
            }
        }
    }

    // Floats per row of a packed operand: the row length rounded up to whole 64-byte lines.
    private static int AlignedStride(int k) => (k + 15) & ~15;

    // The calling thread's buffer for packed tokens: pinned, so its 64-byte-aligned start never moves,
    // and per thread, so concurrent callers (which the pool then refuses) cannot clobber each other's input.
    [ThreadStatic]
    private static float[]? t_pack;

    private static float* PackBuffer(int length)
    {
        float[]? pack = t_pack;
        if (pack is null || pack.Length < length + 16)
        {
            pack = GC.AllocateUninitializedArray<float>(length + 16, pinned: true);
            t_pack = pack;
        }
        nint start = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(pack));
        return (float*)((start + 63) & ~(nint)63);
    }

    private static void Validate(ReadOnlySpan<float> x, WeightMatrix w, ReadOnlySpan<float> bias, int tokens, Span<float> y)
    {
        if (w.Kernel is null) throw new ArgumentException("The weight matrix is uninitialized (default struct).", nameof(w));
        ArgumentOutOfRangeException.ThrowIfNegative(tokens);
        if (x.Length < (long)tokens * w.Cols)
            throw new ArgumentException($"x holds {x.Length} floats but {tokens} tokens x {w.Cols} columns = {(long)tokens * w.Cols} are needed.", nameof(x));
        if (y.Length < (long)tokens * w.Rows)
            throw new ArgumentException($"y holds {y.Length} floats but {tokens} tokens x {w.Rows} rows = {(long)tokens * w.Rows} are needed.", nameof(y));
        if (!bias.IsEmpty && bias.Length != w.Rows)
            throw new ArgumentException($"bias holds {bias.Length} floats but the matrix has {w.Rows} rows; pass {w.Rows} values or an empty span.", nameof(bias));
    }

    private struct Job : IParallelJob
    {
        public float* X;      // (T, Ldx), the first K of each row used
        public int Ldx;
        public byte* W;       // (R, RowBytes)
        public float* Bias;   // (R) or null
        public float* Y;      // (T, R)
        public int Tokens, Rows, Cols, RowBytes;
        public int Block;     // rows per item
        public RowKernel Kernel;
        public bool HalvesAreFinite; // F16 decode: the weights hold no infinity or NaN
        public ComputePool Pool;

        public readonly void Execute(int item, int worker)
        {
            int r0 = item * Block;
            int n = Math.Min(Block, Rows - r0);
            byte* rows = W + (long)r0 * RowBytes;
            float* bias = Bias == null ? null : Bias + r0;
            float* y = Y + r0;
            int k = Cols;

            if (Tokens == 1)
            {
                // Decode: stream each weight row once, widening 16-bit weights in registers.
                switch (Kernel.Type)
                {
                    case GgmlType.F32 when ((nint)W | RowBytes) % 64 == 0: GemvRowByRow<LoadF32>(X, k, rows, RowBytes, n, bias, y); return;
                    case GgmlType.F32: Gemv<LoadF32>(X, k, rows, RowBytes, n, bias, y); return;
                    case GgmlType.F16 when HalvesAreFinite: GemvRowByRow<LoadF16Finite>(X, k, rows, RowBytes, n, bias, y); return;
                    case GgmlType.F16: Gemv<LoadF16Unbiased>(X, k, rows, RowBytes, n, bias, y); return;
                    case GgmlType.BF16: Gemv<LoadBF16>(X, k, rows, RowBytes, n, bias, y); return;
                }
                if (Kernel.HasDirectDot)
                {
                    var dots = new Span<float>(y, n);
                    Kernel.DotRows(new ReadOnlySpan<float>(X, k), new ReadOnlySpan<byte>(rows, n * RowBytes), k, dots);
                    if (bias != null)
                    {
                        for (int i = 0; i < n; i++) dots[i] += bias[i];
                    }
                    return;
                }
            }

            // Prefill: copy or widen the block once into an aligned float panel, then the blocked kernels.
            int lanes = SimdWidth.Bits / 32;
            int ldw = AlignedStride(k);
            int stateFloats = Math.Min(Tokens, TokenChunk) * n * lanes;
            float* scratch = Pool.GetScratchPointer(worker, stateFloats + n * ldw);
            float* panel = scratch + stateFloats;
            for (int r = 0; r < n; r++)
                Kernel.ToSingle(new ReadOnlySpan<byte>(rows + (long)r * RowBytes, RowBytes), new Span<float>(panel + (long)r * ldw, k));

            if (Vector512.IsHardwareAccelerated) Blocked<Vector512<float>, Simd512>(X, Ldx, Tokens, k, panel, ldw, n, bias, y, Rows, (Vector512<float>*)scratch);
            else if (Vector256.IsHardwareAccelerated) Blocked<Vector256<float>, Simd256>(X, Ldx, Tokens, k, panel, ldw, n, bias, y, Rows, (Vector256<float>*)scratch);
            else if (Vector128.IsHardwareAccelerated) Blocked<Vector128<float>, Simd128>(X, Ldx, Tokens, k, panel, ldw, n, bias, y, Rows, (Vector128<float>*)scratch);
            else Blocked<float, SimdScalar>(X, Ldx, Tokens, k, panel, ldw, n, bias, y, Rows, scratch);
        }
    }

    /// <summary>Tokens whose accumulators a prefill work item keeps at once: (TokenChunk, RowBlock) registers.</summary>
    public const int TokenChunk = 128;

    /// <summary>
    /// K columns per pass of the prefill kernels. The accumulators are saved between passes (exactly, as
    /// registers), so this only changes what stays in cache: a 4-token × KChunk slice of x (8 KiB) stays
    /// in L1 while it meets every row of the block, and the block's KChunk-wide weight slice stays in L2.
    /// </summary>
    public const int KChunk = 512;

    // ---- decode: one token, rows streamed straight from their stored type ----

    /// <summary>Reads weight elements of one storage type as floats (exactly).</summary>
    private interface IWeightLoad
    {
        static abstract int ElementBytes { get; }

        /// <summary>
        /// Whether decode should prefetch the next rows in software. F16's widening takes enough
        /// instructions that the out-of-order window no longer reaches far enough ahead to keep DRAM busy
        /// (measured: 8-10 GB/s without, 16-22 GB/s with, one thread); F32 streams at bandwidth without.
        /// </summary>
        static abstract bool Prefetch { get; }

        static abstract TV Load<TV, TS>(byte* row, nint i) where TV : unmanaged where TS : ISimdFloat<TV>;

        static abstract float LoadScalar(byte* row, nint i);
    }

    private readonly struct LoadF32 : IWeightLoad
    {
        public static int ElementBytes => 4;

        public static bool Prefetch => false;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static TV Load<TV, TS>(byte* row, nint i) where TV : unmanaged where TS : ISimdFloat<TV> => TS.Load((float*)row + i);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float LoadScalar(byte* row, nint i) => ((float*)row)[i];
    }

    /// <summary>
    /// F16 weights times 2^-112, exactly (infinities and NaNs included), for decode's scaled activations:
    /// matrices holding infinities or NaNs, and the scalar tails of <see cref="LoadF16Finite"/>.
    /// </summary>
    private readonly struct LoadF16Unbiased : IWeightLoad
    {
        private const float TwoPowMinus112 = 1.925929944387236e-34f;

        public static int ElementBytes => 2;

        public static bool Prefetch => true;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static TV Load<TV, TS>(byte* row, nint i) where TV : unmanaged where TS : ISimdFloat<TV> =>
            TS.Multiply(TS.LoadHalf((ushort*)row + i), TS.Create(TwoPowMinus112));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float LoadScalar(byte* row, nint i) => RowConvert.HalfToSingle(((ushort*)row)[i]) * TwoPowMinus112;
    }

    /// <summary>
    /// F16 weights that hold no infinity or NaN, times 2^-112, widened by three integer operations
    /// (<see cref="ISimdFloat{TV}.LoadHalfUnbiased"/>: no multiply, no infinity fix-up), for decode's
    /// scaled activations. x·2^112 · w·2^-112 is the same real number as x·w, so every fused multiply-add
    /// rounds exactly as it does on the exact widening and the result is bit-identical to it. Infinities
    /// and NaNs would come out finite, hence the precondition (<see cref="WeightMatrix.HalvesAreFinite"/>).
    /// The K % lanes tail takes the exact widening.
    /// </summary>
    private readonly struct LoadF16Finite : IWeightLoad
    {
        public static int ElementBytes => 2;

        public static bool Prefetch => false;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static TV Load<TV, TS>(byte* row, nint i) where TV : unmanaged where TS : ISimdFloat<TV> =>
            TS.LoadHalfUnbiased((ushort*)row + i, TS.HalfMask);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float LoadScalar(byte* row, nint i) => LoadF16Unbiased.LoadScalar(row, i);
    }

    private readonly struct LoadBF16 : IWeightLoad
    {
        public static int ElementBytes => 2;

        public static bool Prefetch => true;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static TV Load<TV, TS>(byte* row, nint i) where TV : unmanaged where TS : ISimdFloat<TV> => TS.LoadBFloat16((ushort*)row + i);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float LoadScalar(byte* row, nint i) => RowConvert.Reference.BFloat16ToSingle(((ushort*)row)[i]);
    }

    private static void Gemv<TL>(float* x, int k, byte* rows, int rowBytes, int n, float* bias, float* y) where TL : IWeightLoad
    {
        if (Vector512.IsHardwareAccelerated) Gemv<Vector512<float>, Simd512, TL>(x, k, rows, rowBytes, n, bias, y);
        else if (Vector256.IsHardwareAccelerated) Gemv<Vector256<float>, Simd256, TL>(x, k, rows, rowBytes, n, bias, y);
        else if (Vector128.IsHardwareAccelerated) Gemv<Vector128<float>, Simd128, TL>(x, k, rows, rowBytes, n, bias, y);
        else Gemv<float, SimdScalar, TL>(x, k, rows, rowBytes, n, bias, y);
    }

    private static void GemvRowByRow<TL>(float* x, int k, byte* rows, int rowBytes, int n, float* bias, float* y) where TL : IWeightLoad
    {
        if (Vector512.IsHardwareAccelerated) GemvRowByRow<Vector512<float>, Simd512, TL>(x, k, rows, rowBytes, n, bias, y);
        else if (Vector256.IsHardwareAccelerated) GemvRowByRow<Vector256<float>, Simd256, TL>(x, k, rows, rowBytes, n, bias, y);
        else if (Vector128.IsHardwareAccelerated) GemvRowByRow<Vector128<float>, Simd128, TL>(x, k, rows, rowBytes, n, bias, y);
        else GemvRowByRow<float, SimdScalar, TL>(x, k, rows, rowBytes, n, bias, y);
    }

    /// <summary>
    /// y[r] = x · row r + bias[r] for r in [0, n), one row at a time. x: (K), rows: (n, rowBytes),
    /// bias: (n) or null, y: (n).
    /// </summary>
    /// <remarks>
    /// One row at a time is one sequential stream: the hardware prefetcher follows a single stream well and
    /// several interleaved ones badly. But it stops at every 4 KiB page and has to find the stream again on
    /// the next, so one software prefetch per page (<see cref="StreamPrefetch.PageAhead"/>), of the first
    /// line of the page a page ahead, keeps it running. Measured on Zen 5 (bench gemv, alternated per token, two runs each): F32 59-61 → 75-78
    /// tokens/s at one thread and 118 → 144 at two; F16 112-125 → 122-141 and 210 → 228. In C, the same loop
    /// read 25-33 GB/s without and 33-41 GB/s with it, for distances of 1-8 KiB; a prefetch of every line
    /// instead (T0, T2 or NTA, 512 B-4 KiB ahead) was slower than none.
    /// <para>It is used for F16 (finite) and for F32 rows that start on 64-byte boundaries. Measured on Zen 5
    /// before the page prefetch, variants alternating per token in one process:</para>
    /// <list type="bullet">
    /// <item>F16, one thread: one row 113-168 tokens/s; eight rows sharing each x load with the next eight
    /// prefetched into L2, 92-151; one row with a software prefetch 4 or 8 rows ahead, 136-161; two rows
    /// without one, 42-72. Two threads: 293-296 against 268-273 for eight rows.</item>
    /// <item>F32 rows on 64-byte boundaries: one row 71 tokens/s at one thread and 128 at two, against 67
    /// and 120 for four rows sharing each x load (<see cref="Gemv{TV, TS, TL}"/>). On rows that are not, every
    /// 64-byte load spans two cache lines and four rows are faster (62 against 54), so those keep them.</item>
    /// </list>
    /// A row's sum is the same chain of vector multiply-adds however the rows are grouped, so both kernels
    /// give the same bits.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void GemvRowByRow<TV, TS, TL>(float* x, nint k, byte* rows, nint rowBytes, int n, float* bias, float* y)
        where TV : unmanaged
        where TS : ISimdFloat<TV>
        where TL : IWeightLoad
    {
        nint kv = k - k % TS.Lanes;
        nint step = TS.Lanes * TL.ElementBytes; // bytes of weights per vector
        for (int r = 0; r < n; r++)
        {
            byte* w = rows + r * rowBytes;
            TV c = TS.Zero;
            for (nint i = 0; i < kv; i += TS.Lanes)
            {
                StreamPrefetch.PageAhead(w + i * TL.ElementBytes, step);
                c = TS.MultiplyAdd(TS.Load(x + i), TL.Load<TV, TS>(w, i), c);
            }
            y[r] = Finish<TL>(TS.Sum(c), x, w, kv, k, bias == null ? null : bias + r);
        }
    }

    /// <summary>y[r] = x · row r + bias[r] for r in [0, n). x: (K), rows: (n, rowBytes), bias: (n) or null, y: (n).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Gemv<TV, TS, TL>(float* x, nint k, byte* rows, nint rowBytes, int n, float* bias, float* y)
        where TV : unmanaged
        where TS : ISimdFloat<TV>
        where TL : IWeightLoad
    {
        nint kv = k - k % TS.Lanes;
        int r = 0;
        for (; r + 4 <= n; r += 4)
        {
            byte* w0 = rows + r * rowBytes, w1 = w0 + rowBytes, w2 = w1 + rowBytes, w3 = w2 + rowBytes;
            // The next four rows (contiguous after these) are prefetched at the pace these are read.
            byte* next = TL.Prefetch && Sse.IsSupported && r + 8 <= n ? w0 + 4 * rowBytes : null;
            TV c0 = TS.Zero, c1 = TS.Zero, c2 = TS.Zero, c3 = TS.Zero;
            for (nint i = 0; i < kv; i += TS.Lanes)
            {
                if (next != null)
                {
                    byte* ahead = next + 4 * i * TL.ElementBytes;
                    for (int b = 0; b < 4 * TS.Lanes * TL.ElementBytes; b += 64) Sse.Prefetch0(ahead + b);
                }
                TV xv = TS.Load(x + i);
                c0 = TS.MultiplyAdd(xv, TL.Load<TV, TS>(w0, i), c0);
                c1 = TS.MultiplyAdd(xv, TL.Load<TV, TS>(w1, i), c1);
                c2 = TS.MultiplyAdd(xv, TL.Load<TV, TS>(w2, i), c2);
                c3 = TS.MultiplyAdd(xv, TL.Load<TV, TS>(w3, i), c3);
            }
            float s0 = TS.Sum(c0), s1 = TS.Sum(c1), s2 = TS.Sum(c2), s3 = TS.Sum(c3);
            y[r] = Finish<TL>(s0, x, w0, kv, k, bias == null ? null : bias + r);
            y[r + 1] = Finish<TL>(s1, x, w1, kv, k, bias == null ? null : bias + r + 1);
            y[r + 2] = Finish<TL>(s2, x, w2, kv, k, bias == null ? null : bias + r + 2);
            y[r + 3] = Finish<TL>(s3, x, w3, kv, k, bias == null ? null : bias + r + 3);
        }
        for (; r < n; r++)
        {
            byte* w = rows + r * rowBytes;
            TV c = TS.Zero;
            for (nint i = 0; i < kv; i += TS.Lanes) c = TS.MultiplyAdd(TS.Load(x + i), TL.Load<TV, TS>(w, i), c);
            y[r] = Finish<TL>(TS.Sum(c), x, w, kv, k, bias == null ? null : bias + r);
        }
    }

    // The common ending of every output: after the lanes are summed (s), the leftover K products are
    // added in order, then the bias.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Finish<TL>(float s, float* x, byte* w, nint kv, nint k, float* bias)
        where TL : IWeightLoad
    {
        for (nint i = kv; i < k; i++) s += x[i] * TL.LoadScalar(w, i);
        return bias == null ? s : s + *bias;
    }

    // ---- prefill: many tokens against a float panel, accumulators kept in `state` across K chunks ----

    /// <summary>
    /// y[t, r] = x[t] · w[r] + bias[r] for t in [0, T), r in [0, n). x: (T, ldx) and w: (n, ldw) with K
    /// used per row, bias: (n) or null, y: (T, ldy) with the block's first row at column 0,
    /// state: (min(T, TokenChunk), n) registers of scratch.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Blocked<TV, TS>(float* x, int ldx, int tokens, int k, float* w, int ldw, int n, float* bias, float* y, int ldy, TV* state)
        where TV : unmanaged
        where TS : ISimdFloat<TV>
    {
        nint kv = k - k % TS.Lanes;
        int tile = TS.Lanes >= 16 ? 4 : 2;
        for (int t0 = 0; t0 < tokens; t0 += TokenChunk)
        {
            int tc = Math.Min(TokenChunk, tokens - t0);
            float* xc = x + (long)t0 * ldx;
            for (int i = 0; i < tc * n; i++) state[i] = TS.Zero;

            for (nint k0 = 0; k0 < kv; k0 += KChunk)
            {
                nint k1 = Math.Min(k0 + KChunk, kv);
                int t = 0;
                for (; t + tile <= tc; t += tile)
                {
                    float* xt = xc + (long)t * ldx;
                    TV* st = state + t * n;
                    int r = 0;
                    if (tile == 4)
                    {
                        for (; r + 4 <= n; r += 4) Tile4x4<TV, TS>(xt, ldx, w + (long)r * ldw, ldw, k0, k1, st + r, n);
                    }
                    else
                    {
                        for (; r + 4 <= n; r += 4) Tile2x4<TV, TS>(xt, ldx, w + (long)r * ldw, ldw, k0, k1, st + r, n);
                    }
                    for (; r < n; r++)
                    {
                        for (int i = 0; i < tile; i++) Tile1x1<TV, TS>(xt + (long)i * ldx, w + (long)r * ldw, k0, k1, st + i * n + r);
                    }
                }
                for (; t < tc; t++)
                {
                    float* xt = xc + (long)t * ldx;
                    TV* st = state + t * n;
                    int r = 0;
                    for (; r + 4 <= n; r += 4) Tile1x4<TV, TS>(xt, w + (long)r * ldw, ldw, k0, k1, st + r);
                    for (; r < n; r++) Tile1x1<TV, TS>(xt, w + (long)r * ldw, k0, k1, st + r);
                }
            }

            for (int t = 0; t < tc; t++)
            {
                float* xt = xc + (long)t * ldx;
                float* yt = y + (long)(t0 + t) * ldy;
                for (int r = 0; r < n; r++)
                    yt[r] = Finish<LoadF32>(TS.Sum(state[t * n + r]), xt, (byte*)(w + (long)r * ldw), kv, k, bias == null ? null : bias + r);
            }
        }
    }

    // s += x[k0..k1) ⊙ w[k0..k1), one register at a time.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile1x1<TV, TS>(float* x, float* w, nint k0, nint k1, TV* s)
        where TV : unmanaged
        where TS : ISimdFloat<TV>
    {
        TV c = *s;
        for (nint i = k0; i < k1; i += TS.Lanes) c = TS.MultiplyAdd(TS.Load(x + i), TS.Load(w + i), c);
        *s = c;
    }

    // One token × four rows (w, w+ldw, ...); s: the four accumulators.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile1x4<TV, TS>(float* x, float* w, nint ldw, nint k0, nint k1, TV* s)
        where TV : unmanaged
        where TS : ISimdFloat<TV>
    {
        float* w0 = w, w1 = w + ldw, w2 = w + 2 * ldw, w3 = w + 3 * ldw;
        TV c0 = s[0], c1 = s[1], c2 = s[2], c3 = s[3];
        for (nint i = k0; i < k1; i += TS.Lanes)
        {
            TV xv = TS.Load(x + i);
            c0 = TS.MultiplyAdd(xv, TS.Load(w0 + i), c0);
            c1 = TS.MultiplyAdd(xv, TS.Load(w1 + i), c1);
            c2 = TS.MultiplyAdd(xv, TS.Load(w2 + i), c2);
            c3 = TS.MultiplyAdd(xv, TS.Load(w3 + i), c3);
        }
        s[0] = c0; s[1] = c1; s[2] = c2; s[3] = c3;
    }

    // Two tokens × four rows: 8 accumulators, for 16-register ISAs. s: (2, lds).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile2x4<TV, TS>(float* x, nint ldx, float* w, nint ldw, nint k0, nint k1, TV* s, nint lds)
        where TV : unmanaged
        where TS : ISimdFloat<TV>
    {
        float* x0 = x, x1 = x + ldx;
        float* w0 = w, w1 = w + ldw, w2 = w + 2 * ldw, w3 = w + 3 * ldw;
        TV* s0 = s, s1 = s + lds;
        TV c00 = s0[0], c01 = s0[1], c02 = s0[2], c03 = s0[3];
        TV c10 = s1[0], c11 = s1[1], c12 = s1[2], c13 = s1[3];
        for (nint i = k0; i < k1; i += TS.Lanes)
        {
            TV a0 = TS.Load(x0 + i), a1 = TS.Load(x1 + i);
            TV b = TS.Load(w0 + i);
            c00 = TS.MultiplyAdd(a0, b, c00);
            c10 = TS.MultiplyAdd(a1, b, c10);
            b = TS.Load(w1 + i);
            c01 = TS.MultiplyAdd(a0, b, c01);
            c11 = TS.MultiplyAdd(a1, b, c11);
            b = TS.Load(w2 + i);
            c02 = TS.MultiplyAdd(a0, b, c02);
            c12 = TS.MultiplyAdd(a1, b, c12);
            b = TS.Load(w3 + i);
            c03 = TS.MultiplyAdd(a0, b, c03);
            c13 = TS.MultiplyAdd(a1, b, c13);
        }
        s0[0] = c00; s0[1] = c01; s0[2] = c02; s0[3] = c03;
        s1[0] = c10; s1[1] = c11; s1[2] = c12; s1[3] = c13;
    }

    // Four tokens × four rows: 16 accumulators, for 32-register ISAs (AVX-512). s: (4, lds).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile4x4<TV, TS>(float* x, nint ldx, float* w, nint ldw, nint k0, nint k1, TV* s, nint lds)
        where TV : unmanaged
        where TS : ISimdFloat<TV>
    {
        float* x0 = x, x1 = x + ldx, x2 = x + 2 * ldx, x3 = x + 3 * ldx;
        float* w0 = w, w1 = w + ldw, w2 = w + 2 * ldw, w3 = w + 3 * ldw;
        TV* s0 = s, s1 = s + lds, s2 = s + 2 * lds, s3 = s + 3 * lds;
        TV c00 = s0[0], c01 = s0[1], c02 = s0[2], c03 = s0[3];
        TV c10 = s1[0], c11 = s1[1], c12 = s1[2], c13 = s1[3];
        TV c20 = s2[0], c21 = s2[1], c22 = s2[2], c23 = s2[3];
        TV c30 = s3[0], c31 = s3[1], c32 = s3[2], c33 = s3[3];
        for (nint i = k0; i < k1; i += TS.Lanes)
        {
            TV a0 = TS.Load(x0 + i), a1 = TS.Load(x1 + i), a2 = TS.Load(x2 + i), a3 = TS.Load(x3 + i);
            TV b = TS.Load(w0 + i);
            c00 = TS.MultiplyAdd(a0, b, c00);
            c10 = TS.MultiplyAdd(a1, b, c10);
            c20 = TS.MultiplyAdd(a2, b, c20);
            c30 = TS.MultiplyAdd(a3, b, c30);
            b = TS.Load(w1 + i);
            c01 = TS.MultiplyAdd(a0, b, c01);
            c11 = TS.MultiplyAdd(a1, b, c11);
            c21 = TS.MultiplyAdd(a2, b, c21);
            c31 = TS.MultiplyAdd(a3, b, c31);
            b = TS.Load(w2 + i);
            c02 = TS.MultiplyAdd(a0, b, c02);
            c12 = TS.MultiplyAdd(a1, b, c12);
            c22 = TS.MultiplyAdd(a2, b, c22);
            c32 = TS.MultiplyAdd(a3, b, c32);
            b = TS.Load(w3 + i);
            c03 = TS.MultiplyAdd(a0, b, c03);
            c13 = TS.MultiplyAdd(a1, b, c13);
            c23 = TS.MultiplyAdd(a2, b, c23);
            c33 = TS.MultiplyAdd(a3, b, c33);
        }
        s0[0] = c00; s0[1] = c01; s0[2] = c02; s0[3] = c03;
        s1[0] = c10; s1[1] = c11; s1[2] = c12; s1[3] = c13;
        s2[0] = c20; s2[1] = c21; s2[2] = c22; s2[3] = c23;
        s3[0] = c30; s3[1] = c31; s3[2] = c32; s3[3] = c33;
    }

    /// <summary>The definition: each row converted element by element, products summed in double.</summary>
    internal static class Reference
    {
        /// <summary>y = x·Wᵀ + b. x: (T, Cols), bias: (Rows) or empty, y: (T, Rows).</summary>
        public static void Forward(ReadOnlySpan<float> x, WeightMatrix w, ReadOnlySpan<float> bias, int tokens, Span<float> y)
        {
            Validate(x, w, bias, tokens, y);
            var row = new float[w.Cols];
            for (int r = 0; r < w.Rows; r++)
            {
                DequantizeRow(w, r, row);
                for (int t = 0; t < tokens; t++)
                {
                    double s = 0;
                    for (int k = 0; k < w.Cols; k++) s += (double)RoundScalar(x[t * w.Cols + k], w.Type) * row[k];
                    if (!bias.IsEmpty) s += bias[r];
                    y[t * w.Rows + r] = (float)s;
                }
            }
        }

        /// <summary>One activation as the weight type's dot product sees it (see <see cref="RoundsActivations"/>).</summary>
        public static float RoundScalar(float v, GgmlType type) => type switch
        {
            GgmlType.F16 => RowConvert.Reference.HalfToSingle(RowConvert.Reference.SingleToHalf(v)),
            GgmlType.BF16 => RowConvert.Reference.BFloat16ToSingle(RowConvert.Reference.SingleToBFloat16(v)),
            _ => v,
        };

        /// <summary>Row <paramref name="r"/> of <paramref name="w"/> as floats, one element at a time. dst: (Cols).</summary>
        public static void DequantizeRow(WeightMatrix w, int r, Span<float> dst)
        {
            ReadOnlySpan<byte> bytes = w.RowData(r);
            switch (w.Type)
            {
                case GgmlType.F32:
                    MemoryMarshal.Cast<byte, float>(bytes).CopyTo(dst);
                    break;
                case GgmlType.F16:
                    RowConvert.Reference.HalfToSingle(MemoryMarshal.Cast<byte, ushort>(bytes), dst);
                    break;
                case GgmlType.BF16:
                    RowConvert.Reference.BFloat16ToSingle(MemoryMarshal.Cast<byte, ushort>(bytes), dst);
                    break;
                default:
                    throw new NotSupportedException($"No reference dequantizer for {w.Type}.");
            }
        }
    }
}
