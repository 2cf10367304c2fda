using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Text;
using LLama.Native;
using ModelSmith.Evaluation;

namespace ModelSmith.LlamaCpp;

/// <summary>
/// llama.cpp (through LLamaSharp's low-level handles) as a test oracle and benchmark peer.
/// One instance = one loaded GGUF model + one context with a single sequence.
///
/// By default numerics are pinned so that comparisons with our engine are meaningful:
/// the KV cache is F32 for K and V (llama.cpp's default is F16, which rounds every cached K/V to
/// half precision and moves logits by ~1e-3), flash attention is off (its online softmax sums in a
/// different order), and n_batch = n_ubatch = context size so that a batch is never split into
/// micro-batches behind our back. The file is read into memory (no mmap) so that a file rewritten by
/// a test between two loads is never seen half-old. A benchmark loads through <see cref="WithLlamaBenchSettings"/>
/// instead, which gives llama-bench's settings (F16 KV cache, flash attention auto, n_ubatch 512, mmap).
///
/// The native library is loaded by this type's static constructor, i.e. on the first use of the type and
/// never before: code that must not load llama.cpp only has to not touch it.
///
/// Not thread-safe: one instance per thread.
/// </summary>
internal sealed unsafe class LlamaCppModel : ISpeedTestEngine, IDisposable
{
    /// <summary>Recent llama.cpp warning/error lines, quoted in exceptions when a call fails.</summary>
    private static readonly ConcurrentQueue<string> s_recentErrors = new();

    private readonly SafeLlamaModelHandle _model;
    private readonly SafeLLamaContextHandle _context;
    private readonly LLamaBatch _batch = new();
    private readonly string _path;

    static LlamaCppModel()
    {
        // The callback must be installed before the first native call so that the library selection
        // messages are swallowed too. llama_empty_call runs NativeApi's static constructor, which
        // registers LLamaSharp's DllImport resolver (the avx512/avx2/avx/noavx variant picker);
        // calling a P/Invoke elsewhere first (e.g. LLamaContextParams.Default()) bypasses it and
        // fails with DllNotFoundException.
        NativeLibraryConfig.All.WithLogCallback(OnNativeLog);
        NativeApi.llama_empty_call();
    }

