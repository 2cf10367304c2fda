using System.Text;

namespace ModelSmith.Tokenization;

/// <summary>
/// Turns token ids into text one at a time, as a generator produces them. A token's piece can end in the middle
/// of a UTF-8 sequence (byte-level BPE splits characters, byte-fallback tokens carry one byte each); the decoder
/// keeps such an incomplete tail until the next tokens complete it, so every returned string is whole characters.
/// The concatenation of everything returned (and <see cref="Flush"/>) equals <see cref="Tokenizer.Decode"/> of the ids.
/// </summary>
public sealed class TokenStreamDecoder
{
    private readonly Tokenizer _tokenizer;
    private readonly bool _renderSpecial;
    private readonly Decoder _utf8 = new UTF8Encoding(false, false).GetDecoder();
    private char[] _chars = new char[64];
    private bool _stripSpace;

    internal TokenStreamDecoder(Tokenizer tokenizer, bool renderSpecial)
    {
        _tokenizer = tokenizer;
        _renderSpecial = renderSpecial;
        _stripSpace = tokenizer.StartsStripped;
    }

    /// <summary>The text completed by token <paramref name="id"/>; empty while a character is still incomplete.</summary>
    public string Append(int id)
    {
        ReadOnlySpan<byte> piece = _tokenizer.TokenToPiece(id, _renderSpecial);
        if (_tokenizer.IsSpecialFragment(id))
        {
            _stripSpace = _tokenizer.StartsStripped;
        }
        else
        {
            if (_stripSpace && piece.Length > 0 && piece[0] == (byte)' ')
                piece = piece[1..];
            _stripSpace = false;
        }
        return Convert(piece, flush: false);
    }

    /// <summary>Ends the stream: an incomplete trailing sequence comes out as U+FFFD.</summary>
    public string Flush()
    {
        string rest = Convert([], flush: true);
        _stripSpace = _tokenizer.StartsStripped;
        return rest;
    }

    private string Convert(ReadOnlySpan<byte> bytes, bool flush)
    {
        // at most one char per byte, plus what the up to 3 held-back bytes become
        int needed = bytes.Length + 8;
        if (_chars.Length < needed)
            _chars = new char[Math.Max(needed, _chars.Length * 2)];
        int count = _utf8.GetChars(bytes, _chars, flush);
        return count == 0 ? string.Empty : new string(_chars, 0, count);
    }
}
