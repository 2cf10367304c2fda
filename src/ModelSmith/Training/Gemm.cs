using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using ModelSmith.Tensors;

namespace ModelSmith.Training;

/// <summary>A matrix operand read through strides: element (i, j) is at Data[i·RowStride + j·ColStride].</summary>
internal readonly unsafe struct Strided(float* data, long rowStride, long colStride)
{
    public readonly float* Data = data;
    public readonly long RowStride = rowStride;
    public readonly long ColStride = colStride;

    /// <summary>A row-major (rows, ld) matrix: element (i, j) at data[i·ld + j].</summary>
    public static Strided Rows(float* data, long ld) => new(data, ld, 1);

    /// <summary>The transpose of a row-major (rows, ld) matrix: element (i, j) at data[j·ld + i].</summary>
    public static Strided Columns(float* data, long ld) => new(data, 1, ld);

    public float* At(long i, long j) => Data + i * RowStride + j * ColStride;
}

/// <summary>Which part of a product a causal-attention GEMM needs (the rest is known to be zero or unused).</summary>
internal enum GemmMask
{
    /// <summary>All of C, all of the depth.</summary>
    None,

    /// <summary>Only C[i, j] with j ≤ i is needed (tiles wholly above the diagonal are skipped, left as they were).</summary>
    LowerColumns,

    /// <summary>A[i, kk] is zero for kk &gt; i: row i sums over depth [0, i].</summary>
    LowerDepth,

    /// <summary>A[i, kk] is zero for kk &lt; i: row i sums over depth [i, K).</summary>
    UpperDepth,
}

/// <summary>
/// C (M, N) = A (M, K) · B (K, N), or C += A·B, with A and B read through arbitrary strides: the forward
/// (Y = X·Wᵀ), input-gradient (dX = dY·W) and weight-gradient (dW += dYᵀ·X) products of every linear layer,
/// and the per-head products of causal attention.
/// </summary>
/// <remarks>
/// <para><b>Method</b> (after BLIS / GotoBLAS). B is packed once into column panels of <see cref="Nr"/>
/// floats, (K, Nr) each, zero-padded; a work item owns a block of <see cref="Mc"/> rows × up to
/// <see cref="NcPanels"/> panels of C, packs its rows of A, <see cref="Kc"/> deep at a time, into
/// micro-panels (Kc, Mr), and runs the micro-kernel on each Mr × Nr tile of C: Mr·Nr/lanes accumulators in
/// registers, per depth step Nr/lanes loads of B and Mr broadcasts of A feeding Mr·Nr/lanes fused
/// multiply-adds. With AVX-512 the tile is 6 × 64 (24 accumulators of 32 registers), with 16-register
/// ISAs 6 × 2 registers. A Kc × Nr micro-panel of B (32 KiB) stays in L1 while the row tiles stream by;
/// the packed A block stays in L2. Transposed operands cost only a strided pack.</para>
/// <para><b>Determinism.</b> Every element of C is one chain of fused multiply-adds over the depth in
/// increasing order, starting from 0 (or from C's old value when accumulating), whatever the tile, block,
/// panel, vector width or thread that computes it. So the result is bit-identical for every thread count
/// and every ISA with FMA, and equal to the scalar chain c = fma(a[i,k], b[k,j], c) for k = 0, 1, ...</para>
/// </remarks>
internal static unsafe class Gemm
{
    /// <summary>Rows of a micro-tile.</summary>
    public const int Mr = 6;

    /// <summary>Depth of a packed block: a Kc × Nr micro-panel of B is 32 KiB with AVX-512, inside L1.</summary>
    public const int Kc = 128;

    /// <summary>Rows of C per work item (8 micro-tiles).</summary>
    public const int Mc = 8 * Mr;

    /// <summary>Column panels of C per work item at most.</summary>
    public const int NcPanels = 8;

