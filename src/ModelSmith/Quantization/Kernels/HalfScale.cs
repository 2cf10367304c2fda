using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ModelSmith.Quantization.Kernels;

/// <summary>
/// F16 block scales widened to float, exactly, without float arithmetic on subnormal numbers.
/// </summary>
/// <remarks>
/// Block scales are often F16 subnormals (a Q6_K super-block scale of weights with std 0.04 is ~2e-5, below
/// F16's 6.1e-5), and the usual widening trick (the half's bits shifted into a float, times 2^112) then
/// multiplies a float subnormal, which x86 cores finish in a microcode assist: measured 2x slower decode on
/// such matrices. Here normal halves are rebiased with an integer add, and subnormal ones are m·2^-24
/// computed from the integer m (exact: m &lt; 1024, and the product is a normal float). Infinities stay
/// infinite and NaNs come out quiet, as F16C's vcvtph2ps (and .NET's Half) widen them.
/// </remarks>
internal static class HalfScale
{
    private const float TwoPowMinus24 = 5.9604645e-8f;

    /// <summary>The F16 <paramref name="bits"/> as a float.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToSingle(ushort bits)
    {
        uint sign = (uint)(bits & 0x8000) << 16;
        uint magnitude = (uint)bits & 0x7FFF;
        if (magnitude >= 0x7C00) return BitConverter.UInt32BitsToSingle(sign | 0x7F800000 | ((magnitude & 0x3FF) << 13) | (magnitude > 0x7C00 ? 0x00400000u : 0));
        if (magnitude >= 0x0400) return BitConverter.UInt32BitsToSingle(sign | ((magnitude << 13) + (112u << 23)));
        float f = magnitude * TwoPowMinus24;
        return sign != 0 ? -f : f;
    }

    /// <summary><see cref="ToSingle(ushort)"/> lane by lane; the halves in the low 16 bits of each lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> ToSingle(Vector256<int> halves)
    {
        Vector256<int> sign = (halves & Vector256.Create(0x8000)) << 16;
        Vector256<int> magnitude = halves & Vector256.Create(0x7FFF);
        Vector256<int> normal = (magnitude << 13) + Vector256.Create(112 << 23);
        Vector256<int> special = Vector256.Create(0x7F800000) | ((magnitude & Vector256.Create(0x3FF)) << 13)
            | (Vector256.GreaterThan(magnitude, Vector256.Create(0x7C00)) & Vector256.Create(0x00400000));
        Vector256<int> subnormal = (Vector256.ConvertToSingle(magnitude) * Vector256.Create(TwoPowMinus24)).AsInt32();
        Vector256<int> bits = Vector256.ConditionalSelect(Vector256.LessThan(magnitude, Vector256.Create(0x0400)), subnormal, normal);
        bits = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(magnitude, Vector256.Create(0x7C00)), special, bits);
        return (bits | sign).AsSingle();
    }

    /// <summary><see cref="ToSingle(ushort)"/> lane by lane on 16 lanes; the halves in the low 16 bits of each lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> ToSingle(Vector512<int> halves)
    {
        Vector512<int> sign = (halves & Vector512.Create(0x8000)) << 16;
        Vector512<int> magnitude = halves & Vector512.Create(0x7FFF);
        Vector512<int> normal = (magnitude << 13) + Vector512.Create(112 << 23);
        Vector512<int> special = Vector512.Create(0x7F800000) | ((magnitude & Vector512.Create(0x3FF)) << 13)
            | (Vector512.GreaterThan(magnitude, Vector512.Create(0x7C00)) & Vector512.Create(0x00400000));
        Vector512<int> subnormal = (Vector512.ConvertToSingle(magnitude) * Vector512.Create(TwoPowMinus24)).AsInt32();
        Vector512<int> bits = Vector512.ConditionalSelect(Vector512.LessThan(magnitude, Vector512.Create(0x0400)), subnormal, normal);
        bits = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(magnitude, Vector512.Create(0x7C00)), special, bits);
        return (bits | sign).AsSingle();
    }
}
