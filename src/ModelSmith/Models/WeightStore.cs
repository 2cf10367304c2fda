using System.Runtime.InteropServices;
using ModelSmith.Formats;

namespace ModelSmith.Models;

/// <summary>Where a model's weights live while it runs.</summary>
public enum WeightResidence
{
    /// <summary>
    /// Read straight from the file's memory map: instant load, pages shared with the OS file cache and with
    /// other processes mapping the same file.
    /// </summary>
    Mapped,

    /// <summary>
    /// Copied into one private, 2 MiB-aligned block that asks the kernel for transparent huge pages: a slower
    /// load and a private copy, but fewer TLB misses while decode streams every weight once per token
    /// (what llama.cpp does with --no-mmap).
    /// </summary>
    Memory,
}

/// <summary>
/// Hands out the bytes of a GGUF file's tensors, either from the file's memory map or from a private copy
/// made once at load (see <see cref="WeightResidence"/>). The copy is freed on dispose.
/// </summary>
internal sealed unsafe class WeightStore : IDisposable
{
    private const nuint HugePage = 2 << 20;
    private const int MadviseHugePage = 14; // MADV_HUGEPAGE
    private const int MadviseDontNeed = 4; // MADV_DONTNEED

    private readonly GgufFile _file;
    private readonly byte* _copy;
    private readonly Dictionary<string, ReadOnlyMemory<byte>> _copies = new(StringComparer.Ordinal);

    public WeightStore(GgufFile file, WeightResidence residence)
    {
        _file = file;
        Residence = residence;
        if (residence != WeightResidence.Memory || file.Tensors.Count == 0) return;

        long total = 0;
        foreach (GgufTensorInfo t in file.Tensors) total += GgufFile.AlignUp(t.ByteSize, 64);
        nuint size = ((nuint)total + HugePage - 1) / HugePage * HugePage;
        _copy = (byte*)NativeMemory.AlignedAlloc(size, HugePage);
        if (OperatingSystem.IsLinux()) _ = Madvise(_copy, size, MadviseHugePage);
        long offset = 0;
        foreach (GgufTensorInfo t in file.Tensors)
        {
            ReadOnlySpan<byte> source = file.GetTensorData(t).Span;
            source.CopyTo(new Span<byte>(_copy + offset, source.Length));
            _copies[t.Name] = new UnmanagedMemory(_copy + offset, source.Length).Memory;
            offset += GgufFile.AlignUp(t.ByteSize, 64);
            if (OperatingSystem.IsLinux()) ReleaseMappedPages(source);
        }
    }

    /// <summary>
    /// Drops the file map's pages of a tensor just copied from this process's resident set (MADV_DONTNEED on
    /// the whole pages inside it; they stay in the OS file cache), so a private copy does not count the
    /// weights twice: peak resident memory is then the copy plus one tensor, as with llama.cpp's --no-mmap.
    /// </summary>
    private static void ReleaseMappedPages(ReadOnlySpan<byte> source)
    {
        fixed (byte* p = source)
        {
            nuint page = (nuint)Environment.SystemPageSize;
            nuint start = ((nuint)p + page - 1) / page * page;
            nuint end = ((nuint)p + (nuint)source.Length) / page * page;
            if (end > start) _ = Madvise((void*)start, end - start, MadviseDontNeed);
        }
    }

    public WeightResidence Residence { get; }

    /// <summary>The bytes of <paramref name="tensor"/>, valid until this store is disposed.</summary>
    public ReadOnlyMemory<byte> Get(GgufTensorInfo tensor) =>
        _copy == null ? _file.GetTensorData(tensor) : _copies[tensor.Name];

    public void Dispose()
    {
        if (_copy != null) NativeMemory.AlignedFree(_copy);
    }

    [DllImport("libc", EntryPoint = "madvise", SetLastError = true)]
    private static extern int Madvise(void* address, nuint length, int advice);
}
