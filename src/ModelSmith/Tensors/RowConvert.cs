using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ModelSmith.Tensors;

/// <summary>
/// Conversions between float and the 16-bit float formats weights are stored in: IEEE binary16 (ggml F16)
/// and bfloat16 (ggml BF16), as raw bits (<see cref="ushort"/>), so file bytes can be cast and passed
/// straight in. Widening is exact; narrowing rounds to nearest even like ggml.
/// </summary>
/// <remarks>
/// .NET 10 exposes no F16C / AVX-512 half-conversion intrinsic, so half→float widening is done with
/// integer vector ops on the sign-extended bits: shifted left by 13 and masked, sign, exponent and
/// mantissa sit where a float keeps them; one exact multiply by 2^112 then re-biases the exponent
/// (15 → 127) and turns half subnormals into the right float normals; infinities and NaNs (half exponent
/// 31) get the float exponent 255 and keep their payload. Float→half narrowing uses <see cref="TensorPrimitives.ConvertToHalf(ReadOnlySpan{float}, Span{Half})"/>,
/// which is already vectorized and rounds to nearest even (as F16C's <c>vcvtps2ph</c> with mode 0 does).
/// </remarks>
internal static class RowConvert
{
    // 2^112 exactly: moves a half exponent (bias 15) to a float exponent (bias 127).
    internal const float TwoPow112 = 5192296858534827628530496329220096f;

    // Keeps the sign and the low 5 exponent bits after a sign-extended half is shifted left by 13.
    private const int SignAndLowExponentMask = unchecked((int)0x8fffffff);

