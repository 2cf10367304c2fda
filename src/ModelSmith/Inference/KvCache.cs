using ModelSmith.Models;

namespace ModelSmith.Inference;

/// <summary>
/// Keys and values of every position processed so far, for every layer, in F32.
/// Layout per layer: (kv-heads, capacity, D), so one head's keys are contiguous across positions and the
/// attention loop over positions streams memory. Allocated once for a fixed capacity.
/// </summary>
public sealed class KvCache
{
    private readonly float[] _keys;
    private readonly float[] _values;

    public KvCache(ModelConfig config, int capacity)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        Config = config;
        Capacity = capacity;
        LayerStride = (long)config.KvHeadCount * capacity * config.HeadDim;
        long total = config.BlockCount * LayerStride;
        if (total > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(capacity), $"A KV cache of {capacity} positions needs {total} floats per tensor, more than one array holds; use a shorter context.");
        _keys = new float[total];
        _values = new float[total];
    }

    public ModelConfig Config { get; }

    /// <summary>Maximum number of positions.</summary>
    public int Capacity { get; }

    /// <summary>Positions filled so far; the next token goes at this position.</summary>
    public int Length { get; private set; }

    /// <summary>Bytes held by keys and values.</summary>
    public long SizeInBytes => 2L * _keys.Length * sizeof(float);

    internal long LayerStride { get; }

    /// <summary>Forgets every position.</summary>
    public void Clear() => Length = 0;

    /// <summary>Drops positions from <paramref name="length"/> on, keeping the prefix.</summary>
    public void Truncate(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, Length);
        Length = length;
    }

    /// <summary>Keys of one layer and kv-head: (capacity, D).</summary>
    internal Span<float> Keys(int layer, int kvHead) => _keys.AsSpan(Offset(layer, kvHead), Capacity * Config.HeadDim);

    /// <summary>Values of one layer and kv-head: (capacity, D).</summary>
    internal Span<float> Values(int layer, int kvHead) => _values.AsSpan(Offset(layer, kvHead), Capacity * Config.HeadDim);

    internal void Advance(int count)
    {
        if (Length + count > Capacity) throw new InvalidOperationException($"KV cache full: {Length} + {count} positions exceed its capacity of {Capacity}.");
        Length += count;
    }

    private int Offset(int layer, int kvHead) => checked((int)(layer * LayerStride + (long)kvHead * Capacity * Config.HeadDim));
}
