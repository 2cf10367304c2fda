namespace ModelSmith.Training.Data;

/// <summary>
/// SplitMix64 (Steele, Lea and Flood 2014): a 64-bit state, advanced by a fixed odd constant and mixed on output.
/// Its whole state is one number, so a data position can carry it, and its output is fixed by definition (unlike
/// System.Random's, which .NET may change).
/// </summary>
internal struct DataRng
{
    public DataRng(ulong state) => State = state;

    public ulong State { get; private set; }

    /// <summary>A state derived from a user seed (one mixing step, so nearby seeds give unrelated streams).</summary>
    public static ulong StateFromSeed(ulong seed)
    {
        var rng = new DataRng(seed);
        return rng.Next();
    }

    public ulong Next()
    {
        State += 0x9E3779B97F4A7C15UL;
        ulong z = State;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform in [0, n): Lemire's multiply-shift with rejection of the biased low range.</summary>
    public int NextInt(int n)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(n, 1);
        ulong bound = (ulong)n;
        ulong threshold = (0UL - bound) % bound;
        while (true)
        {
            UInt128 m = (UInt128)Next() * bound;
            if ((ulong)m >= threshold)
                return (int)(m >> 64);
        }
    }

    /// <summary>Fisher-Yates shuffle of <paramref name="items"/>.</summary>
    public void Shuffle<T>(Span<T> items)
    {
        for (int i = items.Length - 1; i > 0; i--)
        {
            int j = NextInt(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }
}
