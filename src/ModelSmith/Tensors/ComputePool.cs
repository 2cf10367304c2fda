using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;

namespace ModelSmith.Tensors;

/// <summary>
/// One unit of parallel work: <see cref="Execute"/> is called once for every item in [0, count),
/// each item on exactly one thread, in no particular order.
/// </summary>
internal interface IParallelJob
{
    /// <summary>
    /// Does item <paramref name="item"/>. <paramref name="worker"/> is the index in [0, ThreadCount) of the
    /// thread running it (0 is the thread that called <see cref="ComputePool.Run{TJob}"/>); use it to pick
    /// per-thread scratch, never to decide what to compute, so results do not depend on the thread count.
    /// </summary>
    void Execute(int item, int worker);
}

/// <summary>
/// A fixed set of worker threads running a parallel-for over work items.
/// </summary>
/// <remarks>
/// <para>The calling thread takes part as worker 0, so a pool of N threads starts N − 1 background threads
/// and a pool of 1 runs every job inline. The items are cut into N contiguous ranges, one per worker; each
/// worker takes its own range's items in order, then helps with what is left of the others' ranges. An
/// item's result must depend only on the item, never on which worker runs it; kernels built this way give
/// bit-identical results for every thread count.</para>
/// <para>Why ranges: a matrix-vector product streams its weights from memory, and each core's hardware
/// prefetcher follows one sequential stream. Handing out rows round-robin from one shared counter makes
/// every core's stream jump every few kilobytes, and the prefetcher runs ahead into rows another core
/// reads; on a 2-core machine that cut decode throughput at 2 threads by about 40% against the same
/// work in contiguous halves. Each worker's claim counter sits on its own cache line, so claiming an
/// item does not bounce a line between cores either.</para>
/// <para>Between jobs the workers spin for a short while (a forward pass issues jobs microseconds apart) and
/// then block, so an idle pool costs no CPU. The first 20 µs of the spin are plain pause instructions:
/// yielding to the scheduler at once (as <see cref="SpinWait"/> does after a few rounds) delayed the next
/// job's start by several microseconds in a virtual machine. A pool with more threads than cores yields
/// from the start. <see cref="Run{TJob}"/> allocates nothing after the first call
/// with a given job type. One caller at a time: calling Run from inside a job, or from two threads at once,
/// throws.</para>
/// </remarks>
internal sealed unsafe class ComputePool : IDisposable
{
    // How long an idle worker waits for the next job, spinning, before it blocks.
    private static readonly long SpinTicks = Stopwatch.Frequency / 5000; // 200 µs

    // How much of that wait (and of the caller's wait for the workers) is plain pause instructions before
    // the spin starts yielding its core: zero when the pool has more threads than the machine has cores,
    // where a thread that spins without yielding keeps a thread with work off the core (measured: 3 threads
    // on 2 cores decoded at a fifth of the 2-thread speed).
    private readonly long _pureSpinTicks;

    private readonly Thread[] _threads;
    private readonly object _gate = new();
    private readonly Dictionary<Type, object> _boxes = [];
    private readonly Scratch[] _scratch;

    // The published job: read by workers after they observe a new epoch.
    private object? _box;
    private delegate*<object, int, int, void> _invoke;

    private readonly Cursor[] _cursors; // per worker: next unclaimed item of its range, and the range's end
    private int _epoch;       // bumped once per job (and once on Dispose)
    private int _finished;    // workers done with the current epoch
    private int _sleeping;    // workers blocked on _gate
    private int _busy;        // 1 while a Run is in progress
    private volatile bool _disposed;
    private ExceptionDispatchInfo? _failure;

    /// <summary>Creates a pool of <paramref name="threadCount"/> threads, the caller included.</summary>
    public ComputePool(int threadCount)
    {
        if (threadCount < 1 || threadCount > 1024)
            throw new ArgumentOutOfRangeException(nameof(threadCount), threadCount, "A compute pool needs between 1 and 1024 threads (1 runs everything on the caller).");
        ThreadCount = threadCount;
        _pureSpinTicks = threadCount <= Environment.ProcessorCount ? Stopwatch.Frequency / 50000 : 0; // 20 µs
        _scratch = new Scratch[threadCount];
        _cursors = new Cursor[threadCount];
        _threads = new Thread[threadCount - 1];
        for (int i = 0; i < _threads.Length; i++)
        {
            int worker = i + 1;
            _threads[i] = new Thread(() => WorkerLoop(worker))
            {
                IsBackground = true,
                Name = $"ModelSmith compute {worker}",
            };
            _threads[i].Start();
        }
    }

    /// <summary>Number of threads that run jobs, the calling thread included.</summary>
    public int ThreadCount { get; }

