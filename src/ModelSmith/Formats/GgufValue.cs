using System.Globalization;
using System.Text;

namespace ModelSmith.Formats;

/// <summary>Metadata value types as GGUF numbers them.</summary>
public enum GgufValueType : uint
{
    UInt8 = 0,
    Int8 = 1,
    UInt16 = 2,
    Int16 = 3,
    UInt32 = 4,
    Int32 = 5,
    Float32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    UInt64 = 10,
    Int64 = 11,
    Float64 = 12,
}

/// <summary>
/// One GGUF metadata value: a scalar, a string, or an array (whose elements may themselves be arrays).
/// Arrays hold a typed CLR array (<c>byte[]</c>, <c>int[]</c>, <c>float[]</c>, <c>string[]</c>, <c>bool[]</c>,
/// <c>GgufValue[]</c> for nested arrays ...), so large vocabularies cost one allocation each.
/// </summary>
public sealed class GgufValue : IEquatable<GgufValue>
{
    private GgufValue(GgufValueType type, object value, GgufValueType elementType = GgufValueType.UInt8)
    {
        Type = type;
        Value = value;
        ElementType = elementType;
    }

    public GgufValueType Type { get; }

    /// <summary>For arrays, the type of each element; otherwise meaningless.</summary>
    public GgufValueType ElementType { get; }

    /// <summary>The boxed scalar, string, or typed CLR array.</summary>
    public object Value { get; }

    public static GgufValue FromUInt8(byte v) => new(GgufValueType.UInt8, v);
    public static GgufValue FromInt8(sbyte v) => new(GgufValueType.Int8, v);
    public static GgufValue FromUInt16(ushort v) => new(GgufValueType.UInt16, v);
    public static GgufValue FromInt16(short v) => new(GgufValueType.Int16, v);
    public static GgufValue FromUInt32(uint v) => new(GgufValueType.UInt32, v);
    public static GgufValue FromInt32(int v) => new(GgufValueType.Int32, v);
    public static GgufValue FromUInt64(ulong v) => new(GgufValueType.UInt64, v);
    public static GgufValue FromInt64(long v) => new(GgufValueType.Int64, v);
    public static GgufValue FromFloat32(float v) => new(GgufValueType.Float32, v);
    public static GgufValue FromFloat64(double v) => new(GgufValueType.Float64, v);
    public static GgufValue FromBool(bool v) => new(GgufValueType.Bool, v);
    public static GgufValue FromString(string v) => new(GgufValueType.String, v ?? throw new ArgumentNullException(nameof(v)));

    public static GgufValue FromArray(byte[] v) => new(GgufValueType.Array, v, GgufValueType.UInt8);
    public static GgufValue FromArray(sbyte[] v) => new(GgufValueType.Array, v, GgufValueType.Int8);
    public static GgufValue FromArray(ushort[] v) => new(GgufValueType.Array, v, GgufValueType.UInt16);
    public static GgufValue FromArray(short[] v) => new(GgufValueType.Array, v, GgufValueType.Int16);
    public static GgufValue FromArray(uint[] v) => new(GgufValueType.Array, v, GgufValueType.UInt32);
    public static GgufValue FromArray(int[] v) => new(GgufValueType.Array, v, GgufValueType.Int32);
    public static GgufValue FromArray(ulong[] v) => new(GgufValueType.Array, v, GgufValueType.UInt64);
    public static GgufValue FromArray(long[] v) => new(GgufValueType.Array, v, GgufValueType.Int64);
    public static GgufValue FromArray(float[] v) => new(GgufValueType.Array, v, GgufValueType.Float32);
    public static GgufValue FromArray(double[] v) => new(GgufValueType.Array, v, GgufValueType.Float64);
    public static GgufValue FromArray(bool[] v) => new(GgufValueType.Array, v, GgufValueType.Bool);
    public static GgufValue FromArray(string[] v) => new(GgufValueType.Array, v, GgufValueType.String);

