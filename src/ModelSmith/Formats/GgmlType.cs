namespace ModelSmith.Formats;

/// <summary>
/// Tensor element types, numbered as ggml numbers them (the ids stored in GGUF files).
/// Gaps are ids that ggml has retired; a file that uses one is rejected.
/// </summary>
public enum GgmlType
{
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1_M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
    MXFP4 = 39,
    NVFP4 = 40,
    Q1_0 = 41,
    Q2_0 = 42,
}

/// <summary>Block geometry of each <see cref="GgmlType"/>: elements per block and bytes per block.</summary>
public static class GgmlTypeInfo
{
    /// <summary>True when <paramref name="id"/> is a type id that current ggml defines.</summary>
    public static bool IsKnown(uint id) => id <= (uint)GgmlType.Q2_0 && BlockSizeOrZero((GgmlType)id) != 0;

    /// <summary>Number of elements one block holds (1 for plain scalar types).</summary>
    public static int BlockSize(GgmlType type)
    {
        int size = BlockSizeOrZero(type);
        if (size == 0) throw new ArgumentOutOfRangeException(nameof(type), type, "Not a ggml type id.");
        return size;
    }

    /// <summary>Number of bytes one block occupies.</summary>
    public static int TypeSize(GgmlType type) => type switch
    {
        GgmlType.F32 => 4,
        GgmlType.F16 => 2,
        GgmlType.Q4_0 => 18,
        GgmlType.Q4_1 => 20,
        GgmlType.Q5_0 => 22,
        GgmlType.Q5_1 => 24,
        GgmlType.Q8_0 => 34,
        GgmlType.Q8_1 => 36,
        GgmlType.Q2_K => 84,
        GgmlType.Q3_K => 110,
        GgmlType.Q4_K => 144,
        GgmlType.Q5_K => 176,
        GgmlType.Q6_K => 210,
        GgmlType.Q8_K => 292,
        GgmlType.IQ2_XXS => 66,
        GgmlType.IQ2_XS => 74,
        GgmlType.IQ3_XXS => 98,
        GgmlType.IQ1_S => 50,
        GgmlType.IQ4_NL => 18,
        GgmlType.IQ3_S => 110,
        GgmlType.IQ2_S => 82,
        GgmlType.IQ4_XS => 136,
        GgmlType.I8 => 1,
        GgmlType.I16 => 2,
        GgmlType.I32 => 4,
        GgmlType.I64 => 8,
        GgmlType.F64 => 8,
        GgmlType.IQ1_M => 56,
        GgmlType.BF16 => 2,
        GgmlType.TQ1_0 => 54,
        GgmlType.TQ2_0 => 66,
        GgmlType.MXFP4 => 17,
        GgmlType.NVFP4 => 36,
        GgmlType.Q1_0 => 18,
        GgmlType.Q2_0 => 18,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "Not a ggml type id."),
    };

    /// <summary>Bytes needed for <paramref name="elements"/> elements, which must be a whole number of blocks.</summary>
    public static long ByteCount(GgmlType type, long elements)
    {
        int block = BlockSize(type);
        if (elements % block != 0)
            throw new ArgumentException($"{elements} elements is not a whole number of {type} blocks of {block}.", nameof(elements));
        return elements / block * TypeSize(type);
    }

    /// <summary>Bits per weight of the format, including its scales.</summary>
    public static double BitsPerWeight(GgmlType type) => 8.0 * TypeSize(type) / BlockSize(type);

    private static int BlockSizeOrZero(GgmlType type) => type switch
    {
        GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.F64
            or GgmlType.I8 or GgmlType.I16 or GgmlType.I32 or GgmlType.I64 => 1,
        GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1
            or GgmlType.Q8_0 or GgmlType.Q8_1 or GgmlType.IQ4_NL or GgmlType.MXFP4 => 32,
        GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K or GgmlType.Q8_K
            or GgmlType.IQ2_XXS or GgmlType.IQ2_XS or GgmlType.IQ3_XXS or GgmlType.IQ1_S or GgmlType.IQ3_S
            or GgmlType.IQ2_S or GgmlType.IQ4_XS or GgmlType.IQ1_M or GgmlType.TQ1_0 or GgmlType.TQ2_0 => 256,
        GgmlType.NVFP4 or GgmlType.Q2_0 => 64,
        GgmlType.Q1_0 => 128,
        _ => 0,
    };
}
