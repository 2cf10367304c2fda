using System.Buffers;

namespace ModelSmith.Formats;

/// <summary>
/// Exposes a range of unmanaged memory (a memory-mapped file view) as <see cref="Memory{T}"/>.
/// The owner of the mapping keeps it alive; the manager itself frees nothing.
/// </summary>
internal sealed unsafe class UnmanagedMemory : MemoryManager<byte>
{
    private readonly byte* _pointer;
    private readonly int _length;

    public UnmanagedMemory(byte* pointer, int length)
    {
        _pointer = pointer;
        _length = length;
    }

    public override Span<byte> GetSpan() => new(_pointer, _length);

    public override MemoryHandle Pin(int elementIndex = 0) => new(_pointer + elementIndex);

    public override void Unpin() { }

    protected override void Dispose(bool disposing) { }
}
