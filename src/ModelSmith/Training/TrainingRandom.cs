namespace ModelSmith.Training;

/// <summary>
/// A seeded random stream for initialisation and dropout: SplitMix64 bits, uniform floats from the top 24
/// bits, normals by Box–Muller in double. The whole state is one ulong, so a checkpoint saves and restores
/// it exactly (<see cref="State"/>).
/// </summary>
public sealed class TrainingRandom(ulong seed)
{
    /// <summary>The generator's state; setting it resumes the stream exactly where it was read.</summary>
    public ulong State { get; set; } = seed;

    /// <summary>64 random bits.</summary>
    public ulong NextBits()
    {
        ulong z = State += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform in [0, 1), a multiple of 2^-24.</summary>
    public float NextSingle() => (NextBits() >> 40) * (1f / (1 << 24));

    /// <summary>Uniform in [0, 1) with 53 bits.</summary>
    public double NextDouble() => (NextBits() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Standard normal draw.</summary>
    public double NextNormal()
    {
        double u1 = NextDouble(), u2 = NextDouble();
        return Math.Sqrt(-2 * Math.Log(1 - u1)) * Math.Cos(2 * Math.PI * u2);
    }

    /// <summary>Fills <paramref name="values"/> with N(mean, std²) draws.</summary>
    public void FillNormal(Span<float> values, float mean, float std)
    {
        for (int i = 0; i < values.Length; i++) values[i] = mean + std * (float)NextNormal();
    }

    /// <summary>Fills <paramref name="values"/> with uniform draws in [−bound, bound).</summary>
    public void FillUniform(Span<float> values, float bound)
    {
        for (int i = 0; i < values.Length; i++) values[i] = (2 * NextSingle() - 1) * bound;
    }
}
