namespace ModelSmith.Formats;

/// <summary>
/// A model or data file that cannot be read as what it claims to be. The message names the file, the byte
/// offset where reading stopped, what was expected there, and, where it can, what would fix it.
/// </summary>
public sealed class ModelFormatException : Exception
{
    public ModelFormatException(string path, long offset, string problem)
        : base($"{path}: at byte {offset}: {problem}")
    {
        FilePath = path;
        Offset = offset;
        Problem = problem;
    }

    public ModelFormatException(string path, long offset, string problem, Exception inner)
        : base($"{path}: at byte {offset}: {problem}", inner)
    {
        FilePath = path;
        Offset = offset;
        Problem = problem;
    }

    public ModelFormatException() : this("(unknown file)", 0, "invalid model file") { }

    public ModelFormatException(string message) : base(message)
    {
        FilePath = "(unknown file)";
        Problem = message;
    }

    public ModelFormatException(string message, Exception inner) : base(message, inner)
    {
        FilePath = "(unknown file)";
        Problem = message;
    }

    /// <summary>The file at fault.</summary>
    public string FilePath { get; }

    /// <summary>Byte offset in the file where the problem was found (-1 when it concerns the whole file).</summary>
    public long Offset { get; }

    /// <summary>What was wrong, without the file and offset prefix.</summary>
    public string Problem { get; }
}
