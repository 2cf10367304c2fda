using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ModelSmith.Tensors;

/// <summary>
/// An element-wise function y = f(x) at every width: the same math written once per register type.
/// Operators are structs (possibly with fields, e.g. a scale factor); the drivers in
/// <see cref="Elementwise"/> are generic over them, so the JIT inlines the operator into the loop.
/// </summary>
internal interface IUnaryOperator
{
    float Invoke(float x);
    Vector128<float> Invoke(Vector128<float> x);
    Vector256<float> Invoke(Vector256<float> x);
    Vector512<float> Invoke(Vector512<float> x);
}

/// <summary>An element-wise function y = f(a, b) at every width.</summary>
internal interface IBinaryOperator
{
    float Invoke(float a, float b);
    Vector128<float> Invoke(Vector128<float> a, Vector128<float> b);
    Vector256<float> Invoke(Vector256<float> a, Vector256<float> b);
    Vector512<float> Invoke(Vector512<float> a, Vector512<float> b);
}

/// <summary>An element-wise function y = f(a, b, c) at every width.</summary>
internal interface ITernaryOperator
{
    float Invoke(float a, float b, float c);
    Vector128<float> Invoke(Vector128<float> a, Vector128<float> b, Vector128<float> c);
    Vector256<float> Invoke(Vector256<float> a, Vector256<float> b, Vector256<float> c);
    Vector512<float> Invoke(Vector512<float> a, Vector512<float> b, Vector512<float> c);
}

