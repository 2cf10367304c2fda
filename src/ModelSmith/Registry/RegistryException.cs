namespace ModelSmith.Registry;

/// <summary>
/// The registry cannot be used: the database is corrupt or from a newer version, an id is unknown or ambiguous,
/// a parent does not exist. The message names the database file or the value at fault and what would fix it.
/// An <see cref="IOException"/>, so callers that report I/O failures report these too.
/// </summary>
public sealed class RegistryException : IOException
{
    public RegistryException() { }

    public RegistryException(string message) : base(message) { }

    public RegistryException(string message, Exception inner) : base(message, inner) { }
}
