using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ModelSmith.Tensors;

/// <summary>Which dimensions RoPE rotates together.</summary>
internal enum RopeMode
{
    /// <summary>Adjacent pairs (2i, 2i+1): llama.cpp's default, used by Llama GGUFs.</summary>
    Normal = 0,

    /// <summary>Pairs (i, i + dims/2): GPT-NeoX style, Hugging Face's "rotate half".</summary>
    Neox = 2,
}

/// <summary>
/// The cos/sin of every rotation angle for positions [0, <see cref="MaxPositions"/>), computed once.
/// </summary>
/// <remarks>
/// Angles follow ggml's <c>ggml_rope_cache_init</c> exactly (no YaRN, freq_scale 1, attn_factor 1):
/// theta_scale = powf(freq_base, −2/dims); θ₀ = (float)p; θᵢ₊₁ = θᵢ · theta_scale in float; cos/sin with
/// <see cref="MathF.Cos"/>/<see cref="MathF.Sin"/> (the C runtime's cosf/sinf, as llama.cpp uses). The
/// iterated float product, not p·base^(−2i/d), is what llama.cpp rotates by, and the two drift apart by
/// many ulps at large positions, so this is what matches it to ~1 ulp up to thousands of positions.
/// <para>Layout: per position, <see cref="Dims"/> cosines and signed sines already arranged for the
/// mode's pairing, so a rotation is x·cos + partner(x)·sin element-wise (partner = the other element of
/// the pair). Memory: MaxPositions × Dims × 8 bytes (4096 × 128 → 4 MiB).</para>
/// </remarks>
internal sealed class RopeTable
{
    private readonly float[] _cos;  // (MaxPositions, Dims)
    private readonly float[] _sin;  // (MaxPositions, Dims), negated on the first element of each pair

    /// <summary>Builds the table for <paramref name="dims"/> rotated dimensions (n_rot, even).</summary>
    public RopeTable(int dims, float freqBase, int maxPositions, RopeMode mode)
    {
        if (dims <= 0 || dims % 2 != 0)
            throw new ArgumentOutOfRangeException(nameof(dims), dims, "RoPE rotates pairs: the rotated dimension count must be positive and even.");
        if (maxPositions <= 0)
            throw new ArgumentOutOfRangeException(nameof(maxPositions), maxPositions, "The RoPE table needs at least one position.");
        if (!(freqBase > 0) || float.IsInfinity(freqBase))
            throw new ArgumentOutOfRangeException(nameof(freqBase), freqBase, "The RoPE frequency base must be a positive finite number (Llama uses 10000).");
        if (mode is not (RopeMode.Normal or RopeMode.Neox))
            throw new ArgumentOutOfRangeException(nameof(mode), mode, "Unknown RoPE mode.");
        Dims = dims;
        FreqBase = freqBase;
        MaxPositions = maxPositions;
        Mode = mode;
        _cos = new float[(long)maxPositions * dims];
        _sin = new float[(long)maxPositions * dims];
        int half = dims / 2;
        Span<float> cos = stackalloc float[half];
        Span<float> sin = stackalloc float[half];
        for (int p = 0; p < maxPositions; p++)
        {
            Angles(p, dims, freqBase, cos, sin);
            Span<float> c = _cos.AsSpan(p * dims, dims);
            Span<float> s = _sin.AsSpan(p * dims, dims);
            for (int i = 0; i < half; i++)
            {
                // (a, b) → (a·cos − b·sin, a·sin + b·cos): the first element of a pair takes −sin.
                int first = mode == RopeMode.Normal ? 2 * i : i;
                int second = mode == RopeMode.Normal ? 2 * i + 1 : i + half;
                c[first] = cos[i];
                c[second] = cos[i];
                s[first] = -sin[i];
                s[second] = sin[i];
            }
        }
    }

    /// <summary>Rotated dimensions per head (n_rot); the rest of a head passes through.</summary>
    public int Dims { get; }

    public float FreqBase { get; }

    public int MaxPositions { get; }

    public RopeMode Mode { get; }

    /// <summary>cos θ for each dimension at <paramref name="position"/>: (Dims), in the mode's layout.</summary>
    public ReadOnlySpan<float> Cos(int position) => _cos.AsSpan(CheckPosition(position) * Dims, Dims);

    /// <summary>±sin θ for each dimension at <paramref name="position"/>: (Dims), negative on each pair's first element.</summary>
    public ReadOnlySpan<float> Sin(int position) => _sin.AsSpan(CheckPosition(position) * Dims, Dims);