    /// <summary>An array of arrays; every element must itself be an array value.</summary>
    public static GgufValue FromArray(GgufValue[] v)
    {
        ArgumentNullException.ThrowIfNull(v);
        foreach (GgufValue e in v)
            if (e.Type != GgufValueType.Array) throw new ArgumentException("Nested GGUF arrays must hold only arrays.", nameof(v));
        return new(GgufValueType.Array, v, GgufValueType.Array);
    }

    /// <summary>Number of elements of an array value.</summary>
    public int ArrayLength => Type == GgufValueType.Array ? ((Array)Value).Length : throw new InvalidOperationException($"A {Type} value is not an array.");

    /// <summary>The value as a string; throws when it is not one.</summary>
    public string AsString() => Value as string ?? throw new InvalidCastException($"GGUF value is {Type}, not String.");

    /// <summary>Any integer type (or bool) widened to long.</summary>
    public long AsInt64() => Value switch
    {
        byte v => v,
        sbyte v => v,
        ushort v => v,
        short v => v,
        uint v => v,
        int v => v,
        ulong v when v <= long.MaxValue => (long)v,
        long v => v,
        bool v => v ? 1 : 0,
        _ => throw new InvalidCastException($"GGUF value is {Type}, not an integer."),
    };

    /// <summary>A float type, or an integer, as double.</summary>
    public double AsDouble() => Value switch
    {
        float v => v,
        double v => v,
        _ => AsInt64(),
    };

    public bool AsBool() => Value is bool b ? b : throw new InvalidCastException($"GGUF value is {Type}, not Bool.");

    /// <summary>An array value's elements as the typed CLR array <typeparamref name="T"/>[].</summary>
    public T[] AsArray<T>() => Value as T[] ?? throw new InvalidCastException(
        $"GGUF value is {(Type == GgufValueType.Array ? $"an array of {ElementType}" : Type.ToString())}, not an array of {typeof(T).Name}.");

    /// <summary>An integer array of any element type widened to long[].</summary>
    public long[] AsInt64Array()
    {
        if (Type != GgufValueType.Array) throw new InvalidCastException($"GGUF value is {Type}, not an array.");
        Array a = (Array)Value;
        var result = new long[a.Length];
        for (int i = 0; i < result.Length; i++)
            result[i] = Convert.ToInt64(a.GetValue(i), CultureInfo.InvariantCulture);
        return result;
    }

    public bool Equals(GgufValue? other)
    {
        if (other is null || other.Type != Type || other.ElementType != ElementType) return false;
        if (Type != GgufValueType.Array) return Value.Equals(other.Value);
        Array a = (Array)Value, b = (Array)other.Value;
        if (a.Length != b.Length) return false;
        for (int i = 0; i < a.Length; i++)
            if (!Equals(a.GetValue(i), b.GetValue(i))) return false;
        return true;
    }

    public override bool Equals(object? obj) => Equals(obj as GgufValue);

    public override int GetHashCode() => HashCode.Combine(Type, ElementType, Type == GgufValueType.Array ? ((Array)Value).Length : Value.GetHashCode());

    /// <summary>A short human-readable rendering (long arrays are elided).</summary>
    public override string ToString()
    {
        if (Type == GgufValueType.String) return AsString();
        if (Type != GgufValueType.Array) return Convert.ToString(Value, CultureInfo.InvariantCulture) ?? "";
        Array a = (Array)Value;
        var sb = new StringBuilder();
        sb.Append('[');
        int shown = Math.Min(a.Length, 8);
        for (int i = 0; i < shown; i++)
        {
            if (i > 0) sb.Append(", ");
            object? e = a.GetValue(i);
            sb.Append(e is string s ? $"\"{s}\"" : Convert.ToString(e, CultureInfo.InvariantCulture));
        }
        if (a.Length > shown) sb.Append(CultureInfo.InvariantCulture, $", ... ({a.Length} {ElementType})");
        sb.Append(']');
        return sb.ToString();
    }
}