    /// <summary>Columns of a micro-tile and of a packed B panel: 4 registers wide with AVX-512, else 2.</summary>
    public static int Nr { get; } =
        Vector512.IsHardwareAccelerated ? 64 :
        Vector256.IsHardwareAccelerated ? 16 :
        Vector128.IsHardwareAccelerated ? 8 : 2;

    /// <summary>Panels of <see cref="Nr"/> columns covering N columns.</summary>
    public static int PanelCount(int n) => (n + Nr - 1) / Nr;

    /// <summary>Floats the packed form of a (K, N) B takes.</summary>
    public static long PackedBLength(int k, int n) => (long)k * PanelCount(n) * Nr;

    /// <summary>Floats of scratch <see cref="Compute"/> needs for packing A.</summary>
    public static int PackedALength => Mc * Kc;

    /// <summary>
    /// C = A·B (or C += A·B when <paramref name="accumulate"/>) on <paramref name="pool"/>.
    /// A: (M, K), B: (K, N) through their strides; C: (M, N) row-major with row stride <paramref name="ldc"/>.
    /// C must not overlap A or B. Bit-identical for every thread count.
    /// </summary>
    public static void Multiply(ComputePool pool, GemmBuffer buffer, Strided a, Strided b, int m, int n, int k, float* c, long ldc, bool accumulate)
    {
        if (m <= 0 || n <= 0) return;
        if (k == 0)
        {
            if (!accumulate) Clear(c, ldc, m, n);
            return;
        }
        int panels = PanelCount(n);
        float* packed = buffer.Get(PackedBLength(k, n));
        var pack = new PackJob { B = b, K = k, N = n, Packed = packed };
        pool.Run(in pack, panels);
        int colBlocks = (panels + NcPanels - 1) / NcPanels;
        var job = new ComputeJob
        {
            A = a,
            Packed = packed,
            C = c,
            Ldc = ldc,
            M = m,
            N = n,
            K = k,
            Panels = panels,
            ColBlocks = colBlocks,
            Accumulate = accumulate,
            Pool = pool,
        };
        pool.Run(in job, (m + Mc - 1) / Mc * colBlocks);
    }

    /// <summary>
    /// Single-threaded C = A·B or C += A·B with B already packed by <see cref="PackB"/>, for use inside a
    /// parallel job (attention heads). With <see cref="GemmMask.LowerColumns"/> the tiles wholly above the
    /// diagonal are not written at all. packA: <see cref="PackedALength"/> floats of scratch.
    /// </summary>
    public static void MultiplyPacked(Strided a, float* packedB, int m, int n, int k, float* c, long ldc, bool accumulate, GemmMask mask, float* packA)
    {
        if (m <= 0 || n <= 0) return;
        if (!accumulate)
        {
            // Rows that no depth step reaches would otherwise keep their old contents.
            int reached = k == 0 ? 0 : mask == GemmMask.UpperDepth ? Math.Min(m, k) : m;
            if (reached < m) Clear(c + reached * ldc, ldc, m - reached, n);
        }
        for (int i0 = 0; i0 < m; i0 += Mc)
            Compute(a, packedB, n, k, c, ldc, i0, Math.Min(m, i0 + Mc), 0, PanelCount(n), mask, accumulate, packA);
    }

    /// <summary>
    /// Packs panels [p0, p1) of B (K, N) into <paramref name="packed"/>: panel p holds columns
    /// [p·Nr, p·Nr + Nr) as (K, Nr) at offset p·K·Nr, zero-padded past column N.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackB(Strided b, int k, int n, int p0, int p1, float* packed)
    {
        int nr = Nr;
        for (int p = p0; p < p1; p++)
        {
            float* panel = packed + (long)p * k * nr;
            int j0 = p * nr, w = Math.Min(nr, n - j0);
            if (b.ColStride == 1)
            {
                for (int kk = 0; kk < k; kk++)
                {
                    float* src = b.At(kk, j0);
                    float* dst = panel + (long)kk * nr;
                    new ReadOnlySpan<float>(src, w).CopyTo(new Span<float>(dst, w));
                    if (w < nr) new Span<float>(dst + w, nr - w).Clear();
                }
            }
            else
            {
                // A transposed operand: walk each column of B along its (contiguous) depth.
                for (int jj = 0; jj < nr; jj++)
                {
                    float* dst = panel + jj;
                    if (jj >= w)
                    {
                        for (int kk = 0; kk < k; kk++) dst[(long)kk * nr] = 0f;
                        continue;
                    }
                    float* src = b.At(0, j0 + jj);
                    long rs = b.RowStride;
                    for (int kk = 0; kk < k; kk++) dst[(long)kk * nr] = src[kk * rs];
                }
            }
        }
    }

