using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using ModelSmith.Tensors;

namespace ModelSmith.Bench;

/// <summary>Sustained memory read bandwidth: a buffer much larger than the last-level cache is summed
/// with 512-bit loads, split into contiguous slices over the worker threads. A streaming sum is what a
/// decode step does with the weights, so this is the roof the decode-efficiency column divides by.</summary>
internal sealed unsafe class Bandwidth : IDisposable
{
    private readonly float* _data; // (n,)
    private readonly long _count;

    /// <summary>Allocates and touches <paramref name="bytes"/> (rounded down to a multiple of 512 bytes,
    /// one unrolled step of the sum).</summary>
    public Bandwidth(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(bytes, 1L << 20);
        _count = bytes / 512 * 128;
        _data = (float*)NativeMemory.AlignedAlloc((nuint)(_count * sizeof(float)), 64);
        // Writing every page now keeps page faults (and the shared zero page) out of the timed reads.
        for (long i = 0; i < _count; i += 1L << 28)
        {
            new Span<float>(_data + i, (int)Math.Min(1L << 28, _count - i)).Fill(1f);
        }
    }

    public long Bytes => _count * sizeof(float);

    /// <summary>Reads the whole buffer once on <paramref name="threads"/> threads; returns bytes per second.</summary>
    public double Run(int threads)
    {
        var sums = new float[threads];
        double seconds = Measure.Parallel(threads, w =>
        {
            long perWorker = _count / threads / 128 * 128;
            long start = w * perWorker;
            long end = w == threads - 1 ? _count : start + perWorker;
            sums[w] = Sum(_data + start, end - start);
        });
        float total = 0f;
        for (int w = 0; w < threads; w++)
        {
            total += sums[w];
        }
        if (total <= 0f)
        {
            throw new InvalidOperationException("Bandwidth buffer summed to zero: the reads were optimised away or the buffer was not filled.");
        }
        return Bytes / seconds;
    }

    /// <summary>Sum of <paramref name="n"/> floats (n a multiple of 128); eight independent accumulators so
    /// that the add latency never limits the load rate, and one software prefetch per 4 KiB page
    /// (<see cref="StreamPrefetch.PageAhead"/>, as the decode kernels issue it): the hardware prefetcher
    /// stops at every page, and without it one thread reads about a quarter less.</summary>
    private static float Sum(float* x, long n)
    {
        var a0 = Vector512<float>.Zero;
        var a1 = Vector512<float>.Zero;
        var a2 = Vector512<float>.Zero;
        var a3 = Vector512<float>.Zero;
        var a4 = Vector512<float>.Zero;
        var a5 = Vector512<float>.Zero;
        var a6 = Vector512<float>.Zero;
        var a7 = Vector512<float>.Zero;
        for (long i = 0; i < n; i += 128)
        {
            StreamPrefetch.PageAhead((byte*)(x + i), 512);
            a0 += Vector512.LoadAligned(x + i);
            a1 += Vector512.LoadAligned(x + i + 16);
            a2 += Vector512.LoadAligned(x + i + 32);
            a3 += Vector512.LoadAligned(x + i + 48);
            a4 += Vector512.LoadAligned(x + i + 64);
            a5 += Vector512.LoadAligned(x + i + 80);
            a6 += Vector512.LoadAligned(x + i + 96);
            a7 += Vector512.LoadAligned(x + i + 112);
        }
        return Vector512.Sum(((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)));
    }

    public void Dispose() => NativeMemory.AlignedFree(_data);
}
