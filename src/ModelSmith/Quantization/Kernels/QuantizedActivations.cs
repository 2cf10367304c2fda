using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using ModelSmith.Formats;

namespace ModelSmith.Quantization.Kernels;

/// <summary>
/// The activations of a matmul (T tokens of K values) quantized once to the weight type's vec_dot_type,
/// in the layout the block kernels read: the int8 quants of every token back to back, and the per-block
/// numbers in their own arrays.
/// </summary>
/// <remarks>
/// <para>Same values as ggml's blocks (see <see cref="VecDotReference.QuantizeQ8_0"/>,
/// <see cref="VecDotReference.QuantizeQ8_1"/>, <see cref="Q8_K.QuantizeRow"/>), stored differently:</para>
/// <list type="bullet">
/// <item>Q8_0/Q8_1 (blocks of 32): <see cref="Quants"/> (T, K); <see cref="Scales"/> (T, K/32), the F16
/// scale d widened to float; <see cref="BlockSums"/> (T, K/32), Σq of each block, which the kernels use to
/// take the offset out of unsigned weight levels; for Q8_1 <see cref="Offsets"/> (T, K/32), the F16 s
/// widened.</item>
/// <item>Q8_K (super-blocks of 256): <see cref="Quants"/> (T, K) with each run of 32 quants reordered so that
/// bytes 4l..4l+3 hold elements l, l+8, l+16, l+24 (<see cref="Interleave"/>): pairs of adjacent bytes
/// then share ggml's lane l = element mod 8 and one 16-element sub-block, which lets a pairwise
/// multiply-add keep ggml's eight lane sums apart; <see cref="Scales"/> (T, K/256), d;
/// <see cref="GroupSums"/> (T, K/256, 16), ggml's bsums (sums of 16 consecutive quants, natural order).</item>
/// </list>
/// <para>One instance per calling thread, grown on demand and reused, so a forward pass allocates nothing.</para>
/// </remarks>
internal sealed unsafe class QuantizedActivations
{
    /// <summary>Byte i of a 32-quant run holds element <c>Interleave[i]</c> = 8·(i mod 4) + i/4 of the run.</summary>
    public static ReadOnlySpan<byte> Interleave =>
    [
        0, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27,
        4, 12, 20, 28, 5, 13, 21, 29, 6, 14, 22, 30, 7, 15, 23, 31,
    ];

    [ThreadStatic]
    private static QuantizedActivations? t_instance;

    private byte[] _buffer = [];
    private byte* _base;

    /// <summary>The calling thread's buffers.</summary>
    public static QuantizedActivations ForCurrentThread() => t_instance ??= new QuantizedActivations();

    public GgmlType Type { get; private set; }

    public int Tokens { get; private set; }

    /// <summary>Values per token.</summary>
    public int K { get; private set; }

    /// <summary>Blocks per token: K/32 for Q8_0/Q8_1, K/256 for Q8_K.</summary>
    public int Blocks { get; private set; }

    /// <summary>(T, K) int8 quants.</summary>
    public sbyte* Quants { get; private set; }

    /// <summary>(T, Blocks) block scales d as float.</summary>
    public float* Scales { get; private set; }

    /// <summary>(T, Blocks) Σq per 32-block (Q8_0/Q8_1).</summary>
    public int* BlockSums { get; private set; }

    /// <summary>(T, Blocks) Q8_1's s = F16(d·Σq) as float.</summary>
    public float* Offsets { get; private set; }

    /// <summary>(T, Blocks, 16) Q8_K's bsums.</summary>
    public short* GroupSums { get; private set; }

    /// <summary>
    /// True when the Q8_0/Q8_1 quants of each full group of 8 blocks are stored block-interleaved: byte
    /// 32j + 4i + t of the group holds byte 4j + t of block i (<see cref="GroupBlocks"/>), so that one 32-byte
    /// load holds 4 quants of each of the 8 blocks and vpdpbusd leaves block i's dot product in lane i.
    /// A trailing partial group stays in natural order.
    /// </summary>
    public bool Grouped { get; private set; }

    /// <summary>Quantizes x: (T, K) to <paramref name="type"/> (Q8_0, Q8_1 or Q8_K); K a multiple of its block size.</summary>
    public void Quantize(ReadOnlySpan<float> x, int tokens, int k, GgmlType type) => Quantize(x, tokens, k, type, grouped: false);