    private static void Clear(float* c, long ldc, int m, int n)
    {
        for (int i = 0; i < m; i++) new Span<float>(c + i * ldc, n).Clear();
    }

    /// <summary>
    /// Rows [i0, i1) × panels [panel0, panel1) of C from the packed B, over the whole depth. Unless
    /// accumulating, a tile's first depth block starts its accumulators from 0 instead of loading C.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Compute(Strided a, float* packedB, int n, int k, float* c, long ldc, int i0, int i1, int panel0, int panel1, GemmMask mask, bool accumulate, float* packA)
    {
        int nr = Nr;
        for (int pc = 0; pc < k; pc += Kc)
        {
            int kc = Math.Min(Kc, k - pc);
            if (mask == GemmMask.LowerDepth && pc >= i1) break;
            if (mask == GemmMask.UpperDepth && pc + kc <= i0) continue;
            PackA(a, i0, i1 - i0, pc, kc, packA);
            for (int p = panel0; p < panel1; p++)
            {
                int j0 = p * nr, w = Math.Min(nr, n - j0);
                float* bp = packedB + (long)p * k * nr + (long)pc * nr;
                for (int r0 = i0; r0 < i1; r0 += Mr)
                {
                    int h = Math.Min(Mr, i1 - r0);
                    if (mask == GemmMask.LowerColumns && j0 > r0 + h - 1) continue;
                    int lo = 0, hi = kc;
                    if (mask == GemmMask.LowerDepth) hi = Math.Min(kc, r0 + h - pc);
                    else if (mask == GemmMask.UpperDepth) lo = Math.Max(0, r0 - pc);
                    if (lo >= hi) continue;
                    float* ap = packA + (long)(r0 - i0) * kc + (long)lo * Mr;
                    bool first = mask == GemmMask.UpperDepth ? r0 >= pc : pc == 0;
                    Tile(ap, bp + (long)lo * nr, hi - lo, c + r0 * ldc + j0, ldc, h, w, accumulate || !first);
                }
            }
        }
    }

    /// <summary>
    /// Packs rows [i0, i0 + rows) × depth [k0, k0 + kc) of A into micro-panels of Mr rows, (kc, Mr) each,
    /// zero-padded past the last row.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackA(Strided a, int i0, int rows, int k0, int kc, float* dst)
    {
        for (int t = 0; t < rows; t += Mr)
        {
            float* panel = dst + (long)t * kc;
            int h = Math.Min(Mr, rows - t);
            if (a.ColStride == 1)
            {
                for (int r = 0; r < h; r++)
                {
                    float* src = a.At(i0 + t + r, k0);
                    for (int kk = 0; kk < kc; kk++) panel[kk * Mr + r] = src[kk];
                }
            }
            else
            {
                long rs = a.RowStride;
                for (int kk = 0; kk < kc; kk++)
                {
                    float* src = a.At(i0 + t, k0 + kk);
                    for (int r = 0; r < h; r++) panel[kk * Mr + r] = src[r * rs];
                }
            }
            for (int r = h; r < Mr; r++)
                for (int kk = 0; kk < kc; kk++) panel[kk * Mr + r] = 0f;
        }
    }

