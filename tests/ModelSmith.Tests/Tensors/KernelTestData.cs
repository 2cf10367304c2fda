using System.Buffers;
using System.Runtime.InteropServices;

namespace ModelSmith.Tests.Tensors;

/// <summary>Deterministic inputs and comparison helpers shared by the kernel tests.</summary>
internal static class KernelTestData
{
    /// <summary>Every length from 0 to 257: covers each vector width's whole steps and every tail.</summary>
    public static IEnumerable<int> Lengths => Enumerable.Range(0, 258);

    /// <summary>Uniform values in [lo, hi), the same for the same seed.</summary>
    public static float[] Uniform(int n, int seed, float lo = -1f, float hi = 1f)
    {
        var rng = new Random(seed);
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = lo + (float)rng.NextDouble() * (hi - lo);
        return a;
    }

    /// <summary>Asserts |actual − expected| ≤ abs + rel·|expected| element-wise, naming the first bad index.</summary>
    public static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, float rel, float abs, string context)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            float e = expected[i], a = actual[i];
            if (float.IsNaN(e) && float.IsNaN(a)) continue;
            if (e == a) continue;
            float tol = abs + rel * MathF.Abs(e);
            if (!(MathF.Abs(a - e) <= tol))
                Assert.Fail($"{context}: element {i} is {a:R}, expected {e:R} (tolerance {tol:R}).");
        }
    }

    /// <summary>Asserts the two spans hold the same bits.</summary>
    public static void AssertBitEqual(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string context)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{context}: element {i} is {actual[i]:R}, expected exactly {expected[i]:R}.");
        }
    }
}

/// <summary>Bytes in unmanaged memory behind a <see cref="MemoryManager{T}"/>, as a memory-mapped file is.</summary>
internal sealed unsafe class NativeBytes : MemoryManager<byte>
{
    private readonly byte* _block;
    private readonly byte* _pointer;
    private readonly int _length;

    /// <param name="contents">The bytes to hold.</param>
    /// <param name="offsetFrom64">Where they start relative to a 64-byte (cache-line) boundary.</param>
    public NativeBytes(ReadOnlySpan<byte> contents, int offsetFrom64 = 0)
    {
        _length = contents.Length;
        _block = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(1, _length + offsetFrom64), 64);
        _pointer = _block + offsetFrom64;
        contents.CopyTo(new Span<byte>(_pointer, _length));
    }

    public override Span<byte> GetSpan() => new(_pointer, _length);

    public override MemoryHandle Pin(int elementIndex = 0) => new(_pointer + elementIndex);

    public override void Unpin()
    {
    }

    protected override void Dispose(bool disposing) => NativeMemory.AlignedFree(_block);
}
