using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace ModelSmith.Tensors;

/// <summary>
/// The one software prefetch a sequential read stream needs. The hardware prefetcher follows a single
/// stream well but stops at every 4 KiB page and has to find the stream again on the next one, so the
/// first line of the page one page ahead is fetched once per page (measured in
/// <see cref="MatMul"/>'s one-row decode kernel: a quarter more bandwidth from one thread). A prefetch of
/// every line is slower than none.
/// </summary>
internal static unsafe class StreamPrefetch
{
    /// <summary>The page the hardware prefetcher does not stream across.</summary>
    public const int PageBytes = 4096;

    /// <summary>
    /// Call at every step of a loop that reads <paramref name="step"/> bytes at <paramref name="at"/> in
    /// order: prefetches into L1 the first line of the page a page ahead, on the one step per page whose
    /// look-ahead lands on it. No-op where x86 prefetch instructions are not available.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void PageAhead(byte* at, nint step)
    {
        byte* ahead = at + PageBytes;
        if (Sse.IsSupported && ((nint)ahead & (PageBytes - 1)) < step) Sse.Prefetch0(ahead);
    }
}
