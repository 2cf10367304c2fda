using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using LLama.Native;
using ModelSmith.Formats;

namespace ModelSmith.Interop.Tests.Quantization;

/// <summary>
/// llama.cpp as the oracle for importance matrices. <see cref="Collect"/> runs tokens through llama.cpp with
/// an eval callback that does what llama-imatrix's collect_imatrix does (for every MUL_MAT over 16+ F32 rows
/// whose weight is a "blk." tensor, or output.weight on request: Σx, Σx² per column and the row count), since
/// the imatrix tool itself is not part of LLamaSharp. <see cref="ReadGguf"/> reads a file with ggml's own GGUF
/// parser (gguf_init_from_file), the one llama-quantize and llama-imatrix use.
/// </summary>
internal static unsafe class ImatrixNative
{
    private static readonly nint s_ggml = LoadGgml();

    // ggml_tensor field offsets (ggml.h: type, buffer, ne[4], nb[4], op, op_params[16], flags, src[10], ...,
    // name[64]); the name offset is checked against ggml_get_name at run time.
    private const int NeOffset = 16;
    private const int NbOffset = 48;
    private const int SrcOffset = 152;
    private const int DataOffset = 248;
    private const int NameOffset = 256;
    private const int TypeOffset = 0;

    /// <summary>Per-weight statistics as llama-imatrix holds them before saving.</summary>
    public sealed class Stats(int columns)
    {
        public float[] Values { get; } = new float[columns];

        public float[] Activations { get; } = new float[columns];

        public long Count { get; set; }
    }

    /// <summary>
    /// Runs <paramref name="chunks"/> chunks of <paramref name="nCtx"/> tokens of <paramref name="tokens"/>
    /// through llama.cpp (BOS first in each chunk, cache cleared between chunks, logits for every token as
    /// llama-imatrix requests them) and returns what collect_imatrix would have accumulated.
    /// </summary>
    public static Dictionary<string, Stats> Collect(string modelPath, IReadOnlyList<int> tokens, int nCtx, int chunks, int bos, bool processOutput, int threads)
    {
        _ = LlamaCppModel.NativeLibraryDescription;
        var modelParams = LLamaModelParams.Default();
        modelParams.n_gpu_layers = 0;
        modelParams.load_mode = LLamaLoadMode.None;
        using SafeLlamaModelHandle model = SafeLlamaModelHandle.LoadFromFile(modelPath, modelParams);
        var collector = new Collector(processOutput);
        GCHandle handle = GCHandle.Alloc(collector);
        try
        {
            int padded = (nCtx + 255) / 256 * 256;
            var contextParams = LLamaContextParams.Default();
            contextParams.n_ctx = (uint)padded;
            contextParams.n_batch = (uint)padded;
            contextParams.n_ubatch = (uint)padded;
            contextParams.n_seq_max = 1;
            contextParams.n_threads = threads;
            contextParams.n_threads_batch = threads;
            contextParams.llama_flash_attn_type = LLamaFlashAttentionType.LLAMA_FLASH_ATTENTION_TYPE_DISABLED;
            contextParams.type_k = GGMLType.GGML_TYPE_F32;
            contextParams.type_v = GGMLType.GGML_TYPE_F32;
            contextParams.offload_kqv = false;
            contextParams.op_offload = false;
            contextParams.no_perf = true;
            contextParams.cb_eval = (nint)(delegate* unmanaged[Cdecl]<nint, byte, nint, byte>)&Callback;
            contextParams.cb_eval_user_data = GCHandle.ToIntPtr(handle);
            using SafeLLamaContextHandle context = SafeLLamaContextHandle.Create(model, contextParams);
            var batch = new LLamaBatch();
            for (int i = 0; i < chunks; i++)
            {
                context.MemoryClear(true);
                batch.Clear();
                for (int k = 0; k < nCtx; k++)
                {
                    int token = k == 0 ? bos : tokens[i * nCtx + k];
                    batch.Add(token, k, LLamaSeqId.Zero, true);
                }
                DecodeResult result = context.Decode(batch);
                if (result != DecodeResult.Ok)
                {
                    throw new InvalidOperationException($"llama_decode of chunk {i} returned {result}.");
                }
                if (collector.Error is { } error)
                {
                    throw new InvalidOperationException(error);
                }
            }
        }
        finally
        {
            handle.Free();
        }
        return collector.Entries;
    }

