using System.Globalization;

namespace ModelSmith.Tokenization;

/// <summary>
/// llama.cpp's unicode_cpt_flags: one general-category bit per code point plus White_Space. <see cref="None"/> is what
/// llama.cpp's splitters see past the end of a piece (a zero flags value), distinct from <see cref="Undefined"/> (Cn).
/// </summary>
[Flags]
internal enum CodepointFlags : ushort
{
    None = 0,
    Undefined = 0x0001,   // Cn
    Number = 0x0002,      // \p{N}: Nd Nl No
    Letter = 0x0004,      // \p{L}: Lu Ll Lt Lm Lo
    Separator = 0x0008,   // \p{Z}: Zs Zl Zp
    Mark = 0x0010,        // \p{M}: Mn Mc Me
    Punctuation = 0x0020, // \p{P}: Pc Pd Ps Pe Pi Pf Po
    Symbol = 0x0040,      // \p{S}: Sm Sc Sk So
    Control = 0x0080,     // \p{C}: Cc Cf Cs Co
    Categories = 0x00FF,
    Whitespace = 0x0100,  // the Unicode White_Space property, as llama.cpp's unicode_set_whitespace
}

/// <summary>
/// Flags of a code point, from .NET's Unicode tables (llama.cpp generates the same flags from UnicodeData.txt; the
/// two can only differ on code points assigned in one Unicode version and not the other).
/// </summary>
internal static class Codepoints
{
    private static readonly CodepointFlags[] Bmp = BuildBmp();

    /// <summary>Flags of <paramref name="cp"/>; <see cref="CodepointFlags.Undefined"/> for values outside 0..0x10FFFF.</summary>
    public static CodepointFlags Flags(int cp)
    {
        if ((uint)cp < (uint)Bmp.Length)
            return Bmp[cp];
        if (cp > 0x10FFFF || cp < 0)
            return CodepointFlags.Undefined;
        return Compute(cp);
    }

    public static bool IsWhitespace(int cp) => cp switch
    {
        >= 0x09 and <= 0x0D => true,
        0x20 or 0x85 or 0xA0 or 0x1680 => true,
        >= 0x2000 and <= 0x200A => true,
        0x2028 or 0x2029 or 0x202F or 0x205F or 0x3000 => true,
        _ => false,
    };

    private static CodepointFlags[] BuildBmp()
    {
        var table = new CodepointFlags[0x10000];
        for (int cp = 0; cp < table.Length; cp++)
            table[cp] = Compute(cp);
        return table;
    }

    private static CodepointFlags Compute(int cp)
    {
        CodepointFlags category = CharUnicodeInfo.GetUnicodeCategory(cp) switch
        {
            UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => CodepointFlags.Letter,
            UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => CodepointFlags.Number,
            UnicodeCategory.SpaceSeparator or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator => CodepointFlags.Separator,
            UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark => CodepointFlags.Mark,
            UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation or UnicodeCategory.OpenPunctuation
                or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation
                or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation => CodepointFlags.Punctuation,
            UnicodeCategory.MathSymbol or UnicodeCategory.CurrencySymbol or UnicodeCategory.ModifierSymbol
                or UnicodeCategory.OtherSymbol => CodepointFlags.Symbol,
            UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.Surrogate
                or UnicodeCategory.PrivateUse => CodepointFlags.Control,
            _ => CodepointFlags.Undefined,
        };
        return IsWhitespace(cp) ? category | CodepointFlags.Whitespace : category;
    }
}
