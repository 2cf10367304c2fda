using System.IO.MemoryMappedFiles;

namespace ModelSmith.Formats;

/// <summary>
/// A whole file mapped read-only into memory. Readers parse from <see cref="Pointer"/> after checking every
/// offset against <see cref="Length"/>; tensor data handed out as <see cref="Memory"/> stays valid until
/// the mapping is disposed.
/// </summary>
internal sealed unsafe class MappedFile : IDisposable
{
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private bool _disposed;

    private MappedFile(string path, long length, MemoryMappedFile map, MemoryMappedViewAccessor view, byte* pointer)
    {
        Path = path;
        Length = length;
        _map = map;
        _view = view;
        Pointer = pointer;
    }

    public string Path { get; }

    public long Length { get; }

    /// <summary>The first byte of the file.</summary>
    public byte* Pointer { get; }

    public bool IsDisposed => _disposed;

    /// <summary>
    /// Maps <paramref name="path"/>. A missing file is a <see cref="FileNotFoundException"/>; a directory or a
    /// file shorter than <paramref name="minLength"/> bytes is a <see cref="ModelFormatException"/> that says
    /// it is not a <paramref name="format"/> file.
    /// </summary>
    public static MappedFile Open(string path, long minLength, string format)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (Directory.Exists(path))
            throw new ModelFormatException(path, -1, $"this is a directory, not a {format} file; pass the path of the file itself.");
        var info = new FileInfo(path);
        if (!info.Exists) throw new FileNotFoundException($"{path}: no such file.", path);
        long length = info.Length;
        if (length < Math.Max(minLength, 1))
            throw new ModelFormatException(path, 0, $"file is {length} bytes, too short for a {format} header ({minLength} bytes); it is truncated or not a {format} file.");

        MemoryMappedFile map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        MemoryMappedViewAccessor? view = null;
        byte* pointer = null;
        try
        {
            view = map.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
            return new MappedFile(path, length, map, view, pointer + view.PointerOffset);
        }
        catch
        {
            if (pointer != null) view!.SafeMemoryMappedViewHandle.ReleasePointer();
            view?.Dispose();
            map.Dispose();
            throw;
        }
    }

    /// <summary><paramref name="length"/> bytes at <paramref name="offset"/>; the caller has checked the range.</summary>
    public ReadOnlySpan<byte> Span(long offset, int length)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return new ReadOnlySpan<byte>(Pointer + offset, length);
    }

    /// <summary>The same range as memory, for tensor data that outlives the call (no copy).</summary>
    public ReadOnlyMemory<byte> Memory(long offset, int length)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return new UnmanagedMemory(Pointer + offset, length).Memory;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
    }
}