    /// <summary>
    /// C[0..h, 0..w) = (load ? C : 0) + Ã·B̃ over kc depth steps; a partial tile goes through a full-size copy.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile(float* a, float* b, int kc, float* c, long ldc, int h, int w, bool load)
    {
        int nr = Nr;
        if (h == Mr && w == nr)
        {
            Kernel(a, b, kc, c, ldc, load);
            return;
        }
        float* tile = stackalloc float[Mr * 64];
        for (int r = 0; r < Mr; r++)
        {
            float* row = tile + r * nr;
            new Span<float>(row, nr).Clear();
            if (load && r < h) new ReadOnlySpan<float>(c + r * ldc, w).CopyTo(new Span<float>(row, w));
        }
        Kernel(a, b, kc, tile, nr, load: true);
        for (int r = 0; r < h; r++) new ReadOnlySpan<float>(tile + r * nr, w).CopyTo(new Span<float>(c + r * ldc, w));
    }

    private static void Kernel(float* a, float* b, int kc, float* c, long ldc, bool load)
    {
        if (Vector512.IsHardwareAccelerated) Kernel4<Vector512<float>, GemmV512>(a, b, kc, c, ldc, load);
        else if (Vector256.IsHardwareAccelerated) Kernel2<Vector256<float>, GemmV256>(a, b, kc, c, ldc, load);
        else if (Vector128.IsHardwareAccelerated) Kernel2<Vector128<float>, GemmV128>(a, b, kc, c, ldc, load);
        else Kernel2<float, GemmScalar>(a, b, kc, c, ldc, load);
    }

