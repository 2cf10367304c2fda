using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ModelSmith.Training;

/// <summary>
/// The float-vector operations the training's element-wise kernels (softmax, cross-entropy, activations)
/// need, once per register width, so each kernel is written once as a generic method and the JIT
/// specialises it for Vector512, Vector256, Vector128 and plain floats (the scalar tail of every loop).
/// </summary>
/// <remarks>
/// <see cref="Exp"/> is one algorithm at every width (<see cref="FloatExp"/>, Cephes' expf: 2ⁿ·p(r) with r = x − n·ln 2 in two
/// fused steps and a degree-6 polynomial, ≤ 2 ulp on its range), so an element's result does not depend on
/// which path of a loop computed it. It is ~20× faster than <see cref="Vector512.Exp(Vector512{float})"/> on
/// .NET 10, which dominated the non-matmul time of a training step.
/// </remarks>
internal unsafe interface IFloatVector<TV> where TV : unmanaged
{
    static abstract int Lanes { get; }

    static abstract TV Create(float value);

    static abstract TV Load(float* p);

    static abstract void Store(TV v, float* p);

    static abstract TV Add(TV a, TV b);

    static abstract TV Subtract(TV a, TV b);

    static abstract TV Multiply(TV a, TV b);

    static abstract TV Divide(TV a, TV b);

    /// <summary>min(max(x, low), high), NaN kept. Takes the bounds as floats so the JIT sees constant
    /// vectors and emits plain vmaxps/vminps instead of the general IEEE max/min sequence.</summary>
    static abstract TV Clamp(TV x, float low, float high);

    /// <summary>Correctly rounded square root.</summary>
    static abstract TV Sqrt(TV x);

    /// <summary>a·b + c, one rounding.</summary>
    static abstract TV FusedMultiplyAdd(TV a, TV b, TV c);

    /// <summary>2ⁿ for integral-valued n in [−126, 127]: n + 127 written into the exponent bits.</summary>
    static abstract TV Pow2(TV n);

    /// <summary>eˣ for x in [−87.3, 88]; inputs outside are clamped (so e^−∞ gives ~1e−38, not 0).</summary>
    static abstract TV Exp(TV x);

    /// <summary>Sum of the lanes (fixed order per width).</summary>
    static abstract float Sum(TV v);
}

/// <summary>The exp algorithm every width runs, written once over <see cref="IFloatVector{TV}"/>.</summary>
internal static class FloatExp
{
    private const float Low = -87.33654f;  // e^Low ≈ 2^−126, the smallest normal float
    private const float High = 88f;        // keeps 2ⁿ with n ≤ 127 representable
    private const float Log2E = 1.44269504088896341f;
    private const float RoundMagic = 12582912f; // 1.5·2²³: adding and subtracting it rounds to an integer
    private const float Ln2High = -0.693359375f;
    private const float Ln2Low = 2.12194440e-4f;
    private const float P0 = 1.9875691500e-4f;
    private const float P1 = 1.3981999507e-3f;
    private const float P2 = 8.3334519073e-3f;
    private const float P3 = 4.1665795894e-2f;
    private const float P4 = 1.6666665459e-1f;
    private const float P5 = 5.0000001201e-1f;

    /// <summary>
    /// eˣ = 2ⁿ·e^r with n = round(x·log₂e) and r = x − n·ln 2 (ln 2 split in two so n·Ln2High is exact),
    /// e^r ≈ 1 + r + r²·p(r). Each step is one operation of <typeparamref name="TS"/>, in the same order at
    /// every width, so a lane and the scalar tail round identically.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Exp<TV, TS>(TV x) where TV : unmanaged where TS : IFloatVector<TV>
    {
        x = TS.Clamp(x, Low, High);
        TV n = TS.Subtract(TS.Add(TS.Multiply(x, TS.Create(Log2E)), TS.Create(RoundMagic)), TS.Create(RoundMagic));
        TV r = TS.FusedMultiplyAdd(n, TS.Create(Ln2High), x);
        r = TS.FusedMultiplyAdd(n, TS.Create(Ln2Low), r);
        TV p = TS.Create(P0);
        p = TS.FusedMultiplyAdd(p, r, TS.Create(P1));
        p = TS.FusedMultiplyAdd(p, r, TS.Create(P2));
        p = TS.FusedMultiplyAdd(p, r, TS.Create(P3));
        p = TS.FusedMultiplyAdd(p, r, TS.Create(P4));
        p = TS.FusedMultiplyAdd(p, r, TS.Create(P5));
        TV e = TS.Add(TS.FusedMultiplyAdd(p, TS.Multiply(r, r), r), TS.Create(1f));
        return TS.Multiply(e, TS.Pow2(n));
    }
}