    /// <summary>A GGUF file as ggml's gguf reader sees it: tensors (name → type and F32 data) and metadata.</summary>
    public sealed record GgufContents(Dictionary<string, (GgmlType Type, float[] Data, long[] Shape)> Tensors, Dictionary<string, object> Metadata);

    /// <summary>Reads <paramref name="path"/> with gguf_init_from_file (data loaded); F32 tensors' values are returned.</summary>
    public static GgufContents ReadGguf(string path)
    {
        nint ctx = 0;
        byte[] p = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        var init = new GgufInitParams { NoAlloc = 0, Ctx = (nint)(&ctx) };
        nint gguf;
        fixed (byte* pp = p)
        {
            gguf = ((delegate* unmanaged[Cdecl]<byte*, GgufInitParams, nint>)Export("gguf_init_from_file"))(pp, init);
        }
        if (gguf == 0)
        {
            throw new InvalidDataException($"ggml's gguf_init_from_file could not read '{path}'.");
        }
        try
        {
            var metadata = new Dictionary<string, object>(StringComparer.Ordinal);
            long kvs = ((delegate* unmanaged[Cdecl]<nint, long>)Export("gguf_get_n_kv"))(gguf);
            for (long i = 0; i < kvs; i++)
            {
                string key = Utf8(((delegate* unmanaged[Cdecl]<nint, long, nint>)Export("gguf_get_key"))(gguf, i));
                int type = ((delegate* unmanaged[Cdecl]<nint, long, int>)Export("gguf_get_kv_type"))(gguf, i);
                metadata[key] = type switch
                {
                    4 => ((delegate* unmanaged[Cdecl]<nint, long, uint>)Export("gguf_get_val_u32"))(gguf, i),
                    8 => Utf8(((delegate* unmanaged[Cdecl]<nint, long, nint>)Export("gguf_get_val_str"))(gguf, i)),
                    9 => ReadStringArray(gguf, i),
                    _ => $"(GGUF type {type})",
                };
            }
            var tensors = new Dictionary<string, (GgmlType, float[], long[])>(StringComparer.Ordinal);
            long n = ((delegate* unmanaged[Cdecl]<nint, long>)Export("gguf_get_n_tensors"))(gguf);
            for (long i = 0; i < n; i++)
            {
                string name = Utf8(((delegate* unmanaged[Cdecl]<nint, long, nint>)Export("gguf_get_tensor_name"))(gguf, i));
                var type = (GgmlType)((delegate* unmanaged[Cdecl]<nint, long, int>)Export("gguf_get_tensor_type"))(gguf, i);
                byte[] nameBytes = System.Text.Encoding.UTF8.GetBytes(name + "\0");
                nint tensor;
                fixed (byte* pn = nameBytes)
                {
                    tensor = ((delegate* unmanaged[Cdecl]<nint, byte*, nint>)Export("ggml_get_tensor"))(ctx, pn);
                }
                long[] shape = new long[4];
                long elements = 1;
                for (int d = 0; d < 4; d++)
                {
                    shape[d] = *(long*)(tensor + NeOffset + 8 * d);
                    elements *= shape[d];
                }
                float[] data = type == GgmlType.F32 ? new ReadOnlySpan<float>((void*)*(nint*)(tensor + DataOffset), (int)elements).ToArray() : [];
                tensors[name] = (type, data, shape);
            }
            return new GgufContents(tensors, metadata);
        }
        finally
        {
            ((delegate* unmanaged[Cdecl]<nint, void>)Export("gguf_free"))(gguf);
            if (ctx != 0)
            {
                ((delegate* unmanaged[Cdecl]<nint, void>)Export("ggml_free"))(ctx);
            }
        }
    }