/// <summary>
/// The shared drivers: walk the spans with Vector512 while 16 elements remain, then one Vector256 step,
/// one Vector128 step and scalars for the rest, each width used only when the JIT accelerates it (so
/// <c>DOTNET_EnableAVX512=0</c> / <c>DOTNET_EnableAVX2=0</c> run the narrower paths over whole spans).
/// </summary>
/// <remarks>
/// The output may be the very same span as an input (in place); any other overlap is rejected, because
/// a vector store could then clobber input not yet read.
/// </remarks>
internal static class Elementwise
{
    /// <summary>y[i] = op(x[i]). x: (N), y: (N), may be x itself.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Map<TOp>(ReadOnlySpan<float> x, Span<float> y, TOp op) where TOp : struct, IUnaryOperator
    {
        CheckOutput(x.Length, y, x, nameof(y));
        ref float xs = ref MemoryMarshal.GetReference(x);
        ref float ys = ref MemoryMarshal.GetReference(y);
        nint n = x.Length, i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i <= n - 32; i += 32)
            {
                Vector512<float> a = Vector512.LoadUnsafe(ref xs, (nuint)i);
                Vector512<float> b = Vector512.LoadUnsafe(ref xs, (nuint)(i + 16));
                op.Invoke(a).StoreUnsafe(ref ys, (nuint)i);
                op.Invoke(b).StoreUnsafe(ref ys, (nuint)(i + 16));
            }
            if (i <= n - 16)
            {
                op.Invoke(Vector512.LoadUnsafe(ref xs, (nuint)i)).StoreUnsafe(ref ys, (nuint)i);
                i += 16;
            }
        }
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= n - 8; i += 8) op.Invoke(Vector256.LoadUnsafe(ref xs, (nuint)i)).StoreUnsafe(ref ys, (nuint)i);
        }
        if (Vector128.IsHardwareAccelerated)
        {
            for (; i <= n - 4; i += 4) op.Invoke(Vector128.LoadUnsafe(ref xs, (nuint)i)).StoreUnsafe(ref ys, (nuint)i);
        }
        for (; i < n; i++) Unsafe.Add(ref ys, i) = op.Invoke(Unsafe.Add(ref xs, i));
    }

    /// <summary>y[i] = op(a[i], b[i]). a: (N), b: (N), y: (N), may be a or b itself.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Map<TOp>(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> y, TOp op) where TOp : struct, IBinaryOperator
    {
        if (a.Length != b.Length)
            throw new ArgumentException($"The two inputs have {a.Length} and {b.Length} elements; they must be the same length.", nameof(b));
        CheckOutput(a.Length, y, a, nameof(y));
        CheckOutput(a.Length, y, b, nameof(y));
        ref float As = ref MemoryMarshal.GetReference(a);
        ref float Bs = ref MemoryMarshal.GetReference(b);
        ref float ys = ref MemoryMarshal.GetReference(y);
        nint n = a.Length, i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i <= n - 32; i += 32)
            {
                Vector512<float> a0 = Vector512.LoadUnsafe(ref As, (nuint)i), a1 = Vector512.LoadUnsafe(ref As, (nuint)(i + 16));
                Vector512<float> b0 = Vector512.LoadUnsafe(ref Bs, (nuint)i), b1 = Vector512.LoadUnsafe(ref Bs, (nuint)(i + 16));
                op.Invoke(a0, b0).StoreUnsafe(ref ys, (nuint)i);
                op.Invoke(a1, b1).StoreUnsafe(ref ys, (nuint)(i + 16));
            }
            if (i <= n - 16)
            {
                op.Invoke(Vector512.LoadUnsafe(ref As, (nuint)i), Vector512.LoadUnsafe(ref Bs, (nuint)i)).StoreUnsafe(ref ys, (nuint)i);
                i += 16;
            }
        }
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= n - 8; i += 8)
                op.Invoke(Vector256.LoadUnsafe(ref As, (nuint)i), Vector256.LoadUnsafe(ref Bs, (nuint)i)).StoreUnsafe(ref ys, (nuint)i);
        }
        if (Vector128.IsHardwareAccelerated)
        {
            for (; i <= n - 4; i += 4)
                op.Invoke(Vector128.LoadUnsafe(ref As, (nuint)i), Vector128.LoadUnsafe(ref Bs, (nuint)i)).StoreUnsafe(ref ys, (nuint)i);
        }
        for (; i < n; i++) Unsafe.Add(ref ys, i) = op.Invoke(Unsafe.Add(ref As, i), Unsafe.Add(ref Bs, i));
    }

    /// <summary>y[i] = op(a[i], b[i], c[i]). a, b, c, y: (N); y may be any input itself.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Map<TOp>(ReadOnlySpan<float> a, ReadOnlySpan<float> b, ReadOnlySpan<float> c, Span<float> y, TOp op) where TOp : struct, ITernaryOperator
    {
        if (a.Length != b.Length || a.Length != c.Length)
            throw new ArgumentException($"The three inputs have {a.Length}, {b.Length} and {c.Length} elements; they must be the same length.", nameof(c));
        CheckOutput(a.Length, y, a, nameof(y));
        CheckOutput(a.Length, y, b, nameof(y));
        CheckOutput(a.Length, y, c, nameof(y));
        ref float As = ref MemoryMarshal.GetReference(a);
        ref float Bs = ref MemoryMarshal.GetReference(b);
        ref float Cs = ref MemoryMarshal.GetReference(c);
        ref float ys = ref MemoryMarshal.GetReference(y);
        nint n = a.Length, i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i <= n - 16; i += 16)
            {
                op.Invoke(Vector512.LoadUnsafe(ref As, (nuint)i), Vector512.LoadUnsafe(ref Bs, (nuint)i), Vector512.LoadUnsafe(ref Cs, (nuint)i))
                    .StoreUnsafe(ref ys, (nuint)i);
            }
        }
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= n - 8; i += 8)
            {
                op.Invoke(Vector256.LoadUnsafe(ref As, (nuint)i), Vector256.LoadUnsafe(ref Bs, (nuint)i), Vector256.LoadUnsafe(ref Cs, (nuint)i))
                    .StoreUnsafe(ref ys, (nuint)i);
            }
        }
        if (Vector128.IsHardwareAccelerated)
        {
            for (; i <= n - 4; i += 4)
            {
                op.Invoke(Vector128.LoadUnsafe(ref As, (nuint)i), Vector128.LoadUnsafe(ref Bs, (nuint)i), Vector128.LoadUnsafe(ref Cs, (nuint)i))
                    .StoreUnsafe(ref ys, (nuint)i);
            }
        }
        for (; i < n; i++) Unsafe.Add(ref ys, i) = op.Invoke(Unsafe.Add(ref As, i), Unsafe.Add(ref Bs, i), Unsafe.Add(ref Cs, i));
    }

    /// <summary>
    /// Throws unless <paramref name="output"/> has room for <paramref name="length"/> elements and either is
    /// <paramref name="input"/> itself or does not overlap it.
    /// </summary>
    public static void CheckOutput(int length, ReadOnlySpan<float> output, ReadOnlySpan<float> input, string name)
    {
        if (output.Length < length)
            throw new ArgumentException($"The output holds {output.Length} floats but {length} are written; give it at least {length}.", name);
        if (input.Overlaps(output, out int offset) && offset != 0)
            throw new ArgumentException($"The output overlaps an input shifted by {offset} elements; use the same span (in place) or separate buffers.", name);
    }
}
