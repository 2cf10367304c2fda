using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace ModelSmith.Training.Data;

/// <summary>
/// One file of training data: where it is, and the name it goes by in errors, the data fingerprint and the
/// train/validation split (the path relative to the folder that was named, prefixed with that folder's own name, or
/// just the file name for a file that was named; '/' separated), so that moving the data does not change them.
/// </summary>
/// <param name="FullPath">Absolute path.</param>
/// <param name="Name">Stable display name, e.g. <c>brown/humor.txt.gz</c>.</param>
/// <param name="Length">Size in bytes when found.</param>
public sealed record DataFile(string FullPath, string Name, long Length)
{
    /// <summary>Extensions of files taken from folders.</summary>
    public static readonly IReadOnlyList<string> Extensions = [".txt", ".txt.gz", ".jsonl", ".jsonl.gz"];

    /// <summary>
    /// The files named by <paramref name="paths"/>: a file as it is (whatever its extension), a folder as every file
    /// below it (recursively) with one of <see cref="Extensions"/>, in ordinal order of their names. The result is
    /// sorted by name (then path), so the order of <paramref name="paths"/> does not matter.
    /// </summary>
    public static IReadOnlyList<DataFile> Find(IEnumerable<string> paths)
    {
        ArgumentNullException.ThrowIfNull(paths);
        var files = new List<DataFile>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (string path in paths)
        {
            ArgumentException.ThrowIfNullOrEmpty(path, nameof(paths));
            string full = Path.GetFullPath(path);
            if (File.Exists(full))
            {
                Add(files, seen, full, Path.GetFileName(full));
                continue;
            }
            if (!Directory.Exists(full))
                throw new FileNotFoundException($"training data '{path}' is neither a file nor a folder; check the path.", path);
            string folderName = Path.GetFileName(Path.TrimEndingDirectorySeparator(full));
            int before = files.Count;
            foreach (string file in Directory.EnumerateFiles(full, "*", SearchOption.AllDirectories))
            {
                if (!HasDataExtension(file))
                    continue;
                string relative = Path.GetRelativePath(full, file).Replace(Path.DirectorySeparatorChar, '/');
                Add(files, seen, file, string.IsNullOrEmpty(folderName) ? relative : folderName + "/" + relative);
            }
            if (files.Count == before)
                throw new FileNotFoundException($"folder '{path}' holds no training data: no file below it ends in {string.Join(", ", Extensions)}.", path);
        }
        if (files.Count == 0)
            throw new ArgumentException("no training data was named; give at least one file or folder.", nameof(paths));
        files.Sort((a, b) =>
        {
            int byName = string.CompareOrdinal(a.Name, b.Name);
            return byName != 0 ? byName : string.CompareOrdinal(a.FullPath, b.FullPath);
        });
        return files;
    }

    /// <summary>
    /// SHA-256 (lowercase hex) over every file in order: its name (UTF-8), a 0 byte, its size (8 bytes, little-endian)
    /// and its bytes as stored (compressed files are hashed compressed). Same names and bytes, same fingerprint.
    /// </summary>
    public static string Fingerprint(IReadOnlyList<DataFile> files)
    {
        ArgumentNullException.ThrowIfNull(files);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        byte[] buffer = new byte[1 << 16];
        Span<byte> size = stackalloc byte[8];
        foreach (DataFile file in files)
        {
            hash.AppendData(Encoding.UTF8.GetBytes(file.Name));
            hash.AppendData([0]);
            using var stream = new FileStream(file.FullPath, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
            BinaryPrimitives.WriteInt64LittleEndian(size, stream.Length);
            hash.AppendData(size);
            int read;
            while ((read = stream.Read(buffer)) > 0)
                hash.AppendData(buffer.AsSpan(0, read));
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    internal static bool HasDataExtension(string path)
    {
        foreach (string extension in Extensions)
            if (path.EndsWith(extension, StringComparison.OrdinalIgnoreCase))
                return true;
        return false;
    }

    private static void Add(List<DataFile> files, HashSet<string> seen, string full, string name)
    {
        if (!seen.Add(full))
            throw new ArgumentException($"training data file '{full}' is named twice (directly or through a folder); name it once.");
        files.Add(new DataFile(full, name, new FileInfo(full).Length));
    }
}
