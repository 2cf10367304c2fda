namespace ModelSmith.Formats;

/// <summary>
/// Element types a safetensors header may name, declared in the reference implementation's order
/// (huggingface/safetensors <c>Dtype</c>), which is also its layout rank: the reference writer lays tensors
/// out by descending rank, then by name. Only F32, F16 and BF16 are computed with here; the rest are read
/// and written as opaque bytes.
/// </summary>
public enum SafetensorsDtype
{
    BOOL,
    F4,
    F6_E2M3,
    F6_E3M2,
    U8,
    I8,
    F8_E5M2,
    F8_E4M3,
    F8_E8M0,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    C64,
    F64,
    I64,
    U64,
}

/// <summary>Sizes and names of <see cref="SafetensorsDtype"/> values.</summary>
public static class SafetensorsDtypeInfo
{
    private static readonly SafetensorsDtype[] All = Enum.GetValues<SafetensorsDtype>();

    /// <summary>Bits per element: 4 (F4), 6 (F6_*), 8, 16, 32 or 64. BOOL takes a whole byte.</summary>
    public static int BitSize(SafetensorsDtype dtype) => dtype switch
    {
        SafetensorsDtype.F4 => 4,
        SafetensorsDtype.F6_E2M3 or SafetensorsDtype.F6_E3M2 => 6,
        SafetensorsDtype.BOOL or SafetensorsDtype.U8 or SafetensorsDtype.I8
            or SafetensorsDtype.F8_E5M2 or SafetensorsDtype.F8_E4M3 or SafetensorsDtype.F8_E8M0 => 8,
        SafetensorsDtype.I16 or SafetensorsDtype.U16 or SafetensorsDtype.F16 or SafetensorsDtype.BF16 => 16,
        SafetensorsDtype.I32 or SafetensorsDtype.U32 or SafetensorsDtype.F32 => 32,
        SafetensorsDtype.C64 or SafetensorsDtype.F64 or SafetensorsDtype.I64 or SafetensorsDtype.U64 => 64,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Not a safetensors dtype."),
    };

    /// <summary>The spelling used in headers ("F32", "BF16", "F8_E4M3" ...).</summary>
    public static string Name(SafetensorsDtype dtype) =>
        Enum.IsDefined(dtype) ? dtype.ToString() : throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Not a safetensors dtype.");

    /// <summary>Parses a header spelling; matching is exact and case-sensitive, as in the reference.</summary>
    public static bool TryParse(ReadOnlySpan<char> name, out SafetensorsDtype dtype)
    {
        foreach (SafetensorsDtype d in All)
        {
            if (name.SequenceEqual(d.ToString()))
            {
                dtype = d;
                return true;
            }
        }
        dtype = default;
        return false;
    }

    /// <summary>Every header spelling, for error messages.</summary>
    public static string KnownNames => string.Join(", ", All);

    /// <summary>
    /// Bytes that <paramref name="elements"/> elements take, or -1 when the count overflows or (for the
    /// sub-byte types) does not end on a byte boundary.
    /// </summary>
    public static long ByteCount(SafetensorsDtype dtype, long elements)
    {
        int bits = BitSize(dtype);
        if (elements < 0 || elements > long.MaxValue / bits) return -1;
        long totalBits = elements * bits;
        return totalBits % 8 == 0 ? totalBits / 8 : -1;
    }

    /// <summary>The ggml type with the same element encoding, for the types both formats share.</summary>
    public static bool TryGetGgmlType(SafetensorsDtype dtype, out GgmlType type)
    {
        (bool ok, type) = dtype switch
        {
            SafetensorsDtype.F32 => (true, GgmlType.F32),
            SafetensorsDtype.F16 => (true, GgmlType.F16),
            SafetensorsDtype.BF16 => (true, GgmlType.BF16),
            SafetensorsDtype.F64 => (true, GgmlType.F64),
            SafetensorsDtype.I8 => (true, GgmlType.I8),
            SafetensorsDtype.I16 => (true, GgmlType.I16),
            SafetensorsDtype.I32 => (true, GgmlType.I32),
            SafetensorsDtype.I64 => (true, GgmlType.I64),
            _ => (false, GgmlType.F32),
        };
        return ok;
    }
}
