using System.Diagnostics;
using System.Runtime.CompilerServices;
using ModelSmith.Evaluation;
using ModelSmith.LlamaCpp;

namespace ModelSmith.Cli.Commands;

/// <summary>llama.cpp's numbers for `smith bench --vs-llama-cpp`.</summary>
/// <param name="LoadTime">Loading the file and creating the context.</param>
/// <param name="KvCacheType">"F16" (llama-bench's default).</param>
/// <param name="FlashAttention">"auto" (llama-bench's default; llama.cpp turns it on for the CPU backend).</param>
/// <param name="NativeLibrary">Which build of libllama LLamaSharp loaded, e.g. "libllama avx512".</param>
internal sealed record LlamaCppBenchResult(
    TimeSpan LoadTime,
    string KvCacheType,
    string FlashAttention,
    int MicroBatchSize,
    bool MemoryMapped,
    string NativeLibrary,
    string Settings,
    IReadOnlyList<SpeedTestResult> Tests);

/// <summary>
/// The llama.cpp half of `smith bench --vs-llama-cpp`: the same tests, timed by the same
/// <see cref="SpeedBenchmark"/> loop (same warm-up, same kind of token ids), on llama.cpp with llama-bench's
/// context settings (<see cref="LlamaCppModel.WithLlamaBenchSettings"/>: F16 KV cache, flash attention auto, n_ubatch 512, mmap).
/// This is the only place smith touches <see cref="LlamaCppModel"/>, whose static constructor loads the native
/// library; BenchCommand calls it only when the option is given, and it is never inlined into its caller, so a
/// plain `smith bench` loads neither LLamaSharp nor libllama.
/// </summary>
internal static class LlamaCppBench
{
    /// <summary>Times <paramref name="tests"/> on llama.cpp with <paramref name="threads"/> threads.
    /// <paramref name="progress"/>(test name, repetitions) returns the progress sink of one test, or null.</summary>
    /// <exception cref="LlamaCppRefusedException">llama.cpp cannot load, or cannot run, the file (the message names it).</exception>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static LlamaCppBenchResult Run(string path, int threads, IReadOnlyList<(SpeedTestKind Kind, int Tokens)> tests, int reps,
        Func<string, int, IProgress<int>?> progress)
    {
        int context = 0;
        foreach (var (_, tokens) in tests) context = Math.Max(context, tokens);
        try
        {
            long loadStart = Stopwatch.GetTimestamp();
            using var model = LlamaCppModel.WithLlamaBenchSettings(path, threads, context);
            TimeSpan loadTime = Stopwatch.GetElapsedTime(loadStart);
            int firstToken = model.AddsBos ? model.Bos : -1;
            var results = new List<SpeedTestResult>(tests.Count);
            foreach (var (kind, tokens) in tests)
            {
                string name = "llama.cpp " + (kind == SpeedTestKind.Prompt ? "pp" : "tg") + tokens.ToString(System.Globalization.CultureInfo.InvariantCulture);
                results.Add(SpeedBenchmark.Run(model, kind, tokens, reps, firstToken, progress: progress(name, reps)));
            }
            return new LlamaCppBenchResult(
                loadTime,
                model.KvCacheTypeName,
                model.FlashAttentionName,
                model.MicroBatchSize,
                model.MemoryMapped,
                LlamaCppModel.NativeLibraryVariant,
                model.SpeedSettings,
                results);
        }
        catch (Exception e) when (e is InvalidDataException or InvalidOperationException or ArgumentException)
        {
            throw new LlamaCppRefusedException(e.Message, e);
        }
        catch (Exception e) when (e is TypeInitializationException or DllNotFoundException or EntryPointNotFoundException)
        {
            throw new LlamaCppRefusedException($"llama.cpp cannot run '{path}': its native library could not be loaded on this machine: {(e.InnerException ?? e).Message}", e);
        }
    }
}

/// <summary>llama.cpp could not load or run a model that smith itself ran.</summary>
internal sealed class LlamaCppRefusedException(string message, Exception inner) : Exception(message, inner);
