using ModelSmith.Tensors;

namespace ModelSmith.Tests.Tensors;

[Trait("Category", "Kernels")]
public class ComputePoolTests
{
    private struct CountJob : IParallelJob
    {
        public int[] Hits;
        public int[] Workers;
        public int ThreadCount;

        public readonly void Execute(int item, int worker)
        {
            Interlocked.Increment(ref Hits[item]);
            if (worker < 0 || worker >= ThreadCount) Workers[0] = -1;
        }
    }

    [Fact]
    public void Every_item_runs_exactly_once_for_any_thread_and_item_count()
    {
        for (int threads = 1; threads <= 4; threads++)
        {
            using var pool = new ComputePool(threads);
            for (int count = 0; count <= 70; count++)
            {
                var job = new CountJob { Hits = new int[count], Workers = new int[1], ThreadCount = threads };
                pool.Run(ref job, count);
                Assert.All(job.Hits, h => Assert.Equal(1, h));
                Assert.Equal(0, job.Workers[0]);
            }
        }
    }

    [Fact]
    public void Thousands_of_back_to_back_jobs_all_complete()
    {
        using var pool = new ComputePool(3);
        var hits = new int[8];
        for (int i = 0; i < 3000; i++)
        {
            var job = new CountJob { Hits = hits, Workers = new int[1], ThreadCount = 3 };
            pool.Run(ref job, hits.Length);
        }
        Assert.All(hits, h => Assert.Equal(3000, h));
    }

    [Fact]
    public void Workers_that_went_to_sleep_wake_for_the_next_job()
    {
        using var pool = new ComputePool(2);
        for (int round = 0; round < 3; round++)
        {
            Thread.Sleep(20); // well past the spin period: the worker blocks
            var job = new CountJob { Hits = new int[16], Workers = new int[1], ThreadCount = 2 };
            pool.Run(ref job, 16);
            Assert.All(job.Hits, h => Assert.Equal(1, h));
        }
    }

    // Item 0 waits until item 2 has run, so worker 0 is held inside its own range while worker 1 starts.
    private struct RangeJob : IParallelJob
    {
        public int[] RanOn;     // (count): the worker that ran each item, -1 before
        public int[] FirstItem; // (threads): the first item each worker ran, -1 before

        public readonly void Execute(int item, int worker)
        {
            Interlocked.CompareExchange(ref FirstItem[worker], item, -1);
            if (item == 0)
            {
                var clock = System.Diagnostics.Stopwatch.StartNew();
                while (Volatile.Read(ref RanOn[2]) < 0 && clock.ElapsedMilliseconds < 30000) Thread.Yield();
            }
            Volatile.Write(ref RanOn[item], worker);
        }
    }

    [Fact]
    public void Each_worker_starts_on_its_own_contiguous_range_of_items()
    {
        using var pool = new ComputePool(2);
        for (int round = 0; round < 20; round++)
        {
            var job = new RangeJob { RanOn = [-1, -1, -1, -1], FirstItem = [-1, -1] };
            pool.Run(ref job, 4);
            // Four items on two workers: [0, 2) belongs to the caller, [2, 4) to worker 1, which takes item 2
            // first (one shared counter would have handed it item 1).
            Assert.Equal(2, job.FirstItem[1]);
            Assert.All(job.RanOn, w => Assert.InRange(w, 0, 1));
        }
    }

    private struct ThrowingJob : IParallelJob
    {
        public readonly void Execute(int item, int worker)
        {
            if (item == 5) throw new InvalidDataException("item 5 failed");
        }
    }

    [Fact]
    public void An_exception_in_a_job_reaches_the_caller_and_the_pool_stays_usable()
    {
        using var pool = new ComputePool(3);
        var failing = new ThrowingJob();
        var e = Assert.Throws<InvalidDataException>(() => pool.Run(ref failing, 40));
        Assert.Equal("item 5 failed", e.Message);
        var job = new CountJob { Hits = new int[10], Workers = new int[1], ThreadCount = 3 };
        pool.Run(ref job, 10);
        Assert.All(job.Hits, h => Assert.Equal(1, h));
    }

    private struct NestedJob : IParallelJob
    {
        public ComputePool Pool;
        public int[] Failures;

        public readonly void Execute(int item, int worker)
        {
            var inner = new CountJob { Hits = new int[2], Workers = new int[1], ThreadCount = 1 };
            try
            {
                Pool.Run(ref inner, 2);
            }
            catch (InvalidOperationException)
            {
                Interlocked.Increment(ref Failures[0]);
            }
        }
    }

    [Fact]
    public void Running_a_job_from_inside_a_job_is_refused()
    {
        using var pool = new ComputePool(2);
        var job = new NestedJob { Pool = pool, Failures = new int[1] };
        pool.Run(ref job, 4);
        Assert.Equal(4, job.Failures[0]);
    }

    [Fact]
    public unsafe void Scratch_is_aligned_private_per_worker_and_grows()
    {
        using var pool = new ComputePool(3);
        float* a = pool.GetScratchPointer(0, 100);
        float* b = pool.GetScratchPointer(1, 100);
        Assert.True(a != b);
        Assert.Equal(0, (long)a % 64);
        Assert.Equal(0, (long)b % 64);
        Assert.Equal(1000, pool.GetScratch(2, 1000).Length);
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.GetScratch(3, 1));
    }

    [Fact]
    public void A_disposed_pool_refuses_work_and_bad_sizes_are_rejected()
    {
        var pool = new ComputePool(2);
        pool.Dispose();
        pool.Dispose();
        var job = new CountJob { Hits = new int[1], Workers = new int[1], ThreadCount = 2 };
        Assert.Throws<ObjectDisposedException>(() => pool.Run(ref job, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ComputePool(0));
    }
}