    /// <summary>
    /// Calls <c>job.Execute(item, worker)</c> for every item in [0, <paramref name="count"/>) across the pool
    /// and returns when all are done. The job is copied once; it must hand its results out through the
    /// arrays or pointers it holds. The first exception a job throws is rethrown here.
    /// </summary>
    public void Run<TJob>(ref readonly TJob job, int count) where TJob : struct, IParallelJob
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (count <= 0) return;
        if (Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
            throw new InvalidOperationException("ComputePool.Run was called while another Run on the same pool is in progress (from a job, or from a second thread); a pool runs one job at a time.");
        try
        {
            if (_threads.Length == 0 || count == 1)
            {
                TJob local = job;
                for (int i = 0; i < count; i++) local.Execute(i, 0);
                return;
            }

            StrongBox<TJob> box = BoxFor<TJob>();
            box.Value = job;
            _box = box;
            _invoke = &Invoke<TJob>;
            _failure = null;
            int workers = ThreadCount;
            for (int w = 0; w < workers; w++)
            {
                _cursors[w].Next = (int)((long)count * w / workers);
                _cursors[w].End = (int)((long)count * (w + 1) / workers);
            }
            Volatile.Write(ref _finished, 0);
            Interlocked.Increment(ref _epoch); // full fence: publishes the job before workers can see the epoch
            if (Volatile.Read(ref _sleeping) > 0)
            {
                lock (_gate) Monitor.PulseAll(_gate);
            }

            RunItems(0);

            long start = Stopwatch.GetTimestamp();
            SpinWait wait = default;
            while (Volatile.Read(ref _finished) != _threads.Length)
            {
                if (Stopwatch.GetTimestamp() - start < _pureSpinTicks) Thread.SpinWait(1);
                else wait.SpinOnce(sleep1Threshold: -1);
            }

            _box = null;
            box.Value = default;
            _failure?.Throw();
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <summary>
    /// A buffer of at least <paramref name="length"/> floats private to <paramref name="worker"/>, 64-byte
    /// aligned, contents undefined. It stays valid until the same worker asks for a longer one or the pool
    /// is disposed; it belongs to whichever job that worker is running.
    /// </summary>
    public Span<float> GetScratch(int worker, int length) => new(GetScratchPointer(worker, length), length);

    /// <summary>Pointer form of <see cref="GetScratch"/>, for kernels that work on raw pointers.</summary>
    public float* GetScratchPointer(int worker, int length)
    {
        if ((uint)worker >= (uint)ThreadCount)
            throw new ArgumentOutOfRangeException(nameof(worker), worker, $"Worker index must be in [0, {ThreadCount}).");
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ref Scratch s = ref _scratch[worker];
        if (s.Length < length)
        {
            NativeMemory.AlignedFree(s.Pointer);
            s.Pointer = null;
            s.Length = 0;
            nuint bytes = (nuint)Math.Max(length, 16) * sizeof(float);
            s.Pointer = (float*)NativeMemory.AlignedAlloc(bytes, 64);
            s.Length = length;
        }
        return s.Pointer;
    }

    /// <summary>Stops the worker threads and frees the scratch buffers.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Interlocked.Increment(ref _epoch);
        lock (_gate) Monitor.PulseAll(_gate);
        foreach (Thread t in _threads) t.Join();
        for (int i = 0; i < _scratch.Length; i++)
        {
            NativeMemory.AlignedFree(_scratch[i].Pointer);
            _scratch[i] = default;
        }
    }

    private static void Invoke<TJob>(object box, int item, int worker) where TJob : struct, IParallelJob
        => Unsafe.As<StrongBox<TJob>>(box).Value.Execute(item, worker);

    private StrongBox<TJob> BoxFor<TJob>() where TJob : struct, IParallelJob
    {
        if (_boxes.TryGetValue(typeof(TJob), out object? existing)) return (StrongBox<TJob>)existing;
        var box = new StrongBox<TJob>();
        _boxes.Add(typeof(TJob), box);
        return box;
    }

    private void WorkerLoop(int worker)
    {
        int seen = 0;
        while (true)
        {
            seen = WaitForJob(seen);
            if (_disposed) return;
            RunItems(worker);
            Interlocked.Increment(ref _finished);
        }
    }

    // Returns the new epoch once it differs from `seen`: spins first, then blocks on the gate.
    private int WaitForJob(int seen)
    {
        long start = Stopwatch.GetTimestamp();
        SpinWait spin = default;
        while (true)
        {
            int epoch = Volatile.Read(ref _epoch);
            if (epoch != seen) return epoch;
            long waited = Stopwatch.GetTimestamp() - start;
            if (waited > SpinTicks) break;
            if (waited < _pureSpinTicks) Thread.SpinWait(1);
            else spin.SpinOnce(sleep1Threshold: -1);
        }
        lock (_gate)
        {
            // Interlocked (a full fence) before re-reading the epoch: either Run sees this worker asleep and
            // pulses, or this worker sees Run's new epoch. A pulse cannot be lost.
            Interlocked.Increment(ref _sleeping);
            while (Volatile.Read(ref _epoch) == seen) Monitor.Wait(_gate);
            Interlocked.Decrement(ref _sleeping);
            return Volatile.Read(ref _epoch);
        }
    }

    // The worker's own range first, then the rest of each other range, the next worker's first.
    private void RunItems(int worker)
    {
        object box = _box!;
        delegate*<object, int, int, void> invoke = _invoke;
        Cursor[] cursors = _cursors;
        try
        {
            for (int i = 0; i < cursors.Length; i++)
            {
                ref Cursor range = ref cursors[(worker + i) % cursors.Length];
                int end = range.End;
                while (true)
                {
                    int item = Interlocked.Increment(ref range.Next) - 1;
                    if (item >= end) break;
                    invoke(box, item, worker);
                }
            }
        }
        catch (Exception e)
        {
            Interlocked.CompareExchange(ref _failure, ExceptionDispatchInfo.Capture(e), null);
            for (int i = 0; i < cursors.Length; i++) Volatile.Write(ref cursors[i].Next, cursors[i].End); // the others stop taking items
        }
    }

    private struct Scratch
    {
        public float* Pointer;
        public int Length;
    }

    // One worker's range [start, End) of the current job, Next the first item not yet claimed; 64 bytes so
    // that no two workers' counters share a cache line.
    [StructLayout(LayoutKind.Explicit, Size = 64)]
    private struct Cursor
    {
        [FieldOffset(0)] public int Next;
        [FieldOffset(4)] public int End;
    }
}
