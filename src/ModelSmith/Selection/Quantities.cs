using System.Globalization;

namespace ModelSmith.Selection;

/// <summary>Parses the sizes and counts users type: "2GiB", "512MB", "1.5G"; "8B", "260K", "7e9"; "2%".</summary>
public static class Quantities
{
    /// <summary>
    /// Bytes from a number with an optional unit: B, KB/MB/GB/TB (powers of 1000), KiB/MiB/GiB/TiB and the bare
    /// K/M/G/T (powers of 1024), in any case. Null when the text is not one.
    /// </summary>
    public static long? TryParseBytes(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        (double value, string unit)? split = Split(text);
        if (split is null) return null;
        (double v, string u) = split.Value;
        double scale = u.ToUpperInvariant() switch
        {
            "" or "B" => 1,
            "KB" => 1e3,
            "MB" => 1e6,
            "GB" => 1e9,
            "TB" => 1e12,
            "K" or "KIB" => 1L << 10,
            "M" or "MIB" => 1L << 20,
            "G" or "GIB" => 1L << 30,
            "T" or "TIB" => 1L << 40,
            _ => double.NaN,
        };
        double bytes = v * scale;
        return double.IsFinite(bytes) && bytes >= 0 && bytes < long.MaxValue ? (long)Math.Round(bytes) : null;
    }

    /// <summary>A count with an optional K/M/B (or G)/T suffix in powers of 1000: "8B" = 8e9, "260K" = 260000. Null when not one.</summary>
    public static long? TryParseCount(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        (double value, string unit)? split = Split(text);
        if (split is null) return null;
        (double v, string u) = split.Value;
        double scale = u.ToUpperInvariant() switch
        {
            "" => 1,
            "K" => 1e3,
            "M" => 1e6,
            "B" or "G" => 1e9,
            "T" => 1e12,
            _ => double.NaN,
        };
        double n = v * scale;
        return double.IsFinite(n) && n >= 0 && n < long.MaxValue ? (long)Math.Round(n) : null;
    }

    /// <summary>A fraction from "2%", "0.02" or "2 %" (percent when the sign is there). Null when not one.</summary>
    public static double? TryParseFraction(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string t = text.Trim();
        bool percent = t.EndsWith('%');
        if (percent) t = t[..^1].TrimEnd();
        if (!double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || !double.IsFinite(v) || v < 0) return null;
        return percent ? v / 100 : v;
    }

    private static (double Value, string Unit)? Split(string text)
    {
        string t = text.Trim();
        int i = 0;
        while (i < t.Length && (char.IsAsciiDigit(t[i]) || t[i] is '.' or 'e' or 'E' or '+' or '-'))
        {
            // An 'e' is an exponent only when a digit or sign follows it.
            if (t[i] is 'e' or 'E' && (i + 1 >= t.Length || !(char.IsAsciiDigit(t[i + 1]) || t[i + 1] is '+' or '-'))) break;
            i++;
        }
        if (i == 0) return null;
        if (!double.TryParse(t[..i], NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || !double.IsFinite(v)) return null;
        return (v, t[i..].Trim());
    }
}