    /// <summary>Loads <paramref name="path"/> with a context of <paramref name="contextSize"/> tokens
    /// (0 = the model's training context; llama.cpp rounds it up to a multiple of 256) computed on <paramref name="threads"/> threads.
    /// <paramref name="f32KvCache"/> = false keeps llama.cpp's default F16 KV cache;
    /// <paramref name="flashAttention"/> = null keeps llama.cpp's default "auto" (on for the CPU backend);
    /// <paramref name="microBatchSize"/> = 0 makes n_ubatch the whole context (one batch is one graph), else
    /// llama.cpp splits a batch into graphs of that many tokens; <paramref name="memoryMap"/> maps the file
    /// instead of reading it.
    /// The defaults are the exact settings; <see cref="WithLlamaBenchSettings"/> has llama-bench's.</summary>
    public LlamaCppModel(string path, int threads = 1, int contextSize = 0, bool f32KvCache = true, bool? flashAttention = false,
        int microBatchSize = 0, bool memoryMap = false)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(contextSize);
        ArgumentOutOfRangeException.ThrowIfNegative(microBatchSize);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"GGUF model '{path}' does not exist.", path);
        }
        _path = path;
        s_recentErrors.Clear();

        var modelParams = LLamaModelParams.Default();
        modelParams.n_gpu_layers = 0;
        modelParams.load_mode = memoryMap ? LLamaLoadMode.MemoryMap : LLamaLoadMode.None;
        modelParams.check_tensors = true;
        try
        {
            _model = SafeLlamaModelHandle.LoadFromFile(path, modelParams);
        }
        catch (Exception e) when (e is LLama.Exceptions.LoadWeightsFailedException or LLama.Exceptions.RuntimeError)
        {
            throw new InvalidDataException($"llama.cpp could not load '{path}': {RecentErrors()}", e);
        }

        // llama.cpp pads the context to 256 cells; the batch sizes must cover the padded size, or a full
        // batch trips GGML_ASSERT(n_tokens_all <= n_batch) and aborts the process.
        int nCtx = ((contextSize == 0 ? _model.ContextSize : contextSize) + 255) / 256 * 256;
        var contextParams = LLamaContextParams.Default();
        contextParams.n_ctx = (uint)nCtx;
        contextParams.n_batch = (uint)nCtx;
        int nUbatch = microBatchSize == 0 ? nCtx : Math.Min(microBatchSize, nCtx);
        contextParams.n_ubatch = (uint)nUbatch;
        contextParams.n_seq_max = 1;
        contextParams.n_threads = threads;
        contextParams.n_threads_batch = threads;
        contextParams.llama_flash_attn_type = flashAttention switch
        {
            true => LLamaFlashAttentionType.LLAMA_FLASH_ATTENTION_TYPE_ENABLED,
            false => LLamaFlashAttentionType.LLAMA_FLASH_ATTENTION_TYPE_DISABLED,
            null => LLamaFlashAttentionType.LLAMA_FLASH_ATTENTION_TYPE_AUTO,
        };
        contextParams.type_k = f32KvCache ? GGMLType.GGML_TYPE_F32 : GGMLType.GGML_TYPE_F16;
        contextParams.type_v = f32KvCache ? GGMLType.GGML_TYPE_F32 : GGMLType.GGML_TYPE_F16;
        contextParams.offload_kqv = false;
        contextParams.op_offload = false;
        contextParams.no_perf = true;
        try
        {
            _context = _model.CreateContext(contextParams);
        }
        catch (Exception e) when (e is LLama.Exceptions.RuntimeError)
        {
            _model.Dispose();
            throw new InvalidOperationException($"llama.cpp could not create a context for '{path}': {RecentErrors()}", e);
        }
        ContextSize = (int)_context.ContextSize;
        if (_context.BatchSize < ContextSize || _context.UBatchSize < Math.Min(nUbatch, ContextSize))
        {
            int batch = (int)_context.BatchSize, ubatch = (int)_context.UBatchSize;
            _context.Dispose();
            _model.Dispose();
            throw new InvalidOperationException($"llama.cpp made a context of {ContextSize} cells for '{path}' but a batch of only {batch} (micro-batch {ubatch}); batches must cover the whole context.");
        }
        Threads = threads;
        KvCacheType = contextParams.type_k;
        FlashAttention = flashAttention;
        MicroBatchSize = (int)_context.UBatchSize;
        MemoryMapped = memoryMap;
    }

    /// <summary>llama-bench's default n_ubatch: a longer batch is computed as graphs of this many tokens.</summary>
    private const int LlamaBenchMicroBatchSize = 512;

    /// <summary>Loads <paramref name="path"/> for a speed test with llama-bench's context settings, so that its tokens/s
    /// are what llama-bench would print: F16 KV cache, flash attention auto, n_ubatch 512, the file memory-mapped.
    /// <paramref name="f32KvCache"/>, <paramref name="flashAttention"/> and <paramref name="memoryMap"/> change one of them
    /// as llama-bench's -ctk/-ctv f32, -fa and -mmap do; <paramref name="contextSize"/> is the longest test's token count.</summary>
    public static LlamaCppModel WithLlamaBenchSettings(string path, int threads, int contextSize, bool f32KvCache = false,
        bool? flashAttention = null, bool memoryMap = true)
        => new(path, threads, contextSize, f32KvCache, flashAttention, LlamaBenchMicroBatchSize, memoryMap);

    /// <summary>Which native build LLamaSharp picked (e.g. the avx512 libllama.so).</summary>
    public static string NativeLibraryDescription
    {
        get
        {
            var library = NativeApi.GetLoadedNativeLibrary(NativeLibraryName.LLama);
            return library?.Metadata?.ToString() ?? "(not loaded)";
        }
    }

    /// <summary>The loaded native build in short, as LLamaSharp's runtimes folders name it: "libllama avx512",
    /// "libllama avx2", "libllama noavx" (plus " cuda" / " vulkan" for those backends).</summary>
    public static string NativeLibraryVariant
    {
        get
        {
            var metadata = NativeApi.GetLoadedNativeLibrary(NativeLibraryName.LLama)?.Metadata;
            if (metadata == null) return "(not loaded)";
            string avx = metadata.AvxLevel == AvxLevel.None ? "noavx" : metadata.AvxLevel.ToString().ToLowerInvariant();
            return $"libllama {avx}{(metadata.UseCuda ? " cuda" : "")}{(metadata.UseVulkan ? " vulkan" : "")}";
        }
    }

    /// <summary>llama_print_system_info: the CPU features the loaded ggml build uses.</summary>
    public static string SystemInfo => Marshal.PtrToStringUTF8(NativeApi.llama_print_system_info()) ?? "";

    /// <summary>Positions the KV cache holds (the requested size rounded up to a multiple of 256).</summary>
    public int ContextSize { get; }

    public int Threads { get; }

    /// <summary>Element type of the cached K and V rows.</summary>
    public GGMLType KvCacheType { get; }

    /// <summary>Flash attention as requested: on, off, or null = llama.cpp's "auto".</summary>
    public bool? FlashAttention { get; }

    /// <summary>n_ubatch: the most tokens one graph computes; a longer batch is split.</summary>
    public int MicroBatchSize { get; }

    /// <summary>Whether the file is memory-mapped rather than read.</summary>
    public bool MemoryMapped { get; }

    /// <summary>"F32" or "F16", as llama-bench prints the KV cache type.</summary>
    public string KvCacheTypeName => KvCacheType switch
    {
        GGMLType.GGML_TYPE_F32 => "F32",
        GGMLType.GGML_TYPE_F16 => "F16",
        _ => KvCacheType.ToString(),
    };

    /// <summary>"on", "off" or "auto".</summary>
    public string FlashAttentionName => FlashAttention is { } fa ? (fa ? "on" : "off") : "auto";

    /// <summary>The settings that matter for speed, for a line under a table, e.g.
    /// "KV F16, flash attn auto, n_ubatch 512, mmap, libllama avx512".</summary>
    public string SpeedSettings =>
        $"KV {KvCacheTypeName}, flash attn {FlashAttentionName}, n_ubatch {MicroBatchSize}, " +
        $"{(MemoryMapped ? "mmap" : "no mmap")}, {NativeLibraryVariant}";

    /// <summary>Bytes the KV cache holds per position: K and V rows of every layer.</summary>
    public long KvBytesPerPosition =>
        2L * LayerCount * KvHeadCount * (EmbeddingSize / HeadCount) * (KvCacheType == GGMLType.GGML_TYPE_F32 ? 4 : 2);

    /// <summary>Tokens currently in the KV cache; the next appended token goes to this position.</summary>
    public int Position { get; private set; }

    public int VocabSize => _model.Vocab.Count;

    /// <summary>BOS id, or -1 if the vocabulary has none.</summary>
    public int Bos => _model.Vocab.BOS is { } t ? (int)t : -1;

    /// <summary>EOS id, or -1 if the vocabulary has none.</summary>
    public int Eos => _model.Vocab.EOS is { } t ? (int)t : -1;

    /// <summary>Whether tokenizing with addSpecial = true prepends BOS.</summary>
    public bool AddsBos => _model.Vocab.ShouldAddBOS;

    public int TrainContextSize => _model.ContextSize;

    public int EmbeddingSize => _model.EmbeddingSize;

    public int LayerCount => _model.LayerCount;

    public int HeadCount => _model.HeadCount;

    public int KvHeadCount => _model.KVHeadCount;

    public ulong ParameterCount => _model.ParameterCount;

    /// <summary>Bytes of all weight tensors.</summary>
    public ulong SizeInBytes => _model.SizeInBytes;

    /// <summary>llama.cpp's one-line description, e.g. "llama ?B all F32".</summary>
    public string Description => _model.Description;

    public LLamaFtype FileType => _model.FileType;

    /// <summary>A GGUF metadata value as llama.cpp renders it to a string, or null if the key is absent.</summary>
    public string? Metadata(string key)
    {
        // Called through our own binding with a buffer of our own: LLamaSharp's MetadataValueByKey hands
        // out a pooled buffer that tests running in parallel can overwrite before it is read.
        byte[] keyBytes = Encoding.UTF8.GetBytes(key + "\0");
        var buffer = new byte[4096];
        fixed (byte* k = keyBytes)
        fixed (byte* b = buffer)
        {
            int n = Native.ModelMetaValueString(_model.DangerousGetHandle(), k, b, buffer.Length);
            if (n < 0) return null;
            if (n >= buffer.Length)
            {
                buffer = new byte[n + 1];
                fixed (byte* b2 = buffer) n = Native.ModelMetaValueString(_model.DangerousGetHandle(), k, b2, buffer.Length);
            }
            return Encoding.UTF8.GetString(buffer, 0, n);
        }
    }

    /// <summary>Every GGUF metadata key/value pair as llama.cpp renders it (arrays are abbreviated by llama.cpp).</summary>
    public Dictionary<string, string> AllMetadata()
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        var buffer = new byte[1 << 16];
        fixed (byte* b = buffer)
        {
            for (int i = 0; i < _model.MetadataCount; i++)
            {
                int n = Native.ModelMetaKeyByIndex(_model.DangerousGetHandle(), i, b, buffer.Length);
                if (n < 0) continue;
                string key = Encoding.UTF8.GetString(buffer, 0, Math.Min(n, buffer.Length - 1));
                n = Native.ModelMetaValueByIndex(_model.DangerousGetHandle(), i, b, buffer.Length);
                result[key] = n < 0 ? "" : Encoding.UTF8.GetString(buffer, 0, Math.Min(n, buffer.Length - 1));
            }
        }
        return result;
    }

    /// <summary>llama_tokenize. <paramref name="addSpecial"/>: add BOS/EOS as the vocabulary asks;
    /// <paramref name="parseSpecial"/>: recognise control-token text such as "&lt;s&gt;" in the input.</summary>
    public int[] Tokenize(string text, bool addSpecial, bool parseSpecial)
    {
        ArgumentNullException.ThrowIfNull(text);
        var tokens = _model.Tokenize(text, addSpecial, parseSpecial, Encoding.UTF8);
        var ids = new int[tokens.Length];
        for (int i = 0; i < ids.Length; i++)
        {
            ids[i] = (int)tokens[i];
        }
        return ids;
    }

    /// <summary>llama_token_to_piece: the bytes of one token (a byte token such as &lt;0xE2&gt; is one byte
    /// of a UTF-8 sequence). <paramref name="special"/>: render control tokens as their text instead of nothing.</summary>
    public byte[] TokenToBytes(int id, bool special = false)
    {
        CheckToken(id);
        Span<byte> buffer = stackalloc byte[256];
        uint n = _model.TokenToSpan(id, buffer, 0, special);
        if (n > buffer.Length)
        {
            var large = new byte[n];
            n = _model.TokenToSpan(id, large, 0, special);
            return large.AsSpan(0, (int)n).ToArray();
        }
        return buffer[..(int)n].ToArray();
    }

    /// <summary>One token's piece as text (invalid UTF-8 of a lone byte token becomes U+FFFD).</summary>
    public string TokenToPiece(int id, bool special = false) => Encoding.UTF8.GetString(TokenToBytes(id, special));

    /// <summary>llama_detokenize: the text of a token sequence, including llama.cpp's handling of the
    /// SentencePiece leading space. <paramref name="removeSpecial"/>: drop a leading BOS / trailing EOS
    /// when the vocabulary adds them; <paramref name="unparseSpecial"/>: render control tokens as text.</summary>
    public string Detokenize(ReadOnlySpan<int> tokens, bool removeSpecial = false, bool unparseSpecial = false)
    {
        for (int i = 0; i < tokens.Length; i++)
        {
            CheckToken(tokens[i]);
        }
        nint vocab = Native.ModelGetVocab(_model.DangerousGetHandle());
        int capacity = 16 * tokens.Length + 16;
        while (true)
        {
            var buffer = new byte[capacity];
            int n;
            fixed (int* t = tokens)
            fixed (byte* b = buffer)
            {
                n = Native.Detokenize(vocab, t, tokens.Length, b, capacity, removeSpecial ? (byte)1 : (byte)0, unparseSpecial ? (byte)1 : (byte)0);
            }
            if (n >= 0)
            {
                return Encoding.UTF8.GetString(buffer, 0, n);
            }
            capacity = -n;
        }
    }

    /// <summary>
    /// Loads the GGUF LoRA adapter at <paramref name="path"/> (llama_adapter_lora_init) and makes it the context's
    /// only adapter with multiplier <paramref name="scale"/>: llama.cpp then computes W·x + scale·(α/r)·B·(A·x) for
    /// every adapted weight at run time, without merging. The adapter lives as long as the model.
    /// </summary>
    public void SetLoraAdapter(string path, float scale = 1f)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"LoRA adapter '{path}' does not exist.", path);
        }
        s_recentErrors.Clear();
        LoraAdapter adapter;
        try
        {
            adapter = _model.LoadLoraFromFile(path);
        }
        catch (InvalidOperationException e)
        {
            throw new InvalidDataException($"llama.cpp could not load the LoRA adapter '{path}' for '{_path}': {RecentErrors()}", e);
        }
        _context.SetLoraAdapters([(adapter, scale)]);
    }

    /// <summary>Empties the KV cache; the next token goes to position 0.</summary>
    public void Reset()
    {
        _context.MemoryClear(true);
        Position = 0;
    }

    /// <summary>Decodes <paramref name="tokens"/> in one llama_decode call at positions
    /// Position.., requesting logits for the last token only (or for every token when
    /// <paramref name="allLogits"/>). Read them with <see cref="Logits"/>.</summary>
    public void Append(ReadOnlySpan<int> tokens, bool allLogits = false)
    {
        if (tokens.Length == 0)
        {
            throw new ArgumentException("Append needs at least one token.", nameof(tokens));
        }
        if (Position + tokens.Length > ContextSize)
        {
            throw new ArgumentException(
                $"{Position} cached + {tokens.Length} new tokens exceed the context of {ContextSize} tokens; create the model with a larger contextSize.",
                nameof(tokens));
        }
        _batch.Clear();
        for (int i = 0; i < tokens.Length; i++)
        {
            CheckToken(tokens[i]);
            _batch.Add(tokens[i], Position + i, LLamaSeqId.Zero, allLogits || i == tokens.Length - 1);
        }
        var result = _context.Decode(_batch);
        if (result != DecodeResult.Ok)
        {
            throw new InvalidOperationException($"llama_decode of {tokens.Length} tokens at position {Position} in '{_path}' returned {result}: {RecentErrors()}");
        }
        Position += tokens.Length;
    }

    /// <summary>The n_vocab logits of batch entry <paramref name="index"/> of the last <see cref="Append"/>
    /// (-1 = the last token). Valid until the next Append or Reset.</summary>
    public ReadOnlySpan<float> Logits(int index = -1) => _context.GetLogitsIth(index);

    void ISpeedTestEngine.ClearCache() => Reset();

    void ISpeedTestEngine.Decode(ReadOnlySpan<int> tokens) => Append(tokens);

    public void Dispose()
    {
        _context.Dispose();
        _model.Dispose();
    }

    private void CheckToken(int id)
    {
        if ((uint)id >= (uint)VocabSize)
        {
            throw new ArgumentOutOfRangeException(nameof(id), id, $"Token id {id} is outside the vocabulary of {VocabSize} tokens of '{_path}'.");
        }
    }

    private static void OnNativeLog(LLamaLogLevel level, string message)
    {
        if (level is LLamaLogLevel.Warning or LLamaLogLevel.Error)
        {
            s_recentErrors.Enqueue(message.TrimEnd());
            while (s_recentErrors.Count > 16 && s_recentErrors.TryDequeue(out _))
            {
            }
        }
    }

    /// <summary>Forgets the logged lines, so that the next <see cref="RecentErrors"/> quotes only what a following call logs.</summary>
    internal static void ClearRecentErrors() => s_recentErrors.Clear();

    /// <summary>The last warning/error lines llama.cpp logged, joined for an exception message.</summary>
    internal static string RecentErrors()
    {
        var lines = s_recentErrors.ToArray();
        return lines.Length == 0 ? "(llama.cpp logged no warning or error)" : string.Join(" | ", lines);
    }

    /// <summary>Entry points LLamaSharp keeps internal, bound to the libllama.so it already loaded
    /// (dlopen by its soname returns that same image).</summary>
    private static class Native
    {
        private static readonly nint s_library = NativeLibrary.Load(
            OperatingSystem.IsWindows() ? "llama.dll" : OperatingSystem.IsMacOS() ? "libllama.dylib" : "libllama.so");

        private static readonly delegate* unmanaged[Cdecl]<nint, nint> s_getVocab =
            (delegate* unmanaged[Cdecl]<nint, nint>)NativeLibrary.GetExport(s_library, "llama_model_get_vocab");

        // int32_t llama_detokenize(const llama_vocab*, const llama_token* tokens, int32_t n_tokens,
        //                          char* text, int32_t text_len_max, bool remove_special, bool unparse_special)
        private static readonly delegate* unmanaged[Cdecl]<nint, int*, int, byte*, int, byte, byte, int> s_detokenize =
            (delegate* unmanaged[Cdecl]<nint, int*, int, byte*, int, byte, byte, int>)NativeLibrary.GetExport(s_library, "llama_detokenize");

        // int32_t llama_model_meta_val_str(const llama_model*, const char* key, char* buf, size_t buf_size)
        private static readonly delegate* unmanaged[Cdecl]<nint, byte*, byte*, nuint, int> s_metaValueString =
            (delegate* unmanaged[Cdecl]<nint, byte*, byte*, nuint, int>)NativeLibrary.GetExport(s_library, "llama_model_meta_val_str");

        // int32_t llama_model_meta_key_by_index / llama_model_meta_val_str_by_index(const llama_model*, int32_t i, char* buf, size_t buf_size)
        private static readonly delegate* unmanaged[Cdecl]<nint, int, byte*, nuint, int> s_metaKeyByIndex =
            (delegate* unmanaged[Cdecl]<nint, int, byte*, nuint, int>)NativeLibrary.GetExport(s_library, "llama_model_meta_key_by_index");

        private static readonly delegate* unmanaged[Cdecl]<nint, int, byte*, nuint, int> s_metaValueByIndex =
            (delegate* unmanaged[Cdecl]<nint, int, byte*, nuint, int>)NativeLibrary.GetExport(s_library, "llama_model_meta_val_str_by_index");

        public static int ModelMetaKeyByIndex(nint model, int index, byte* buffer, int capacity) => s_metaKeyByIndex(model, index, buffer, (nuint)capacity);

        public static int ModelMetaValueByIndex(nint model, int index, byte* buffer, int capacity) => s_metaValueByIndex(model, index, buffer, (nuint)capacity);

        public static nint ModelGetVocab(nint model) => s_getVocab(model);

        /// <summary>The value's length in bytes (written NUL-terminated, truncated to the buffer), or -1 when the key is absent.</summary>
        public static int ModelMetaValueString(nint model, byte* key, byte* buffer, int capacity) => s_metaValueString(model, key, buffer, (nuint)capacity);

        /// <summary>Returns the byte count, or minus the needed capacity when <paramref name="capacity"/> is too small.</summary>
        public static int Detokenize(nint vocab, int* tokens, int count, byte* text, int capacity, byte removeSpecial, byte unparseSpecial)
            => s_detokenize(vocab, tokens, count, text, capacity, removeSpecial, unparseSpecial);
    }
}
