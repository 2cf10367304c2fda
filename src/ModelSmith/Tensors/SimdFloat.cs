using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ModelSmith.Tensors;

/// <summary>
/// The few float-vector operations the blocked kernels (matmul) need, abstracted over the vector width so
/// that one generic kernel body serves Vector512, Vector256, Vector128 and plain scalars. The JIT
/// specialises a generic method per struct type argument and inlines these calls, so the abstraction
/// costs nothing at run time.
/// </summary>
/// <typeparam name="TV">The register type: <see cref="Vector512{T}"/> of float, ..., or float itself.</typeparam>
internal unsafe interface ISimdFloat<TV> where TV : unmanaged
{
    /// <summary>Floats per register.</summary>
    static abstract int Lanes { get; }

    static abstract TV Zero { get; }

    /// <summary>Loads <see cref="Lanes"/> floats from <paramref name="p"/> (no alignment needed).</summary>
    static abstract TV Load(float* p);

    /// <summary>Loads <see cref="Lanes"/> binary16 values (raw bits) from <paramref name="p"/>, widened exactly to float.</summary>
    static abstract TV LoadHalf(ushort* p);

    /// <summary>Loads <see cref="Lanes"/> bfloat16 values (raw bits) from <paramref name="p"/>, widened exactly to float.</summary>
    static abstract TV LoadBFloat16(ushort* p);

    /// <summary>
    /// Loads <see cref="Lanes"/> binary16 values (raw bits) from <paramref name="p"/> without re-biasing the
    /// exponent: sign-extended, shifted left by 13 and masked with <paramref name="mask"/> (<see cref="HalfMask"/>),
    /// so sign, exponent and mantissa sit where a float keeps them. For a finite half h the result is exactly
    /// h · 2^-112 (half subnormals become float subnormals); infinities and NaNs (half exponent 31) come out
    /// finite (at least 2^-96 in magnitude), so this is only for data known to hold none. Three integer
    /// operations instead of <see cref="LoadHalf"/>'s six, for the decode matvec (see MatMul).
    /// </summary>
    static abstract TV LoadHalfUnbiased(ushort* p, TV mask);

    /// <summary>The mask <see cref="LoadHalfUnbiased"/> takes: 0x8fffffff in every lane (sign and the low 5 exponent bits).</summary>
    static abstract TV HalfMask { get; }

    /// <summary>v in every lane.</summary>
    static abstract TV Create(float v);

    static abstract TV Multiply(TV a, TV b);

    /// <summary>a·b + c, fused (one rounding) where the CPU has FMA, else multiply then add.</summary>
    static abstract TV MultiplyAdd(TV a, TV b, TV c);

    /// <summary>Sum of the lanes, in a fixed order for a given width.</summary>
    static abstract float Sum(TV v);
}

/// <summary>Which vector width the kernels use on this process: the widest the JIT accelerates.</summary>
/// <remarks>
/// <c>DOTNET_EnableAVX512=0</c> (on .NET 10; .NET 8/9 read <c>DOTNET_EnableAVX512F</c>) or
/// <c>DOTNET_PreferredVectorBitWidth=256</c> selects the 256-bit paths, <c>DOTNET_EnableAVX2=0</c> the 128-bit
/// paths and <c>DOTNET_EnableHWIntrinsic=0</c> the scalar ones.
/// </remarks>
internal static class SimdWidth
{
    /// <summary>Bits per vector register the kernels use: 512, 256, 128, or 32 for scalar code.</summary>
    public static int Bits =>
        Vector512.IsHardwareAccelerated ? 512 :
        Vector256.IsHardwareAccelerated ? 256 :
        Vector128.IsHardwareAccelerated ? 128 : 32;
}