    private static string[] ReadStringArray(nint gguf, long key)
    {
        long n = (long)((delegate* unmanaged[Cdecl]<nint, long, nuint>)Export("gguf_get_arr_n"))(gguf, key);
        var values = new string[n];
        for (long i = 0; i < n; i++)
        {
            values[i] = Utf8(((delegate* unmanaged[Cdecl]<nint, long, nuint, nint>)Export("gguf_get_arr_str"))(gguf, key, (nuint)i));
        }
        return values;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static byte Callback(nint t, byte ask, nint user)
    {
        var collector = (Collector)GCHandle.FromIntPtr(user).Target!;
        try
        {
            return collector.Observe(t, ask != 0) ? (byte)1 : (byte)0;
        }
        catch (Exception e)
        {
            collector.Error ??= e.ToString();
            return 0;
        }
    }

    /// <summary>collect_imatrix for dense MUL_MAT nodes.</summary>
    private sealed class Collector(bool processOutput)
    {
        public Dictionary<string, Stats> Entries { get; } = new(StringComparer.Ordinal);

        public string? Error { get; set; }

        public bool Observe(nint t, bool ask)
        {
            string op = Utf8(((delegate* unmanaged[Cdecl]<nint, nint>)Export("ggml_op_desc"))(t));
            if (op == "MUL_MAT_ID")
            {
                throw new NotSupportedException("MUL_MAT_ID (mixtures of experts) is not collected here.");
            }
            if (op != "MUL_MAT")
            {
                return false;
            }
            nint nameAddress = ((delegate* unmanaged[Cdecl]<nint, nint>)Export("ggml_get_name"))(t);
            if (nameAddress - t != NameOffset)
            {
                throw new InvalidOperationException($"ggml_tensor.name is at offset {nameAddress - t}, not {NameOffset}; the ggml_tensor layout changed.");
            }
            nint src0 = *(nint*)(t + SrcOffset);
            nint src1 = *(nint*)(t + SrcOffset + 8);
            string weight = FilterName(Utf8(src0 + NameOffset));
            long cols = *(long*)(src1 + NeOffset);
            long rows = *(long*)(src1 + NeOffset + 8);
            int src1Type = *(int*)(src1 + TypeOffset);
            if (ask)
            {
                return rows >= 16 && src1Type == (int)GgmlType.F32
                    && (weight.StartsWith("blk.", StringComparison.Ordinal) || (processOutput && weight == "output.weight"));
            }
            if (*(long*)(src0 + NeOffset + 16) != 1 || *(long*)(src0 + NeOffset + 24) != 1)
            {
                throw new NotSupportedException($"{weight} is not a 2-D weight.");
            }
            if (!Entries.TryGetValue(weight, out Stats? stats))
            {
                stats = new Stats((int)cols);
                Entries[weight] = stats;
            }
            long nb1 = *(long*)(src1 + NbOffset + 8);
            long nb2 = *(long*)(src1 + NbOffset + 16);
            long nb3 = *(long*)(src1 + NbOffset + 24);
            long ne2 = *(long*)(src1 + NeOffset + 16);
            long ne3 = *(long*)(src1 + NeOffset + 24);
            byte* data = (byte*)*(nint*)(src1 + DataOffset);
            for (long i3 = 0; i3 < ne3; i3++)
            {
                for (long i2 = 0; i2 < ne2; i2++)
                {
                    for (long r = 0; r < rows; r++)
                    {
                        float* x = (float*)(data + r * nb1 + i2 * nb2 + i3 * nb3);
                        for (long j = 0; j < cols; j++)
                        {
                            stats.Activations[j] += x[j];
                            stats.Values[j] += x[j] * x[j];
                        }
                    }
                }
            }
            stats.Count += rows * ne2 * ne3;
            return true;
        }
    }

    /// <summary>filter_tensor_name: "CUDA0#blk.0.attn_k.weight#0" → "blk.0.attn_k.weight".</summary>
    private static string FilterName(string name)
    {
        int p = name.IndexOf('#', StringComparison.Ordinal);
        if (p < 0)
        {
            return name;
        }
        int q = name.IndexOf('#', p + 1);
        return q < 0 ? name[(p + 1)..] : name[(p + 1)..q];
    }

    private static string Utf8(nint p) => Marshal.PtrToStringUTF8(p) ?? "";

    private static nint Export(string name) =>
        NativeLibrary.TryGetExport(s_ggml, name, out nint address)
            ? address
            : throw new EntryPointNotFoundException($"libggml-base does not export {name}.");

    private static nint LoadGgml()
    {
        _ = LlamaCppModel.NativeLibraryDescription;
        return NativeLibrary.Load(OperatingSystem.IsWindows() ? "ggml-base.dll" : OperatingSystem.IsMacOS() ? "libggml-base.dylib" : "libggml-base.so");
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct GgufInitParams
    {
        public byte NoAlloc;
        public nint Ctx;
    }
}
