using System.Text;
using System.Text.RegularExpressions;
using ModelSmith.Formats;

namespace ModelSmith.Quantization;

/// <summary>
/// A user's per-tensor type choice, <c>PATTERN=TYPE</c> (smith quantize --keep), llama-quantize's
/// --tensor-type. PATTERN is either
/// <list type="bullet">
/// <item>a glob over the whole tensor name: <c>*</c> any run of characters, <c>?</c> one character, everything
/// else literal (<c>blk.*.attn_v.weight</c>, <c>output.weight</c>, <c>*ffn_down*</c>); or</item>
/// <item><c>re:</c> followed by a regular expression searched anywhere in the name, which is what
/// llama-quantize's --tensor-type does (<c>re:attn_(q|k)</c>, <c>re:^blk\.(0|1)\.</c>).</item>
/// </list>
/// TYPE is a ggml type name, any case: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k.
/// As in llama.cpp, the first matching override wins, it replaces the file type's mix for that tensor, it
/// only applies to tensors that are quantized at all (2-D and larger weights, not norms), and a block type
/// the tensor's row length does not fit still falls back (or is refused with --no-fallback).
/// </summary>
public sealed class TensorTypeOverride
{
    private readonly Regex _regex;

    private TensorTypeOverride(string pattern, bool isRegex, GgmlType type, Regex regex)
    {
        Pattern = pattern;
        IsRegex = isRegex;
        Type = type;
        _regex = regex;
    }

    /// <summary>The pattern as given (without the "re:" prefix).</summary>
    public string Pattern { get; }

    /// <summary>True for a regular expression searched in the name, false for a glob over the whole name.</summary>
    public bool IsRegex { get; }

    /// <summary>The type matching tensors are stored in.</summary>
    public GgmlType Type { get; }

    /// <summary>The types an override may name.</summary>
    public static IReadOnlyList<GgmlType> Types { get; } =
    [
        GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1,
        GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K,
    ];

    /// <summary>True when tensor <paramref name="name"/> matches.</summary>
    public bool Matches(string name) => _regex.IsMatch(name);

    /// <summary>The override in the form it was given, e.g. "blk.*.attn_v.weight=q8_0".</summary>
    public override string ToString() => $"{(IsRegex ? "re:" : "")}{Pattern}={TypeName(Type)}";

    /// <summary>Parses <c>PATTERN=TYPE</c> (see the class comment); throws <see cref="FormatException"/> saying what is wrong.</summary>
    public static TensorTypeOverride Parse(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        int eq = spec.LastIndexOf('=');
        if (eq < 0)
        {
            throw new FormatException($"'{spec}' is not PATTERN=TYPE (e.g. 'blk.*.attn_v.weight=q8_0' or 're:ffn_down=q6_k').");
        }
        string pattern = spec[..eq];
        string typeText = spec[(eq + 1)..];
        GgmlType type = ParseType(typeText)
            ?? throw new FormatException($"'{typeText}' in '{spec}' is not a tensor type; use one of {string.Join(", ", Types.Select(TypeName))}.");
        if (pattern.StartsWith("re:", StringComparison.Ordinal))
        {
            return FromRegex(pattern[3..], type);
        }
        if (pattern.Length == 0)
        {
            throw new FormatException($"'{spec}' has no tensor name pattern before '='.");
        }
        return new TensorTypeOverride(pattern, isRegex: false, type, GlobToRegex(pattern));
    }

    /// <summary>An override whose <paramref name="regex"/> is searched anywhere in the name (llama.cpp's tt_overrides).</summary>
    public static TensorTypeOverride FromRegex(string regex, GgmlType type)
    {
        ArgumentNullException.ThrowIfNull(regex);
        if (regex.Length == 0)
        {
            throw new FormatException("The regular expression after 're:' is empty.");
        }
        if (!Types.Contains(type))
        {
            throw new FormatException($"{type} is not a type an override may name; use one of {string.Join(", ", Types.Select(TypeName))}.");
        }
        try
        {
            return new TensorTypeOverride(regex, isRegex: true, type, new Regex(regex, RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1)));
        }
        catch (ArgumentException e)
        {
            throw new FormatException($"'{regex}' is not a valid regular expression: {e.Message}", e);
        }
    }

    /// <summary>A ggml type name (f16, q4_k, ...) in any case, or null.</summary>
    public static GgmlType? ParseType(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        foreach (GgmlType t in Types)
        {
            if (string.Equals(TypeName(t), text.Trim(), StringComparison.OrdinalIgnoreCase))
            {
                return t;
            }
        }
        return null;
    }

    /// <summary>ggml's lower-case type name, e.g. "q4_K" is printed "q4_k".</summary>
    public static string TypeName(GgmlType type) => type.ToString().ToLowerInvariant();

    private static Regex GlobToRegex(string glob)
    {
        var sb = new StringBuilder("^");
        foreach (char c in glob)
        {
            sb.Append(c switch
            {
                '*' => ".*",
                '?' => ".",
                _ => Regex.Escape(c.ToString()),
            });
        }
        sb.Append('$');
        return new Regex(sb.ToString(), RegexOptions.CultureInvariant | RegexOptions.Singleline);
    }
}