internal readonly unsafe struct Simd512 : ISimdFloat<Vector512<float>>
{
    public static int Lanes => 16;
    public static Vector512<float> Zero => Vector512<float>.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load(float* p) => Vector512.Load(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> LoadHalf(ushort* p) => RowConvert.HalfToSingle(Widen(p));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> LoadBFloat16(ushort* p) => (Widen(p) << 16).AsSingle();

    // 16 values, sign-extended to 32 bits.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Widen(ushort* p) => Avx512F.IsSupported
        ? Avx512F.ConvertToVector512Int32(Vector256.Load((short*)p))
        : Vector512.WidenLower(Vector256.Load((short*)p).ToVector512Unsafe());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> LoadHalfUnbiased(ushort* p, Vector512<float> mask) => ((Widen(p) << 13) & mask.AsInt32()).AsSingle();

    public static Vector512<float> HalfMask => Vector512.Create(unchecked((int)0x8fffffff)).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Create(float v) => Vector512.Create(v);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Multiply(Vector512<float> a, Vector512<float> b) => a * b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> MultiplyAdd(Vector512<float> a, Vector512<float> b, Vector512<float> c) => Vector512.MultiplyAddEstimate(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vector512<float> v) => Vector512.Sum(v);
}

internal readonly unsafe struct Simd256 : ISimdFloat<Vector256<float>>
{
    public static int Lanes => 8;
    public static Vector256<float> Zero => Vector256<float>.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load(float* p) => Vector256.Load(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> LoadHalf(ushort* p) => RowConvert.HalfToSingle(Widen(p));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> LoadBFloat16(ushort* p) => (Widen(p) << 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Widen(ushort* p) => Avx2.IsSupported
        ? Avx2.ConvertToVector256Int32((short*)p)
        : Vector256.WidenLower(Vector128.Load((short*)p).ToVector256Unsafe());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> LoadHalfUnbiased(ushort* p, Vector256<float> mask) => ((Widen(p) << 13) & mask.AsInt32()).AsSingle();

    public static Vector256<float> HalfMask => Vector256.Create(unchecked((int)0x8fffffff)).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Create(float v) => Vector256.Create(v);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Multiply(Vector256<float> a, Vector256<float> b) => a * b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> MultiplyAdd(Vector256<float> a, Vector256<float> b, Vector256<float> c) => Vector256.MultiplyAddEstimate(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vector256<float> v) => Vector256.Sum(v);
}

internal readonly unsafe struct Simd128 : ISimdFloat<Vector128<float>>
{
    public static int Lanes => 4;
    public static Vector128<float> Zero => Vector128<float>.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Load(float* p) => Vector128.Load(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> LoadHalf(ushort* p) => RowConvert.HalfToSingle(Widen(p));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> LoadBFloat16(ushort* p) => (Widen(p) << 16).AsSingle();

    // Reads exactly 4 halves (8 bytes), never past the end of a row.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> Widen(ushort* p) => Sse41.IsSupported
        ? Sse41.ConvertToVector128Int32((short*)p)
        : Vector128.WidenLower(Vector128.CreateScalarUnsafe(*(ulong*)p).AsInt16());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> LoadHalfUnbiased(ushort* p, Vector128<float> mask) => ((Widen(p) << 13) & mask.AsInt32()).AsSingle();

    public static Vector128<float> HalfMask => Vector128.Create(unchecked((int)0x8fffffff)).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Create(float v) => Vector128.Create(v);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Multiply(Vector128<float> a, Vector128<float> b) => a * b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> MultiplyAdd(Vector128<float> a, Vector128<float> b, Vector128<float> c) => Vector128.MultiplyAddEstimate(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vector128<float> v) => Vector128.Sum(v);
}

/// <summary>One float per "register": the fallback when no vector hardware is enabled.</summary>
internal readonly unsafe struct SimdScalar : ISimdFloat<float>
{
    public static int Lanes => 1;
    public static float Zero => 0f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load(float* p) => *p;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float LoadHalf(ushort* p) => RowConvert.HalfToSingle(*p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float LoadBFloat16(ushort* p) => RowConvert.Reference.BFloat16ToSingle(*p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float LoadHalfUnbiased(ushort* p, float mask) => BitConverter.Int32BitsToSingle(((short)*p << 13) & BitConverter.SingleToInt32Bits(mask));

    public static float HalfMask => BitConverter.Int32BitsToSingle(unchecked((int)0x8fffffff));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Create(float v) => v;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Multiply(float a, float b) => a * b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MultiplyAdd(float a, float b, float c) => float.MultiplyAddEstimate(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(float v) => v;
}
