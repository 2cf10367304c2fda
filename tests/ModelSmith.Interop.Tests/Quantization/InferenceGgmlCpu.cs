using System.Runtime.InteropServices;
using ModelSmith.Formats;

namespace ModelSmith.Interop.Tests.Quantization;

/// <summary>
/// ggml's CPU type traits (ggml_get_type_traits_cpu in the libggml-cpu that LLamaSharp loaded for this
/// CPU): for a weight type, its vec_dot_type, the from_float that quantizes activations to it, and the
/// vec_dot that multiplies a weight row by quantized activations. These are the functions llama.cpp's
/// matmul runs when it does not take a repacked or tiled path.
/// </summary>
internal static unsafe class InferenceGgmlCpu
{
    private static readonly nint s_library = Load();

    // struct ggml_type_traits_cpu { from_float; vec_dot; enum ggml_type vec_dot_type; int64_t nrows; }
    [StructLayout(LayoutKind.Sequential)]
    private struct TypeTraitsCpu
    {
        public delegate* unmanaged[Cdecl]<float*, byte*, long, void> FromFloat;
        public delegate* unmanaged[Cdecl]<int, float*, nuint, byte*, nuint, byte*, nuint, int, void> VecDot;
        public int VecDotType;
        public long Rows;
    }

    /// <summary>The type ggml quantizes activations to for <paramref name="type"/>.</summary>
    public static GgmlType VecDotType(GgmlType type) => (GgmlType)Traits(type)->VecDotType;

    /// <summary>ggml's from_float of the vec_dot_type: x (K) into ggml blocks.</summary>
    public static byte[] QuantizeActivations(GgmlType type, ReadOnlySpan<float> x)
    {
        TypeTraitsCpu* act = Traits(VecDotType(type));
        var bytes = new byte[GgmlTypeInfo.ByteCount(VecDotType(type), x.Length)];
        fixed (float* px = x)
        fixed (byte* py = bytes)
        {
            act->FromFloat(px, py, x.Length);
        }
        return bytes;
    }

    /// <summary>ggml's vec_dot of one weight row with quantized activations.</summary>
    public static float Dot(GgmlType type, ReadOnlySpan<byte> row, ReadOnlySpan<byte> activations, int k)
    {
        float s;
        fixed (byte* pw = row)
        fixed (byte* pa = activations)
        {
            Traits(type)->VecDot(k, &s, 0, pw, 0, pa, 0, 1);
        }
        return s;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct InitParams
    {
        public nuint MemSize;
        public nint MemBuffer;
        public byte NoAlloc;
    }

    /// <summary>
    /// y = x·Wᵀ through ggml's own graph: ggml_mul_mat on a CPU context, computed by
    /// ggml_graph_compute_with_ctx, i.e. every path ggml-cpu takes for a plain (not repacked) weight,
    /// llamafile's tinyBLAS included. w: (rows) rows of <paramref name="type"/>, x: (tokens, cols), y: (tokens, rows).
    /// </summary>
    public static float[] MulMat(GgmlType type, ReadOnlySpan<byte> w, int rows, int cols, ReadOnlySpan<float> x, int tokens, int threads)
    {
        var init = (delegate* unmanaged[Cdecl]<InitParams, nint>)ExportBase("ggml_init");
        var free = (delegate* unmanaged[Cdecl]<nint, void>)ExportBase("ggml_free");
        var newTensor = (delegate* unmanaged[Cdecl]<nint, int, long, long, nint>)ExportBase("ggml_new_tensor_2d");
        var getData = (delegate* unmanaged[Cdecl]<nint, void*>)ExportBase("ggml_get_data");
        var mulMat = (delegate* unmanaged[Cdecl]<nint, nint, nint, nint>)ExportBase("ggml_mul_mat");
        var newGraph = (delegate* unmanaged[Cdecl]<nint, nint>)ExportBase("ggml_new_graph");
        var expand = (delegate* unmanaged[Cdecl]<nint, nint, void>)ExportBase("ggml_build_forward_expand");
        var compute = (delegate* unmanaged[Cdecl]<nint, nint, int, int>)Export("ggml_graph_compute_with_ctx");

        nuint size = (nuint)(w.Length + 4L * x.Length + 4L * rows * tokens + (64L << 20));
        nint ctx = init(new InitParams { MemSize = size, MemBuffer = 0, NoAlloc = 0 });
        if (ctx == 0) throw new InvalidOperationException("ggml_init failed.");
        try
        {
            nint a = newTensor(ctx, (int)type, cols, rows);
            nint b = newTensor(ctx, (int)GgmlType.F32, cols, tokens);
            w.CopyTo(new Span<byte>(getData(a), w.Length));
            x[..(cols * tokens)].CopyTo(new Span<float>(getData(b), cols * tokens));
            nint c = mulMat(ctx, a, b);
            nint graph = newGraph(ctx);
            expand(graph, c);
            int status = compute(ctx, graph, threads);
            if (status != 0) throw new InvalidOperationException($"ggml_graph_compute_with_ctx returned {status}.");
            return new Span<float>(getData(c), rows * tokens).ToArray();
        }
        finally
        {
            free(ctx);
        }
    }

    private static readonly nint s_base = NativeLibrary.Load(OperatingSystem.IsWindows() ? "ggml-base.dll" : OperatingSystem.IsMacOS() ? "libggml-base.dylib" : "libggml-base.so");

    private static nint ExportBase(string name) =>
        NativeLibrary.TryGetExport(s_base, name, out nint address)
            ? address
            : throw new EntryPointNotFoundException($"libggml-base does not export {name}; the LLamaSharp native build changed.");

    private static TypeTraitsCpu* Traits(GgmlType type)
    {
        var get = (delegate* unmanaged[Cdecl]<int, TypeTraitsCpu*>)Export("ggml_get_type_traits_cpu");
        return get((int)type);
    }

    private static nint Export(string name) =>
        NativeLibrary.TryGetExport(s_library, name, out nint address)
            ? address
            : throw new EntryPointNotFoundException($"libggml-cpu does not export {name}; the LLamaSharp native build changed.");

    private static nint Load()
    {
        // libllama first, so LLamaSharp picks its CPU variant; dlopen by soname then returns that libggml-cpu.
        _ = LlamaCppModel.NativeLibraryDescription;
        using (new LlamaCppModel(RepoPaths.Stories260K)) { }
        return NativeLibrary.Load(OperatingSystem.IsWindows() ? "ggml-cpu.dll" : OperatingSystem.IsMacOS() ? "libggml-cpu.dylib" : "libggml-cpu.so");
    }
}