    // 6 rows × 4 registers: 24 accumulators, 4 loads of B and 6 broadcasts of A per depth step.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel4<TV, TS>(float* a, float* b, int kc, float* c, long ldc, bool load)
        where TV : unmanaged
        where TS : IGemmVector<TV>
    {
        int l = TS.Lanes;
        float* c0 = c, c1 = c0 + ldc, c2 = c1 + ldc, c3 = c2 + ldc, c4 = c3 + ldc, c5 = c4 + ldc;
        TV x00 = TS.Zero, x01 = TS.Zero, x02 = TS.Zero, x03 = TS.Zero;
        TV x10 = TS.Zero, x11 = TS.Zero, x12 = TS.Zero, x13 = TS.Zero;
        TV x20 = TS.Zero, x21 = TS.Zero, x22 = TS.Zero, x23 = TS.Zero;
        TV x30 = TS.Zero, x31 = TS.Zero, x32 = TS.Zero, x33 = TS.Zero;
        TV x40 = TS.Zero, x41 = TS.Zero, x42 = TS.Zero, x43 = TS.Zero;
        TV x50 = TS.Zero, x51 = TS.Zero, x52 = TS.Zero, x53 = TS.Zero;
        if (load)
        {
            x00 = TS.Load(c0); x01 = TS.Load(c0 + l); x02 = TS.Load(c0 + 2 * l); x03 = TS.Load(c0 + 3 * l);
            x10 = TS.Load(c1); x11 = TS.Load(c1 + l); x12 = TS.Load(c1 + 2 * l); x13 = TS.Load(c1 + 3 * l);
            x20 = TS.Load(c2); x21 = TS.Load(c2 + l); x22 = TS.Load(c2 + 2 * l); x23 = TS.Load(c2 + 3 * l);
            x30 = TS.Load(c3); x31 = TS.Load(c3 + l); x32 = TS.Load(c3 + 2 * l); x33 = TS.Load(c3 + 3 * l);
            x40 = TS.Load(c4); x41 = TS.Load(c4 + l); x42 = TS.Load(c4 + 2 * l); x43 = TS.Load(c4 + 3 * l);
            x50 = TS.Load(c5); x51 = TS.Load(c5 + l); x52 = TS.Load(c5 + 2 * l); x53 = TS.Load(c5 + 3 * l);
        }
        for (int kk = 0; kk < kc; kk++)
        {
            TV b0 = TS.Load(b), b1 = TS.Load(b + l), b2 = TS.Load(b + 2 * l), b3 = TS.Load(b + 3 * l);
            TV s = TS.Broadcast(a);
            x00 = TS.MultiplyAdd(s, b0, x00); x01 = TS.MultiplyAdd(s, b1, x01); x02 = TS.MultiplyAdd(s, b2, x02); x03 = TS.MultiplyAdd(s, b3, x03);
            s = TS.Broadcast(a + 1);
            x10 = TS.MultiplyAdd(s, b0, x10); x11 = TS.MultiplyAdd(s, b1, x11); x12 = TS.MultiplyAdd(s, b2, x12); x13 = TS.MultiplyAdd(s, b3, x13);
            s = TS.Broadcast(a + 2);
            x20 = TS.MultiplyAdd(s, b0, x20); x21 = TS.MultiplyAdd(s, b1, x21); x22 = TS.MultiplyAdd(s, b2, x22); x23 = TS.MultiplyAdd(s, b3, x23);
            s = TS.Broadcast(a + 3);
            x30 = TS.MultiplyAdd(s, b0, x30); x31 = TS.MultiplyAdd(s, b1, x31); x32 = TS.MultiplyAdd(s, b2, x32); x33 = TS.MultiplyAdd(s, b3, x33);
            s = TS.Broadcast(a + 4);
            x40 = TS.MultiplyAdd(s, b0, x40); x41 = TS.MultiplyAdd(s, b1, x41); x42 = TS.MultiplyAdd(s, b2, x42); x43 = TS.MultiplyAdd(s, b3, x43);
            s = TS.Broadcast(a + 5);
            x50 = TS.MultiplyAdd(s, b0, x50); x51 = TS.MultiplyAdd(s, b1, x51); x52 = TS.MultiplyAdd(s, b2, x52); x53 = TS.MultiplyAdd(s, b3, x53);
            a += Mr;
            b += 4 * l;
        }
        TS.Store(x00, c0); TS.Store(x01, c0 + l); TS.Store(x02, c0 + 2 * l); TS.Store(x03, c0 + 3 * l);
        TS.Store(x10, c1); TS.Store(x11, c1 + l); TS.Store(x12, c1 + 2 * l); TS.Store(x13, c1 + 3 * l);
        TS.Store(x20, c2); TS.Store(x21, c2 + l); TS.Store(x22, c2 + 2 * l); TS.Store(x23, c2 + 3 * l);
        TS.Store(x30, c3); TS.Store(x31, c3 + l); TS.Store(x32, c3 + 2 * l); TS.Store(x33, c3 + 3 * l);
        TS.Store(x40, c4); TS.Store(x41, c4 + l); TS.Store(x42, c4 + 2 * l); TS.Store(x43, c4 + 3 * l);
        TS.Store(x50, c5); TS.Store(x51, c5 + l); TS.Store(x52, c5 + 2 * l); TS.Store(x53, c5 + 3 * l);
    }

