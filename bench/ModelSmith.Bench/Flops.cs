using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ModelSmith.Bench;

/// <summary>Peak fused multiply-add throughput: twelve independent accumulators held in registers, each
/// updated a = a * x + y per step, so that FMA latency (4 cycles) times the FMA ports (2) is covered
/// and nothing touches memory. One FMA on a W-lane vector counts as 2·W FLOPs.</summary>
internal static class Flops
{
    private const int Accumulators = 12;

    /// <summary>FLOP/s of <paramref name="threads"/> threads each running <paramref name="steps"/> steps
    /// of Vector<paramref name="bits"/> FMAs (512 or 256).</summary>
    public static double Run(int threads, int bits, long steps)
    {
        if (bits == 512 && !Vector512.IsHardwareAccelerated)
        {
            throw new PlatformNotSupportedException("Vector512 is not hardware accelerated on this machine (or DOTNET_EnableAVX512F=0).");
        }
        var sink = new float[threads];
        double seconds = Measure.Parallel(threads, w => sink[w] = bits == 512 ? Fma512(steps) : Fma256(steps));
        int lanes = bits / 32;
        return 2.0 * lanes * Accumulators * steps * threads / seconds;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float Fma512(long steps)
    {
        // x slightly below 1 and y small keep every accumulator near y / (1 - x): no overflow, no denormals.
        var x = Vector512.Create(0.999999f);
        var y = Vector512.Create(1e-6f);
        var a0 = Vector512.Create(0.0f);
        var a1 = Vector512.Create(0.1f);
        var a2 = Vector512.Create(0.2f);
        var a3 = Vector512.Create(0.3f);
        var a4 = Vector512.Create(0.4f);
        var a5 = Vector512.Create(0.5f);
        var a6 = Vector512.Create(0.6f);
        var a7 = Vector512.Create(0.7f);
        var a8 = Vector512.Create(0.8f);
        var a9 = Vector512.Create(0.9f);
        var a10 = Vector512.Create(1.0f);
        var a11 = Vector512.Create(1.1f);
        for (long i = 0; i < steps; i++)
        {
            a0 = Vector512.FusedMultiplyAdd(a0, x, y);
            a1 = Vector512.FusedMultiplyAdd(a1, x, y);
            a2 = Vector512.FusedMultiplyAdd(a2, x, y);
            a3 = Vector512.FusedMultiplyAdd(a3, x, y);
            a4 = Vector512.FusedMultiplyAdd(a4, x, y);
            a5 = Vector512.FusedMultiplyAdd(a5, x, y);
            a6 = Vector512.FusedMultiplyAdd(a6, x, y);
            a7 = Vector512.FusedMultiplyAdd(a7, x, y);
            a8 = Vector512.FusedMultiplyAdd(a8, x, y);
            a9 = Vector512.FusedMultiplyAdd(a9, x, y);
            a10 = Vector512.FusedMultiplyAdd(a10, x, y);
            a11 = Vector512.FusedMultiplyAdd(a11, x, y);
        }
        return Vector512.Sum(((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11)));
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float Fma256(long steps)
    {
        var x = Vector256.Create(0.999999f);
        var y = Vector256.Create(1e-6f);
        var a0 = Vector256.Create(0.0f);
        var a1 = Vector256.Create(0.1f);
        var a2 = Vector256.Create(0.2f);
        var a3 = Vector256.Create(0.3f);
        var a4 = Vector256.Create(0.4f);
        var a5 = Vector256.Create(0.5f);
        var a6 = Vector256.Create(0.6f);
        var a7 = Vector256.Create(0.7f);
        var a8 = Vector256.Create(0.8f);
        var a9 = Vector256.Create(0.9f);
        var a10 = Vector256.Create(1.0f);
        var a11 = Vector256.Create(1.1f);
        for (long i = 0; i < steps; i++)
        {
            a0 = Vector256.FusedMultiplyAdd(a0, x, y);
            a1 = Vector256.FusedMultiplyAdd(a1, x, y);
            a2 = Vector256.FusedMultiplyAdd(a2, x, y);
            a3 = Vector256.FusedMultiplyAdd(a3, x, y);
            a4 = Vector256.FusedMultiplyAdd(a4, x, y);
            a5 = Vector256.FusedMultiplyAdd(a5, x, y);
            a6 = Vector256.FusedMultiplyAdd(a6, x, y);
            a7 = Vector256.FusedMultiplyAdd(a7, x, y);
            a8 = Vector256.FusedMultiplyAdd(a8, x, y);
            a9 = Vector256.FusedMultiplyAdd(a9, x, y);
            a10 = Vector256.FusedMultiplyAdd(a10, x, y);
            a11 = Vector256.FusedMultiplyAdd(a11, x, y);
        }
        return Vector256.Sum(((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11)));
    }
}