    /// <summary>
    /// The pair angles' cos and sin at position <paramref name="p"/>, as ggml computes them.
    /// cos, sin: (dims/2), entry i for the pair that rotates by θᵢ = p · base^(−2i/dims).
    /// </summary>
    public static void Angles(int p, int dims, float freqBase, Span<float> cos, Span<float> sin)
    {
        float thetaScale = MathF.Pow(freqBase, -2.0f / dims);
        float theta = p;
        for (int i = 0; i < dims / 2; i++)
        {
            cos[i] = MathF.Cos(theta);
            sin[i] = MathF.Sin(theta);
            theta *= thetaScale;
        }
    }

    private int CheckPosition(int position)
    {
        if ((uint)position >= (uint)MaxPositions)
            throw new ArgumentOutOfRangeException(nameof(position), position, $"The RoPE table covers positions [0, {MaxPositions}); build it for the model's full context length.");
        return position;
    }
}

/// <summary>
/// Rotary position embedding: rotates each head's first <see cref="RopeTable.Dims"/> dimensions, pair by
/// pair, by position-dependent angles; in place.
/// </summary>
/// <remarks>
/// Per pair (a, b) and angle θ: (a·cosθ − b·sinθ, a·sinθ + b·cosθ), each product rounded then summed
/// (no fused multiply-add), exactly as <see cref="Reference"/> does, so the vector path is bit-identical
/// to it. The inverse rotation (by −θ) is the backward pass.
/// </remarks>
internal static class Rope
{
    /// <summary>
    /// Rotates every head of <paramref name="x"/> at <paramref name="position"/>. x: (H, headDim), rotated in
    /// place; table.Dims ≤ headDim; dimensions [Dims, headDim) of each head are left as they are.
    /// </summary>
    public static void Apply(Span<float> x, int headDim, int position, RopeTable table) => Rotate(x, headDim, position, table, inverse: false);

    /// <summary>The inverse rotation (by −θ), the gradient of <see cref="Apply"/>. x: (H, headDim), in place.</summary>
    public static void ApplyInverse(Span<float> x, int headDim, int position, RopeTable table) => Rotate(x, headDim, position, table, inverse: true);

    private static void Rotate(Span<float> x, int headDim, int position, RopeTable table, bool inverse)
    {
        ArgumentNullException.ThrowIfNull(table);
        CheckShape(x.Length, headDim, table.Dims);
        ReadOnlySpan<float> cos = table.Cos(position);
        ReadOnlySpan<float> sin = table.Sin(position);
        float sign = inverse ? -1f : 1f;
        for (int h = 0; h < x.Length; h += headDim)
        {
            Span<float> head = x.Slice(h, table.Dims);
            if (table.Mode == RopeMode.Normal) RotateAdjacent(head, cos, sin, sign);
            else RotateHalves(head, cos, sin, sign);
        }
    }

    private static void CheckShape(int length, int headDim, int dims)
    {
        if (headDim <= 0 || length % headDim != 0)
            throw new ArgumentException($"RoPE input of {length} floats is not a whole number of heads of {headDim}.", nameof(headDim));
        if (dims > headDim)
            throw new ArgumentException($"The RoPE table rotates {dims} dimensions but heads have only {headDim}.", nameof(headDim));
    }

