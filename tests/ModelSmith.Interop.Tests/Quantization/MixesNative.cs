using System.Runtime.InteropServices;
using System.Text;
using LLama.Native;
using ModelSmith.Formats;

namespace ModelSmith.Interop.Tests.Quantization;

/// <summary>
/// llama.cpp's own type choice, called in-process: llama_quant_model_from_metadata builds a mock model from
/// hyperparameters, llama_quant_compute_types runs llama_tensor_get_type (mix rules, overrides, fallbacks)
/// over ggml tensors we create with ggml_new_tensor. No weights are read, so any model shape is cheap.
/// Also llama_model_quantize with an importance matrix, which LLamaSharp exposes only as a raw pointer.
/// The llama-ext.h entry points are C++ functions, bound by their mangled names.
/// </summary>
internal static unsafe class MixesNative
{
    private static readonly nint s_llama = LoadLlama();
    private static readonly nint s_ggml = NativeLibrary.Load(OperatingSystem.IsWindows() ? "ggml-base.dll" : OperatingSystem.IsMacOS() ? "libggml-base.dylib" : "libggml-base.so");

    /// <summary>One tensor for <see cref="ComputeTypes"/>: name and shape (innermost first).</summary>
    public readonly record struct TensorSpec(string Name, long[] Shape);

    /// <summary>Hyperparameters of the mock model (llama_quant_model_desc).</summary>
    public readonly record struct ModelSpec(string Architecture, int Embedding, int FeedForward, int Layers, int Heads, int KvHeads, int Experts);

    /// <summary>
    /// llama.cpp's type for each of <paramref name="tensors"/> under <paramref name="ftype"/>, with
    /// llama-quantize's default parameters plus <paramref name="overrides"/> (regex, type) as --tensor-type.
    /// The tensors must be shapes llama.cpp accepts (a C++ exception would end the test process).
    /// </summary>
    public static GgmlType[] ComputeTypes(ModelSpec model, IReadOnlyList<TensorSpec> tensors, LLamaFtype ftype, IReadOnlyList<(string Pattern, GgmlType Type)>? overrides = null)
    {
        var desc = new QuantModelDesc
        {
            N_embd = (uint)model.Embedding,
            N_ff = (uint)model.FeedForward,
            N_layer = (uint)model.Layers,
            N_head = (uint)model.Heads,
            N_head_kv = (uint)model.KvHeads,
            N_expert = (uint)model.Experts,
            N_embd_head_k = (uint)(model.Embedding / model.Heads),
            N_embd_head_v = (uint)(model.Embedding / model.Heads),
        };
        var allocations = new List<nint>();
        nint Utf8(string s)
        {
            nint p = Marshal.StringToCoTaskMemUTF8(s);
            allocations.Add(p);
            return p;
        }
        desc.Architecture = Utf8(model.Architecture);
        nint ctx = 0;
        nint mock = 0;
        nint state = 0;
        try
        {
            mock = ((delegate* unmanaged[Cdecl]<QuantModelDesc*, nint>)Export(s_llama, "_Z31llama_quant_model_from_metadataPK22llama_quant_model_desc"))(&desc);
            if (mock == 0)
            {
                throw new InvalidOperationException("llama_quant_model_from_metadata returned null.");
            }
            var parameters = LLamaModelQuantizeParams.Default();
            parameters.ftype = ftype;
            var overrideArray = new TensorOverride[(overrides?.Count ?? 0) + 1];
            for (int i = 0; i < overrideArray.Length - 1; i++)
            {
                overrideArray[i] = new TensorOverride { Pattern = Utf8(overrides![i].Pattern), Type = (int)overrides[i].Type };
            }
            overrideArray[^1] = new TensorOverride { Pattern = 0, Type = 40 };
            fixed (TensorOverride* po = overrideArray)
            {
                if (overrides is { Count: > 0 })
                {
                    parameters.tensor_types = (nint)po;
                }
                state = ((delegate* unmanaged[Cdecl]<nint, LLamaModelQuantizeParams*, nint>)Export(s_llama, "_Z16llama_quant_initPK11llama_modelPK27llama_model_quantize_params"))(mock, &parameters);

                var init = new GgmlInitParams { MemSize = (nuint)(tensors.Count * 1024 + 4096), MemBuffer = 0, NoAlloc = 1 };
                ctx = ((delegate* unmanaged[Cdecl]<GgmlInitParams, nint>)Export(s_ggml, "ggml_init"))(init);
                var newTensor = (delegate* unmanaged[Cdecl]<nint, int, int, long*, nint>)Export(s_ggml, "ggml_new_tensor");
                var setName = (delegate* unmanaged[Cdecl]<nint, byte*, nint>)Export(s_ggml, "ggml_set_name");
                var handles = new nint[tensors.Count];
                for (int i = 0; i < tensors.Count; i++)
                {
                    long[] shape = tensors[i].Shape;
                    fixed (long* ne = shape)
                    {
                        handles[i] = newTensor(ctx, (int)GgmlType.F32, shape.Length, ne);
                    }
                    byte[] name = Encoding.UTF8.GetBytes(tensors[i].Name + "\0");
                    fixed (byte* pn = name)
                    {
                        setName(handles[i], pn);
                    }
                }
                var types = new int[tensors.Count];
                fixed (nint* ph = handles)
                fixed (int* pt = types)
                {
                    ((delegate* unmanaged[Cdecl]<nint, int, nint*, int*, nuint, void>)Export(s_llama, "_Z25llama_quant_compute_typesP19quantize_state_impl11llama_ftypePP11ggml_tensorP9ggml_typem"))(
                        state, (int)ftype, ph, pt, (nuint)tensors.Count);
                }
                var result = new GgmlType[types.Length];
                for (int i = 0; i < types.Length; i++)
                {
                    result[i] = (GgmlType)types[i];
                }
                return result;
            }
        }
        finally
        {
            if (state != 0)
            {
                ((delegate* unmanaged[Cdecl]<nint, void>)Export(s_llama, "_Z16llama_quant_freeP19quantize_state_impl"))(state);
            }
            if (ctx != 0)
            {
                ((delegate* unmanaged[Cdecl]<nint, void>)Export(s_ggml, "ggml_free"))(ctx);
            }
            if (mock != 0)
            {
                ((delegate* unmanaged[Cdecl]<nint, void>)Export(s_llama, "llama_model_free"))(mock);
            }
            foreach (nint p in allocations)
            {
                Marshal.FreeCoTaskMem(p);
            }
        }
    }