    /// <summary>dst[i] = (float)src[i] for binary16 bits. src: (N), dst: (N).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void HalfToSingle(ReadOnlySpan<ushort> src, Span<float> dst)
    {
        CheckLengths(src.Length, dst.Length);
        ref short s = ref Unsafe.As<ushort, short>(ref MemoryMarshal.GetReference(src));
        ref float d = ref MemoryMarshal.GetReference(dst);
        nint n = src.Length, i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i <= n - 32; i += 32)
            {
                Vector512<short> h = Vector512.LoadUnsafe(ref s, (nuint)i);
                HalfToSingle(Vector512.WidenLower(h)).StoreUnsafe(ref d, (nuint)i);
                HalfToSingle(Vector512.WidenUpper(h)).StoreUnsafe(ref d, (nuint)(i + 16));
            }
        }
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= n - 16; i += 16)
            {
                Vector256<short> h = Vector256.LoadUnsafe(ref s, (nuint)i);
                HalfToSingle(Vector256.WidenLower(h)).StoreUnsafe(ref d, (nuint)i);
                HalfToSingle(Vector256.WidenUpper(h)).StoreUnsafe(ref d, (nuint)(i + 8));
            }
        }
        if (Vector128.IsHardwareAccelerated)
        {
            for (; i <= n - 8; i += 8)
            {
                Vector128<short> h = Vector128.LoadUnsafe(ref s, (nuint)i);
                HalfToSingle(Vector128.WidenLower(h)).StoreUnsafe(ref d, (nuint)i);
                HalfToSingle(Vector128.WidenUpper(h)).StoreUnsafe(ref d, (nuint)(i + 4));
            }
        }
        for (; i < n; i++) Unsafe.Add(ref d, i) = HalfToSingle((ushort)Unsafe.Add(ref s, i));
    }

    /// <summary>True when no element of src (binary16 bits) is an infinity or a NaN (exponent bits all ones). src: (N).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static bool HalvesAreFinite(ReadOnlySpan<ushort> src)
    {
        ref ushort s = ref MemoryMarshal.GetReference(src);
        nint n = src.Length, i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<ushort> exponent = Vector512.Create((ushort)0x7c00);
            for (; i <= n - 32; i += 32)
            {
                if (Vector512.EqualsAny(Vector512.LoadUnsafe(ref s, (nuint)i) & exponent, exponent)) return false;
            }
        }
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<ushort> exponent = Vector256.Create((ushort)0x7c00);
            for (; i <= n - 16; i += 16)
            {
                if (Vector256.EqualsAny(Vector256.LoadUnsafe(ref s, (nuint)i) & exponent, exponent)) return false;
            }
        }
        for (; i < n; i++)
        {
            if ((Unsafe.Add(ref s, i) & 0x7c00) == 0x7c00) return false;
        }
        return true;
    }

    /// <summary>
    /// One binary16 value to float with the same integer steps as the vector code (no call, no branch on
    /// the common path), for kernels' scalar tails.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HalfToSingle(ushort half)
    {
        int h = (short)half;
        float f = BitConverter.Int32BitsToSingle((h << 13) & SignAndLowExponentMask) * TwoPow112;
        if ((h & 0x7c00) == 0x7c00) f = BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(f) | 0x7f800000);
        return f;
    }

    /// <summary>dst[i] = binary16 bits of src[i], rounded to nearest even (overflow → ±inf). src: (N), dst: (N).</summary>
    public static void SingleToHalf(ReadOnlySpan<float> src, Span<ushort> dst)
    {
        CheckLengths(src.Length, dst.Length);
        TensorPrimitives.ConvertToHalf(src, MemoryMarshal.Cast<ushort, Half>(dst));
    }

    /// <summary>dst[i] = (float)src[i] for bfloat16 bits (exact: the bits become a float's high half). src: (N), dst: (N).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void BFloat16ToSingle(ReadOnlySpan<ushort> src, Span<float> dst)
    {
        CheckLengths(src.Length, dst.Length);
        ref ushort s = ref MemoryMarshal.GetReference(src);
        ref float d = ref MemoryMarshal.GetReference(dst);
        nint n = src.Length, i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i <= n - 32; i += 32)
            {
                Vector512<ushort> h = Vector512.LoadUnsafe(ref s, (nuint)i);
                (Vector512.WidenLower(h) << 16).AsSingle().StoreUnsafe(ref d, (nuint)i);
                (Vector512.WidenUpper(h) << 16).AsSingle().StoreUnsafe(ref d, (nuint)(i + 16));
            }
        }
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= n - 16; i += 16)
            {
                Vector256<ushort> h = Vector256.LoadUnsafe(ref s, (nuint)i);
                (Vector256.WidenLower(h) << 16).AsSingle().StoreUnsafe(ref d, (nuint)i);
                (Vector256.WidenUpper(h) << 16).AsSingle().StoreUnsafe(ref d, (nuint)(i + 8));
            }
        }
        if (Vector128.IsHardwareAccelerated)
        {
            for (; i <= n - 8; i += 8)
            {
                Vector128<ushort> h = Vector128.LoadUnsafe(ref s, (nuint)i);
                (Vector128.WidenLower(h) << 16).AsSingle().StoreUnsafe(ref d, (nuint)i);
                (Vector128.WidenUpper(h) << 16).AsSingle().StoreUnsafe(ref d, (nuint)(i + 4));
            }
        }
        for (; i < n; i++) Unsafe.Add(ref d, i) = Reference.BFloat16ToSingle(Unsafe.Add(ref s, i));
    }

    /// <summary>
    /// dst[i] = bfloat16 bits of src[i] as ggml's <c>ggml_compute_fp32_to_bf16</c> makes them: round to
    /// nearest even on the dropped 16 bits, NaNs kept NaN and made quiet, subnormals kept. src: (N), dst: (N).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void SingleToBFloat16(ReadOnlySpan<float> src, Span<ushort> dst)
    {
        CheckLengths(src.Length, dst.Length);
        ref uint s = ref Unsafe.As<float, uint>(ref MemoryMarshal.GetReference(src));
        ref ushort d = ref MemoryMarshal.GetReference(dst);
        nint n = src.Length, i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i <= n - 32; i += 32)
            {
                Vector512<uint> lo = SingleToBFloat16(Vector512.LoadUnsafe(ref s, (nuint)i));
                Vector512<uint> hi = SingleToBFloat16(Vector512.LoadUnsafe(ref s, (nuint)(i + 16)));
                Vector512.Narrow(lo, hi).StoreUnsafe(ref d, (nuint)i);
            }
        }
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= n - 16; i += 16)
            {
                Vector256<uint> lo = SingleToBFloat16(Vector256.LoadUnsafe(ref s, (nuint)i));
                Vector256<uint> hi = SingleToBFloat16(Vector256.LoadUnsafe(ref s, (nuint)(i + 8)));
                Vector256.Narrow(lo, hi).StoreUnsafe(ref d, (nuint)i);
            }
        }
        if (Vector128.IsHardwareAccelerated)
        {
            for (; i <= n - 8; i += 8)
            {
                Vector128<uint> lo = SingleToBFloat16(Vector128.LoadUnsafe(ref s, (nuint)i));
                Vector128<uint> hi = SingleToBFloat16(Vector128.LoadUnsafe(ref s, (nuint)(i + 4)));
                Vector128.Narrow(lo, hi).StoreUnsafe(ref d, (nuint)i);
            }
        }
        for (; i < n; i++) Unsafe.Add(ref d, i) = Reference.SingleToBFloat16(BitConverter.UInt32BitsToSingle(Unsafe.Add(ref s, i)));
    }

    /// <summary>Widens binary16 bits, sign-extended to 32 bits per lane, to float.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> HalfToSingle(Vector512<int> h)
    {
        Vector512<int> bits = (h << 13) & Vector512.Create(SignAndLowExponentMask);
        Vector512<float> f = bits.AsSingle() * Vector512.Create(TwoPow112);
        Vector512<int> infNan = Vector512.Equals(h & Vector512.Create(0x7c00), Vector512.Create(0x7c00));
        return Vector512.ConditionalSelect(infNan, f.AsInt32() | Vector512.Create(0x7f800000), f.AsInt32()).AsSingle();
    }

    /// <summary>Widens binary16 bits, sign-extended to 32 bits per lane, to float.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> HalfToSingle(Vector256<int> h)
    {
        Vector256<int> bits = (h << 13) & Vector256.Create(SignAndLowExponentMask);
        Vector256<float> f = bits.AsSingle() * Vector256.Create(TwoPow112);
        Vector256<int> infNan = Vector256.Equals(h & Vector256.Create(0x7c00), Vector256.Create(0x7c00));
        return Vector256.ConditionalSelect(infNan, f.AsInt32() | Vector256.Create(0x7f800000), f.AsInt32()).AsSingle();
    }

    /// <summary>Widens binary16 bits, sign-extended to 32 bits per lane, to float.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<float> HalfToSingle(Vector128<int> h)
    {
        Vector128<int> bits = (h << 13) & Vector128.Create(SignAndLowExponentMask);
        Vector128<float> f = bits.AsSingle() * Vector128.Create(TwoPow112);
        Vector128<int> infNan = Vector128.Equals(h & Vector128.Create(0x7c00), Vector128.Create(0x7c00));
        return Vector128.ConditionalSelect(infNan, f.AsInt32() | Vector128.Create(0x7f800000), f.AsInt32()).AsSingle();
    }

    // Per lane: (u + 0x7fff + ((u >> 16) & 1)) >> 16, or (u >> 16) | 0x40 for NaN; result in the low 16 bits.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<uint> SingleToBFloat16(Vector512<uint> u)
    {
        Vector512<uint> rounded = (u + Vector512.Create(0x7fffu) + ((u >> 16) & Vector512<uint>.One)) >> 16;
        Vector512<uint> nan = Vector512.GreaterThan(u & Vector512.Create(0x7fffffffu), Vector512.Create(0x7f800000u));
        return Vector512.ConditionalSelect(nan, (u >> 16) | Vector512.Create(0x40u), rounded);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> SingleToBFloat16(Vector256<uint> u)
    {
        Vector256<uint> rounded = (u + Vector256.Create(0x7fffu) + ((u >> 16) & Vector256<uint>.One)) >> 16;
        Vector256<uint> nan = Vector256.GreaterThan(u & Vector256.Create(0x7fffffffu), Vector256.Create(0x7f800000u));
        return Vector256.ConditionalSelect(nan, (u >> 16) | Vector256.Create(0x40u), rounded);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<uint> SingleToBFloat16(Vector128<uint> u)
    {
        Vector128<uint> rounded = (u + Vector128.Create(0x7fffu) + ((u >> 16) & Vector128<uint>.One)) >> 16;
        Vector128<uint> nan = Vector128.GreaterThan(u & Vector128.Create(0x7fffffffu), Vector128.Create(0x7f800000u));
        return Vector128.ConditionalSelect(nan, (u >> 16) | Vector128.Create(0x40u), rounded);
    }

    private static void CheckLengths(int srcLength, int dstLength)
    {
        if (dstLength < srcLength)
            throw new ArgumentException($"Destination holds {dstLength} elements but the source has {srcLength}; give a destination at least as long as the source.", nameof(dstLength));
    }

    /// <summary>Element-at-a-time conversions: the definitions the vector code is tested against.</summary>
    internal static class Reference
    {
        public static float HalfToSingle(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

        public static ushort SingleToHalf(float value) => BitConverter.HalfToUInt16Bits((Half)value);

        public static float BFloat16ToSingle(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

        public static ushort SingleToBFloat16(float value)
        {
            uint u = BitConverter.SingleToUInt32Bits(value);
            if ((u & 0x7fffffffu) > 0x7f800000u) return (ushort)((u >> 16) | 0x40u);
            return (ushort)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
        }

        public static void HalfToSingle(ReadOnlySpan<ushort> src, Span<float> dst)
        {
            for (int i = 0; i < src.Length; i++) dst[i] = HalfToSingle(src[i]);
        }

        public static void SingleToHalf(ReadOnlySpan<float> src, Span<ushort> dst)
        {
            for (int i = 0; i < src.Length; i++) dst[i] = SingleToHalf(src[i]);
        }

        public static void BFloat16ToSingle(ReadOnlySpan<ushort> src, Span<float> dst)
        {
            for (int i = 0; i < src.Length; i++) dst[i] = BFloat16ToSingle(src[i]);
        }

        public static void SingleToBFloat16(ReadOnlySpan<float> src, Span<ushort> dst)
        {
            for (int i = 0; i < src.Length; i++) dst[i] = SingleToBFloat16(src[i]);
        }
    }
}
