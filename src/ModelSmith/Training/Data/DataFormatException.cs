namespace ModelSmith.Training.Data;

/// <summary>A record of training data that cannot be used: the file, the 1-based line (0 for the file as a whole) and why.</summary>
public sealed class DataFormatException : Exception
{
    public DataFormatException()
        : this("(unknown file)", 0, "malformed training data")
    {
    }

    public DataFormatException(string message)
        : this("(unknown file)", 0, message)
    {
    }

    public DataFormatException(string message, Exception innerException)
        : this("(unknown file)", 0, message, innerException)
    {
    }

    public DataFormatException(string filePath, long line, string reason, Exception? innerException = null)
        : base(line > 0 ? $"{filePath}:{line}: {reason}" : $"{filePath}: {reason}", innerException)
    {
        FilePath = filePath;
        Line = line;
        Reason = reason;
    }

    /// <summary>The file as the user named it (a path given on the command line, or below a folder given there).</summary>
    public string FilePath { get; }

    /// <summary>1-based line of the record; 0 when the problem is the file as a whole.</summary>
    public long Line { get; }

    /// <summary>What is wrong, and what would fix it.</summary>
    public string Reason { get; }
}
