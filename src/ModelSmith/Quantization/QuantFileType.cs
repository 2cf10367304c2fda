using ModelSmith.Formats;

namespace ModelSmith.Quantization;

/// <summary>
/// llama.cpp's file types (enum llama_ftype, stored as general.file_type): the recipe that decides each
/// tensor's storage type. The numbers are llama.cpp's. The K-quant "mixes" (_S, _M, _L) share a default
/// block type and differ in which tensors llama.cpp gives more bits (see <see cref="QuantMix"/>).
/// </summary>
public enum QuantFileType
{
    /// <summary>All F32 (no quantization).</summary>
    F32 = 0,
    /// <summary>Matrices in F16.</summary>
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q8_0 = 7,
    Q5_0 = 8,
    Q5_1 = 9,
    Q2_K = 10,
    Q3_K_S = 11,
    Q3_K_M = 12,
    Q3_K_L = 13,
    Q4_K_S = 14,
    Q4_K_M = 15,
    Q5_K_S = 16,
    Q5_K_M = 17,
    Q6_K = 18,
    /// <summary>Matrices in BF16.</summary>
    BF16 = 32,
}

/// <summary>Names, parsing and default block types of <see cref="QuantFileType"/>.</summary>
public static class QuantFileTypes
{
    /// <summary>Every file type, in llama-quantize's listing order.</summary>
    public static IReadOnlyList<QuantFileType> All { get; } =
    [
        QuantFileType.Q4_0, QuantFileType.Q4_1, QuantFileType.Q5_0, QuantFileType.Q5_1,
        QuantFileType.Q2_K, QuantFileType.Q3_K_S, QuantFileType.Q3_K_M, QuantFileType.Q3_K_L,
        QuantFileType.Q4_K_S, QuantFileType.Q4_K_M, QuantFileType.Q5_K_S, QuantFileType.Q5_K_M,
        QuantFileType.Q6_K, QuantFileType.Q8_0, QuantFileType.F16, QuantFileType.BF16, QuantFileType.F32,
    ];

    /// <summary>
    /// llama_ftype_get_default_type: the block type most tensors get (Q4_K for Q4_K_S and Q4_K_M, ...).
    /// </summary>
    public static GgmlType DefaultType(QuantFileType fileType) => fileType switch
    {
        QuantFileType.F32 => GgmlType.F32,
        QuantFileType.F16 => GgmlType.F16,
        QuantFileType.BF16 => GgmlType.BF16,
        QuantFileType.Q4_0 => GgmlType.Q4_0,
        QuantFileType.Q4_1 => GgmlType.Q4_1,
        QuantFileType.Q5_0 => GgmlType.Q5_0,
        QuantFileType.Q5_1 => GgmlType.Q5_1,
        QuantFileType.Q8_0 => GgmlType.Q8_0,
        QuantFileType.Q2_K => GgmlType.Q2_K,
        QuantFileType.Q3_K_S or QuantFileType.Q3_K_M or QuantFileType.Q3_K_L => GgmlType.Q3_K,
        QuantFileType.Q4_K_S or QuantFileType.Q4_K_M => GgmlType.Q4_K,
        QuantFileType.Q5_K_S or QuantFileType.Q5_K_M => GgmlType.Q5_K,
        QuantFileType.Q6_K => GgmlType.Q6_K,
        _ => throw new ArgumentOutOfRangeException(nameof(fileType), fileType, "Not a file type ModelSmith writes."),
    };

    /// <summary>The name llama-quantize uses, e.g. "Q4_K_M".</summary>
    public static string Name(QuantFileType fileType) => Enum.IsDefined(fileType)
        ? fileType.ToString()
        : throw new ArgumentOutOfRangeException(nameof(fileType), fileType, "Not a file type ModelSmith writes.");

    /// <summary>
    /// Parses a file type as llama-quantize does: a name in any case ("q4_k_m"), the aliases Q3_K, Q4_K and
    /// Q5_K for the _M mixes, or llama.cpp's number ("15"). Null when <paramref name="text"/> is none of these.
    /// </summary>
    public static QuantFileType? TryParse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string name = text.Trim().ToUpperInvariant();
        switch (name)
        {
            case "Q3_K": return QuantFileType.Q3_K_M;
            case "Q4_K": return QuantFileType.Q4_K_M;
            case "Q5_K": return QuantFileType.Q5_K_M;
        }
        foreach (QuantFileType t in All)
        {
            if (t.ToString() == name)
            {
                return t;
            }
        }
        if (int.TryParse(name, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int id)
            && Enum.IsDefined((QuantFileType)id))
        {
            return (QuantFileType)id;
        }
        return null;
    }

    /// <summary>Parses a file type or throws an exception listing the valid names.</summary>
    public static QuantFileType Parse(string text) => TryParse(text)
        ?? throw new FormatException($"'{text}' is not a file type; use one of {string.Join(", ", All)} (or Q3_K, Q4_K, Q5_K for the _M mixes).");

    /// <summary>True when the file type's default block type is a quantized one (so mixes and overrides apply).</summary>
    public static bool IsQuantized(QuantFileType fileType) => GgmlTypeInfo.BlockSize(DefaultType(fileType)) > 1;
}