    /// <summary>
    /// Quantizes x: (T, K) to <paramref name="type"/>, the Q8_0/Q8_1 quants in groups of 8 blocks when
    /// <paramref name="grouped"/> (see <see cref="Grouped"/>).
    /// </summary>
    public void Quantize(ReadOnlySpan<float> x, int tokens, int k, GgmlType type, bool grouped)
    {
        if (type is not (GgmlType.Q8_0 or GgmlType.Q8_1 or GgmlType.Q8_K))
            throw new ArgumentException($"{type} is not an activation type (Q8_0, Q8_1, Q8_K).", nameof(type));
        int block = type == GgmlType.Q8_K ? 256 : 32;
        if (k % block != 0) throw new ArgumentException($"{type} activations need K a multiple of {block}, got {k}.", nameof(k));
        if (x.Length < (long)tokens * k) throw new ArgumentException($"x holds {x.Length} floats, {tokens}x{k} needed.", nameof(x));
        Layout(type, tokens, k);
        Grouped = grouped && type != GgmlType.Q8_K;
        fixed (float* px = x)
        {
            for (int t = 0; t < tokens; t++)
            {
                QuantizeToken(px + (long)t * k, t);
                if (Grouped) GroupBlocks((byte*)(Quants + (long)t * k), k / 32);
            }
        }
    }

    /// <summary>
    /// Rewrites each full group of 8 blocks of 32 bytes (an 8×8 matrix of 4-byte words, one row per block)
    /// as its transpose: word j of block i moves to word i of row j. bytes: (32·blocks).
    /// </summary>
    public static void GroupBlocks(byte* bytes, int blocks)
    {
        if (Avx2.IsSupported)
        {
            for (int g = 0; g + 8 <= blocks; g += 8) Transpose8x8((float*)(bytes + 32 * g));
            return;
        }
        uint* scratch = stackalloc uint[64];
        for (int g = 0; g + 8 <= blocks; g += 8)
        {
            uint* words = (uint*)(bytes + 32 * g);
            for (int i = 0; i < 64; i++) scratch[i] = words[i];
            for (int i = 0; i < 8; i++)
            {
                for (int j = 0; j < 8; j++) words[8 * j + i] = scratch[8 * i + j];
            }
        }
    }

    /// <summary>
    /// The 8×8 matrix of 4-byte words at m (row i = words 8i..8i+7) replaced by its transpose, in registers:
    /// unpacks pair rows, shuffles gather four, and the 128-bit halves swap. m: (64) words, moved as floats
    /// (bits unchanged).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8x8(float* m)
    {
        Vector256<float> r0 = Avx.LoadVector256(m), r1 = Avx.LoadVector256(m + 8), r2 = Avx.LoadVector256(m + 16), r3 = Avx.LoadVector256(m + 24);
        Vector256<float> r4 = Avx.LoadVector256(m + 32), r5 = Avx.LoadVector256(m + 40), r6 = Avx.LoadVector256(m + 48), r7 = Avx.LoadVector256(m + 56);
        // c_j: columns j (low half) and j + 4 (high half) of rows 0..3; h_j: the same of rows 4..7.
        FourRows.Columns(r0, r1, r2, r3, out Vector256<float> c0, out Vector256<float> c1, out Vector256<float> c2, out Vector256<float> c3);
        FourRows.Columns(r4, r5, r6, r7, out Vector256<float> h0, out Vector256<float> h1, out Vector256<float> h2, out Vector256<float> h3);
        Avx.Store(m, Avx.Permute2x128(c0, h0, 0x20));
        Avx.Store(m + 8, Avx.Permute2x128(c1, h1, 0x20));
        Avx.Store(m + 16, Avx.Permute2x128(c2, h2, 0x20));
        Avx.Store(m + 24, Avx.Permute2x128(c3, h3, 0x20));
        Avx.Store(m + 32, Avx.Permute2x128(c0, h0, 0x31));
        Avx.Store(m + 40, Avx.Permute2x128(c1, h1, 0x31));
        Avx.Store(m + 48, Avx.Permute2x128(c2, h2, 0x31));
        Avx.Store(m + 56, Avx.Permute2x128(c3, h3, 0x31));
    }