internal readonly unsafe struct F512 : IFloatVector<Vector512<float>>
{
    public static int Lanes => 16;

    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Create(float value) => Vector512.Create(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Load(float* p) => Vector512.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector512<float> v, float* p) => v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Subtract(Vector512<float> a, Vector512<float> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Multiply(Vector512<float> a, Vector512<float> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Divide(Vector512<float> a, Vector512<float> b) => a / b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Clamp(Vector512<float> x, float low, float high) => Vector512.Min(Vector512.Max(x, Vector512.Create(low)), Vector512.Create(high));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Sqrt(Vector512<float> x) => Vector512.Sqrt(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> FusedMultiplyAdd(Vector512<float> a, Vector512<float> b, Vector512<float> c) => Vector512.FusedMultiplyAdd(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Vector512<float> v) => Vector512.Sum(v);

    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Pow2(Vector512<float> n) => Vector512.ShiftLeft(Vector512.ConvertToInt32(n) + Vector512.Create(127), 23).AsSingle();
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Exp(Vector512<float> x) => FloatExp.Exp<Vector512<float>, F512>(x);
}

internal readonly unsafe struct F256 : IFloatVector<Vector256<float>>
{
    public static int Lanes => 8;

    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Create(float value) => Vector256.Create(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Load(float* p) => Vector256.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector256<float> v, float* p) => v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Add(Vector256<float> a, Vector256<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Subtract(Vector256<float> a, Vector256<float> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Multiply(Vector256<float> a, Vector256<float> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Divide(Vector256<float> a, Vector256<float> b) => a / b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Clamp(Vector256<float> x, float low, float high) => Vector256.Min(Vector256.Max(x, Vector256.Create(low)), Vector256.Create(high));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Sqrt(Vector256<float> x) => Vector256.Sqrt(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> FusedMultiplyAdd(Vector256<float> a, Vector256<float> b, Vector256<float> c) => Vector256.FusedMultiplyAdd(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Vector256<float> v) => Vector256.Sum(v);

    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Pow2(Vector256<float> n) => Vector256.ShiftLeft(Vector256.ConvertToInt32(n) + Vector256.Create(127), 23).AsSingle();
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Exp(Vector256<float> x) => FloatExp.Exp<Vector256<float>, F256>(x);
}

internal readonly unsafe struct F128 : IFloatVector<Vector128<float>>
{
    public static int Lanes => 4;

    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Create(float value) => Vector128.Create(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Load(float* p) => Vector128.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector128<float> v, float* p) => v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Add(Vector128<float> a, Vector128<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Subtract(Vector128<float> a, Vector128<float> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Multiply(Vector128<float> a, Vector128<float> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Divide(Vector128<float> a, Vector128<float> b) => a / b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Clamp(Vector128<float> x, float low, float high) => Vector128.Min(Vector128.Max(x, Vector128.Create(low)), Vector128.Create(high));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Sqrt(Vector128<float> x) => Vector128.Sqrt(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> FusedMultiplyAdd(Vector128<float> a, Vector128<float> b, Vector128<float> c) => Vector128.FusedMultiplyAdd(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Vector128<float> v) => Vector128.Sum(v);

    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Pow2(Vector128<float> n) => Vector128.ShiftLeft(Vector128.ConvertToInt32(n) + Vector128.Create(127), 23).AsSingle();
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Exp(Vector128<float> x) => FloatExp.Exp<Vector128<float>, F128>(x);
}

/// <summary>One float per "register": the tail of every loop, computing exactly what a vector lane computes.</summary>
internal readonly unsafe struct F1 : IFloatVector<float>
{
    public static int Lanes => 1;

    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Create(float value) => value;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Load(float* p) => *p;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(float v, float* p) => *p = v;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Add(float a, float b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Subtract(float a, float b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Multiply(float a, float b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Divide(float a, float b) => a / b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Clamp(float x, float low, float high) => MathF.Min(MathF.Max(x, low), high);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sqrt(float x) => MathF.Sqrt(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float FusedMultiplyAdd(float a, float b, float c) => MathF.FusedMultiplyAdd(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(float v) => v;

    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Pow2(float n) => BitConverter.Int32BitsToSingle(((int)n + 127) << 23);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Exp(float x) => FloatExp.Exp<float, F1>(x);
}