    // 6 rows × 2 registers: 12 accumulators, for 16-register ISAs.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel2<TV, TS>(float* a, float* b, int kc, float* c, long ldc, bool load)
        where TV : unmanaged
        where TS : IGemmVector<TV>
    {
        int l = TS.Lanes;
        float* c0 = c, c1 = c0 + ldc, c2 = c1 + ldc, c3 = c2 + ldc, c4 = c3 + ldc, c5 = c4 + ldc;
        TV x00 = TS.Zero, x01 = TS.Zero, x10 = TS.Zero, x11 = TS.Zero, x20 = TS.Zero, x21 = TS.Zero;
        TV x30 = TS.Zero, x31 = TS.Zero, x40 = TS.Zero, x41 = TS.Zero, x50 = TS.Zero, x51 = TS.Zero;
        if (load)
        {
            x00 = TS.Load(c0); x01 = TS.Load(c0 + l);
            x10 = TS.Load(c1); x11 = TS.Load(c1 + l);
            x20 = TS.Load(c2); x21 = TS.Load(c2 + l);
            x30 = TS.Load(c3); x31 = TS.Load(c3 + l);
            x40 = TS.Load(c4); x41 = TS.Load(c4 + l);
            x50 = TS.Load(c5); x51 = TS.Load(c5 + l);
        }
        for (int kk = 0; kk < kc; kk++)
        {
            TV b0 = TS.Load(b), b1 = TS.Load(b + l);
            TV s = TS.Broadcast(a);
            x00 = TS.MultiplyAdd(s, b0, x00); x01 = TS.MultiplyAdd(s, b1, x01);
            s = TS.Broadcast(a + 1);
            x10 = TS.MultiplyAdd(s, b0, x10); x11 = TS.MultiplyAdd(s, b1, x11);
            s = TS.Broadcast(a + 2);
            x20 = TS.MultiplyAdd(s, b0, x20); x21 = TS.MultiplyAdd(s, b1, x21);
            s = TS.Broadcast(a + 3);
            x30 = TS.MultiplyAdd(s, b0, x30); x31 = TS.MultiplyAdd(s, b1, x31);
            s = TS.Broadcast(a + 4);
            x40 = TS.MultiplyAdd(s, b0, x40); x41 = TS.MultiplyAdd(s, b1, x41);
            s = TS.Broadcast(a + 5);
            x50 = TS.MultiplyAdd(s, b0, x50); x51 = TS.MultiplyAdd(s, b1, x51);
            a += Mr;
            b += 2 * l;
        }
        TS.Store(x00, c0); TS.Store(x01, c0 + l);
        TS.Store(x10, c1); TS.Store(x11, c1 + l);
        TS.Store(x20, c2); TS.Store(x21, c2 + l);
        TS.Store(x30, c3); TS.Store(x31, c3 + l);
        TS.Store(x40, c4); TS.Store(x41, c4 + l);
        TS.Store(x50, c5); TS.Store(x51, c5 + l);
    }

    private struct PackJob : IParallelJob
    {
        public Strided B;
        public int K, N;
        public float* Packed;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int item, int worker) => PackB(B, K, N, item, item + 1, Packed);
    }

    private struct ComputeJob : IParallelJob
    {
        public Strided A;
        public float* Packed;
        public float* C;
        public long Ldc;
        public int M, N, K, Panels, ColBlocks;
        public bool Accumulate;
        public ComputePool Pool;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int item, int worker)
        {
            int i0 = item / ColBlocks * Mc, i1 = Math.Min(M, i0 + Mc);
            int p0 = item % ColBlocks * NcPanels, p1 = Math.Min(Panels, p0 + NcPanels);
            float* packA = Pool.GetScratchPointer(worker, PackedALength);
            Compute(A, Packed, N, K, C, Ldc, i0, i1, p0, p1, GemmMask.None, Accumulate, packA);
        }
    }

    /// <summary>The definition: C = A·B (+ C), products summed in double in depth order.</summary>
    internal static class Reference
    {
        public static void Multiply(Strided a, Strided b, int m, int n, int k, float* c, long ldc, bool accumulate)
        {
            for (int i = 0; i < m; i++)
            {
                for (int j = 0; j < n; j++)
                {
                    double s = accumulate ? c[i * ldc + j] : 0;
                    for (int kk = 0; kk < k; kk++) s += (double)*a.At(i, kk) * *b.At(kk, j);
                    c[i * ldc + j] = (float)s;
                }
            }
        }
    }
}

/// <summary>A growable 64-byte-aligned native float buffer (the packed B operand of <see cref="Gemm"/>).</summary>
internal sealed unsafe class GemmBuffer : IDisposable
{
    private float* _data;
    private long _length;
    private bool _disposed;

    /// <summary>At least <paramref name="length"/> floats, contents undefined; valid until the next larger request.</summary>
    public float* Get(long length)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (length > _length)
        {
            NativeMemory.AlignedFree(_data);
            _data = null;
            _length = 0;
            _data = (float*)NativeMemory.AlignedAlloc((nuint)Math.Max(length, 16) * sizeof(float), 64);
            _length = length;
        }
        return _data;
    }

    public void Dispose()
    {
        _disposed = true;
        NativeMemory.AlignedFree(_data);
        _data = null;
        _length = 0;
    }
}