    /// <summary>Sizes the arrays for T tokens of K values of <paramref name="type"/>.</summary>
    private void Layout(GgmlType type, int tokens, int k)
    {
        int block = type == GgmlType.Q8_K ? 256 : 32;
        int blocks = k / block;
        long quants = Align((long)tokens * k);
        long perBlock = Align((long)tokens * blocks * 4);
        long groupSums = type == GgmlType.Q8_K ? Align((long)tokens * blocks * 32) : 0;
        long total = quants + 3 * perBlock + groupSums + 64;
        if (_buffer.Length < total)
        {
            _buffer = GC.AllocateUninitializedArray<byte>((int)Math.Min(int.MaxValue, total + total / 4), pinned: true);
            _base = (byte*)(((nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_buffer)) + 63) & ~(nint)63);
        }
        Type = type;
        Tokens = tokens;
        K = k;
        Blocks = blocks;
        byte* p = _base;
        Quants = (sbyte*)p;
        p += quants;
        Scales = (float*)p;
        p += perBlock;
        BlockSums = (int*)p;
        p += perBlock;
        Offsets = (float*)p;
        p += perBlock;
        GroupSums = (short*)p;
    }

    private static long Align(long bytes) => (bytes + 63) & ~63L;

    private void QuantizeToken(float* x, int t)
    {
        sbyte* q = Quants + (long)t * K;
        int o = t * Blocks;
        if (Type == GgmlType.Q8_K)
        {
            for (int b = 0; b < Blocks; b++) QuantizeSuperBlock(x + 256 * b, q + 256 * b, Scales + o + b, GroupSums + 16 * (o + b));
            return;
        }
        for (int b = 0; b < Blocks; b++)
        {
            int sum = QuantizeBlock32(x + 32 * b, q + 32 * b, out float amax);
            float d = amax / 127f;
            Scales[o + b] = QuantMath.HalfBitsToFloat(QuantMath.FloatToHalfBits(d));
            BlockSums[o + b] = sum;
            if (Type == GgmlType.Q8_1) Offsets[o + b] = QuantMath.HalfBitsToFloat(QuantMath.FloatToHalfBits(d * sum));
        }
    }

    /// <summary>
    /// x86 quantize_row_q8_0 on one block: q = round-half-even(x·(127/amax)) saturated to int8. Returns Σq.
    /// x: (32), q: (32).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int QuantizeBlock32(float* x, sbyte* q, out float amax)
    {
        if (Avx2.IsSupported)
        {
            Vector256<float> v0 = Vector256.Load(x), v1 = Vector256.Load(x + 8), v2 = Vector256.Load(x + 16), v3 = Vector256.Load(x + 24);
            Vector256<float> m = Vector256.Max(Vector256.Max(Vector256.Abs(v0), Vector256.Abs(v1)), Vector256.Max(Vector256.Abs(v2), Vector256.Abs(v3)));
            Vector128<float> m4 = Vector128.Max(m.GetLower(), m.GetUpper());
            m4 = Vector128.Max(m4, Sse.MoveHighToLow(m4, m4));
            amax = MathF.Max(m4.ToScalar(), m4.GetElement(1));
            Vector256<float> id = Vector256.Create(amax != 0f ? 127f / amax : 0f);
            Vector256<int> i0 = ToInt(v0 * id), i1 = ToInt(v1 * id), i2 = ToInt(v2 * id), i3 = ToInt(v3 * id);
            // Saturating packs as ggml's, then the lane fix-up of the 256-bit packs.
            Vector256<sbyte> packed = Avx2.PackSignedSaturate(Avx2.PackSignedSaturate(i0, i1), Avx2.PackSignedSaturate(i2, i3));
            packed = Avx2.PermuteVar8x32(packed.AsInt32(), Vector256.Create(0, 4, 1, 5, 2, 6, 3, 7)).AsSByte();
            packed.Store(q);
            return Vector256.Sum(ClampedSum(i0, i1, i2, i3));
        }
        amax = 0f;
        for (int j = 0; j < 32; j++)
        {
            float a = MathF.Abs(x[j]);
            if (a > amax) amax = a;
        }
        float inv = amax != 0f ? 127f / amax : 0f;
        int sum = 0;
        for (int j = 0; j < 32; j++)
        {
            int v = (int)Math.Clamp(MathF.Round(x[j] * inv, MidpointRounding.ToEven), -128f, 127f);
            q[j] = (sbyte)v;
            sum += v;
        }
        return sum;
    }

    // The per-lane sums of the four vectors after saturation to int8 (what the packs store).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> ClampedSum(Vector256<int> a, Vector256<int> b, Vector256<int> c, Vector256<int> d)
    {
        Vector256<int> lo = Vector256.Create(-128), hi = Vector256.Create(127);
        return (Vector256.Min(Vector256.Max(a, lo), hi) + Vector256.Min(Vector256.Max(b, lo), hi))
            + (Vector256.Min(Vector256.Max(c, lo), hi) + Vector256.Min(Vector256.Max(d, lo), hi));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> ToInt(Vector256<float> v) => Avx.ConvertToVector256Int32(Avx.RoundToNearestInteger(v));

    /// <summary>
    /// quantize_row_q8_K_ref on one super-block, quants stored interleaved. x: (256), q: (256),
    /// d: the scale, bsums: (16).
    /// </summary>
    private static void QuantizeSuperBlock(float* x, sbyte* q, float* d, short* bsums)
    {
        if (Avx2.IsSupported)
        {
            QuantizeSuperBlockAvx2(x, q, d, bsums);
            return;
        }
        float amax = 0f, max = 0f;
        for (int j = 0; j < 256; j++)
        {
            float ax = MathF.Abs(x[j]);
            if (ax > amax)
            {
                amax = ax;
                max = x[j];
            }
        }
        if (amax == 0f)
        {
            *d = 0f;
            new Span<byte>(q, 256).Clear();
            new Span<short>(bsums, 16).Clear();
            return;
        }
        float iscale = -127f / max;
        sbyte* natural = stackalloc sbyte[256];
        for (int j = 0; j < 256; j++) natural[j] = (sbyte)Math.Min(127, QuantMath.NearestInt(iscale * x[j]));
        for (int j = 0; j < 16; j++)
        {
            int sum = 0;
            for (int i = 0; i < 16; i++) sum += natural[16 * j + i];
            bsums[j] = (short)sum;
        }
        *d = 1 / iscale;
        ReadOnlySpan<byte> order = Interleave;
        for (int c = 0; c < 256; c += 32)
        {
            for (int i = 0; i < 32; i++) q[c + i] = natural[c + order[i]];
        }
    }

    /// <summary>
    /// <see cref="QuantizeSuperBlock"/> with AVX2, the same bytes: the largest magnitude by a max tree, its
    /// first occurrence by a compare mask (max is that element's signed value), then ggml's nearest_int
    /// (the same float add) on eight values at a time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void QuantizeSuperBlockAvx2(float* x, sbyte* q, float* d, short* bsums)
    {
        Vector256<float> m = Vector256<float>.Zero;
        for (int j = 0; j < 256; j += 8) m = Vector256.Max(m, Vector256.Abs(Vector256.Load(x + j)));
        Vector128<float> m4 = Vector128.Max(m.GetLower(), m.GetUpper());
        m4 = Vector128.Max(m4, Sse.MoveHighToLow(m4, m4));
        float amax = MathF.Max(m4.ToScalar(), m4.GetElement(1));
        if (amax == 0f)
        {
            *d = 0f;
            new Span<byte>(q, 256).Clear();
            new Span<short>(bsums, 16).Clear();
            return;
        }
        float max = 0f;
        Vector256<float> target = Vector256.Create(amax);
        for (int j = 0; j < 256; j += 8)
        {
            uint hits = Vector256.Equals(Vector256.Abs(Vector256.Load(x + j)), target).ExtractMostSignificantBits();
            if (hits != 0)
            {
                max = x[j + BitOperations.TrailingZeroCount(hits)];
                break;
            }
        }
        float iscale = -127f / max;
        Vector256<float> scale = Vector256.Create(iscale);
        Vector256<float> magic = Vector256.Create(12582912f);
        sbyte* natural = stackalloc sbyte[256];
        for (int j = 0; j < 256; j += 32)
        {
            Vector256<int> a = Nearest(Vector256.Load(x + j) * scale, magic);
            Vector256<int> b = Nearest(Vector256.Load(x + j + 8) * scale, magic);
            Vector256<int> c = Nearest(Vector256.Load(x + j + 16) * scale, magic);
            Vector256<int> e = Nearest(Vector256.Load(x + j + 24) * scale, magic);
            bsums[j / 16] = (short)Vector256.Sum(a + b);
            bsums[j / 16 + 1] = (short)Vector256.Sum(c + e);
            Vector256.Narrow(Vector256.Narrow(a, b), Vector256.Narrow(c, e)).Store(natural + j);
        }
        *d = 1 / iscale;
        for (int c = 0; c < 256; c += 32) InterleaveBytes.One(Vector256.Load((byte*)natural + c)).Store((byte*)q + c);
    }

    // ggml's nearest_int(v) (1.5·2^23 added, the low mantissa bits read back), then min(127, ·).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Nearest(Vector256<float> v, Vector256<float> magic) =>
        Vector256.Min((((v + magic).AsInt32()) & Vector256.Create(0x007FFFFF)) - Vector256.Create(0x00400000), Vector256.Create(127));
}