    /// <summary>
    /// llama_model_quantize with llama-quantize's defaults and an importance matrix: <paramref name="importance"/>
    /// maps tensor names to their per-column values (what llama-quantize passes after reading an imatrix file).
    /// </summary>
    public static void QuantizeWithImportance(string input, string output, LLamaFtype ftype, int threads, IReadOnlyDictionary<string, float[]> importance)
    {
        var allocations = new List<GCHandle>();
        var names = new List<nint>();
        try
        {
            var entries = new ImatrixData[importance.Count + 1];
            int i = 0;
            foreach ((string name, float[] values) in importance)
            {
                nint pname = Marshal.StringToCoTaskMemUTF8(name);
                names.Add(pname);
                GCHandle h = GCHandle.Alloc(values, GCHandleType.Pinned);
                allocations.Add(h);
                entries[i++] = new ImatrixData { Name = pname, Data = h.AddrOfPinnedObject(), Size = (nuint)values.Length };
            }
            entries[^1] = default;
            var parameters = LLamaModelQuantizeParams.Default();
            parameters.ftype = ftype;
            parameters.nthread = threads;
            fixed (ImatrixData* pe = entries)
            {
                parameters.imatrix = (nint)pe;
                uint status = NativeApi.llama_model_quantize(input, output, ref parameters);
                if (status != 0)
                {
                    throw new InvalidOperationException($"llama_model_quantize('{input}' -> '{output}', {ftype}) with an imatrix failed with {status}.");
                }
            }
        }
        finally
        {
            foreach (GCHandle h in allocations)
            {
                h.Free();
            }
            foreach (nint p in names)
            {
                Marshal.FreeCoTaskMem(p);
            }
        }
    }

    private static nint Export(nint library, string name) =>
        NativeLibrary.TryGetExport(library, name, out nint address)
            ? address
            : throw new EntryPointNotFoundException($"The LLamaSharp native build does not export {name}.");

    private static nint LoadLlama()
    {
        _ = LlamaCppModel.NativeLibraryDescription;
        return NativeLibrary.Load(OperatingSystem.IsWindows() ? "llama.dll" : OperatingSystem.IsMacOS() ? "libllama.dylib" : "libllama.so");
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct QuantModelDesc
    {
        public nint Architecture;
        public uint N_embd;
        public uint N_ff;
        public uint N_layer;
        public uint N_head;
        public uint N_head_kv;
        public uint N_expert;
        public uint N_embd_head_k;
        public uint N_embd_head_v;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct TensorOverride
    {
        public nint Pattern;
        public int Type;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct ImatrixData
    {
        public nint Name;
        public nint Data;
        public nuint Size;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct GgmlInitParams
    {
        public nuint MemSize;
        public nint MemBuffer;
        public byte NoAlloc;
    }
}