    // Pairs (2i, 2i+1): y = x·cos + swap(x)·sin, swap exchanging each pair.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RotateAdjacent(Span<float> x, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin, float sign)
    {
        ref float xs = ref MemoryMarshal.GetReference(x);
        ref float cs = ref MemoryMarshal.GetReference(cos);
        ref float ss = ref MemoryMarshal.GetReference(sin);
        nint n = x.Length, i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<int> swap = Vector512.Create(1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
            for (; i <= n - 16; i += 16)
            {
                Vector512<float> v = Vector512.LoadUnsafe(ref xs, (nuint)i);
                Vector512<float> s = Vector512.LoadUnsafe(ref ss, (nuint)i) * sign;
                (v * Vector512.LoadUnsafe(ref cs, (nuint)i) + Vector512.Shuffle(v, swap) * s).StoreUnsafe(ref xs, (nuint)i);
            }
        }
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<int> swap = Vector256.Create(1, 0, 3, 2, 5, 4, 7, 6);
            for (; i <= n - 8; i += 8)
            {
                Vector256<float> v = Vector256.LoadUnsafe(ref xs, (nuint)i);
                Vector256<float> s = Vector256.LoadUnsafe(ref ss, (nuint)i) * sign;
                (v * Vector256.LoadUnsafe(ref cs, (nuint)i) + Vector256.Shuffle(v, swap) * s).StoreUnsafe(ref xs, (nuint)i);
            }
        }
        if (Vector128.IsHardwareAccelerated)
        {
            Vector128<int> swap = Vector128.Create(1, 0, 3, 2);
            for (; i <= n - 4; i += 4)
            {
                Vector128<float> v = Vector128.LoadUnsafe(ref xs, (nuint)i);
                Vector128<float> s = Vector128.LoadUnsafe(ref ss, (nuint)i) * sign;
                (v * Vector128.LoadUnsafe(ref cs, (nuint)i) + Vector128.Shuffle(v, swap) * s).StoreUnsafe(ref xs, (nuint)i);
            }
        }
        for (; i < n; i += 2)
        {
            float a = Unsafe.Add(ref xs, i), b = Unsafe.Add(ref xs, i + 1);
            Unsafe.Add(ref xs, i) = a * Unsafe.Add(ref cs, i) + b * (Unsafe.Add(ref ss, i) * sign);
            Unsafe.Add(ref xs, i + 1) = b * Unsafe.Add(ref cs, i + 1) + a * (Unsafe.Add(ref ss, i + 1) * sign);
        }
    }

    // Pairs (i, i + half): both halves loaded before either is stored, so in place is safe.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RotateHalves(Span<float> x, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin, float sign)
    {
        nint half = x.Length / 2;
        ref float lo = ref MemoryMarshal.GetReference(x);
        ref float hi = ref Unsafe.Add(ref lo, half);
        ref float cLo = ref MemoryMarshal.GetReference(cos);
        ref float cHi = ref Unsafe.Add(ref cLo, half);
        ref float sLo = ref MemoryMarshal.GetReference(sin);
        ref float sHi = ref Unsafe.Add(ref sLo, half);
        nint i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i <= half - 16; i += 16)
            {
                Vector512<float> a = Vector512.LoadUnsafe(ref lo, (nuint)i), b = Vector512.LoadUnsafe(ref hi, (nuint)i);
                (a * Vector512.LoadUnsafe(ref cLo, (nuint)i) + b * (Vector512.LoadUnsafe(ref sLo, (nuint)i) * sign)).StoreUnsafe(ref lo, (nuint)i);
                (b * Vector512.LoadUnsafe(ref cHi, (nuint)i) + a * (Vector512.LoadUnsafe(ref sHi, (nuint)i) * sign)).StoreUnsafe(ref hi, (nuint)i);
            }
        }
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= half - 8; i += 8)
            {
                Vector256<float> a = Vector256.LoadUnsafe(ref lo, (nuint)i), b = Vector256.LoadUnsafe(ref hi, (nuint)i);
                (a * Vector256.LoadUnsafe(ref cLo, (nuint)i) + b * (Vector256.LoadUnsafe(ref sLo, (nuint)i) * sign)).StoreUnsafe(ref lo, (nuint)i);
                (b * Vector256.LoadUnsafe(ref cHi, (nuint)i) + a * (Vector256.LoadUnsafe(ref sHi, (nuint)i) * sign)).StoreUnsafe(ref hi, (nuint)i);
            }
        }
        if (Vector128.IsHardwareAccelerated)
        {
            for (; i <= half - 4; i += 4)
            {
                Vector128<float> a = Vector128.LoadUnsafe(ref lo, (nuint)i), b = Vector128.LoadUnsafe(ref hi, (nuint)i);
                (a * Vector128.LoadUnsafe(ref cLo, (nuint)i) + b * (Vector128.LoadUnsafe(ref sLo, (nuint)i) * sign)).StoreUnsafe(ref lo, (nuint)i);
                (b * Vector128.LoadUnsafe(ref cHi, (nuint)i) + a * (Vector128.LoadUnsafe(ref sHi, (nuint)i) * sign)).StoreUnsafe(ref hi, (nuint)i);
            }
        }
        for (; i < half; i++)
        {
            float a = Unsafe.Add(ref lo, i), b = Unsafe.Add(ref hi, i);
            Unsafe.Add(ref lo, i) = a * Unsafe.Add(ref cLo, i) + b * (Unsafe.Add(ref sLo, i) * sign);
            Unsafe.Add(ref hi, i) = b * Unsafe.Add(ref cHi, i) + a * (Unsafe.Add(ref sHi, i) * sign);
        }
    }

    /// <summary>
    /// The definition, with the angles computed on the spot as ggml's rope does (no table).
    /// x: (H, headDim), rotated in place; dims ≤ headDim rotated per head.
    /// </summary>
    internal static class Reference
    {
        public static void Apply(Span<float> x, int headDim, int position, int dims, float freqBase, RopeMode mode, bool inverse = false)
        {
            CheckShape(x.Length, headDim, dims);
            int half = dims / 2;
            var cos = new float[half];
            var sin = new float[half];
            RopeTable.Angles(position, dims, freqBase, cos, sin);
            float sign = inverse ? -1f : 1f;
            for (int h = 0; h < x.Length; h += headDim)
            {
                for (int i = 0; i < half; i++)
                {
                    int first = mode == RopeMode.Normal ? h + 2 * i : h + i;
                    int second = mode == RopeMode.Normal ? first + 1 : first + half;
                    float a = x[first], b = x[second];
                    float s = sign * sin[i];
                    x[first] = a * cos[i] - b * s;
                    x[second] = a * s + b * cos[i];
                }
            }
        }
    }
}
