using System.Security.Cryptography;

namespace ModelSmith.Registry;

/// <summary>SHA-256 of files, streamed (model files can be larger than memory).</summary>
public static class FileHash
{
    /// <summary>The SHA-256 of the file's bytes as 64 lowercase hex digits.</summary>
    public static string Sha256(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1 << 20, FileOptions.SequentialScan);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }
}
