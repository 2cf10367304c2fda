using System.Runtime.InteropServices;
using ModelSmith.Formats;

namespace ModelSmith.Interop.Tests.Quantization;

/// <summary>
/// ggml's whole-matrix quantizers size_t quantize_{type}(const float * src, void * dst, int64_t nrow,
/// int64_t n_per_row, const float * quant_weights), called from the libggml-base that LLamaSharp loaded:
/// what llama_model_quantize runs for each tensor (through ggml_quantize_chunk), with the importance-matrix
/// row of the tensor as quant_weights, or null for the reference path.
/// </summary>
internal static unsafe class ImatrixGgmlExports
{
    private static readonly nint s_library = Load();

    /// <summary>The block types with a quantize_{type} export bound here.</summary>
    public static readonly GgmlType[] Types =
    [
        GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1,
        GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K,
    ];

    /// <summary>quantize_{type}(x, y, rows, cols, importance or null). x: (rows, cols); importance: (cols) or empty; y: rows·row size.</summary>
    public static void Quantize(GgmlType type, ReadOnlySpan<float> x, int rows, int cols, ReadOnlySpan<float> importance, Span<byte> y)
    {
        if (Array.IndexOf(Types, type) < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(type), type, "No ggml quantize_{type} is bound for this type.");
        }
        if (x.Length != (long)rows * cols || y.Length != rows * GgmlTypeInfo.ByteCount(type, cols) || !(importance.IsEmpty || importance.Length == cols))
        {
            throw new ArgumentException($"Shapes do not agree: {x.Length} values, {rows}×{cols}, {importance.Length} importance values, {y.Length} bytes.");
        }
        var fn = (delegate* unmanaged[Cdecl]<float*, byte*, long, long, float*, nuint>)Export($"quantize_{Name(type)}");
        fixed (float* px = x)
        fixed (float* pq = importance)
        fixed (byte* py = y)
        {
            nuint written = fn(px, py, rows, cols, importance.IsEmpty ? null : pq);
            if (written != (nuint)y.Length)
            {
                throw new InvalidOperationException($"quantize_{Name(type)} wrote {written} bytes, expected {y.Length}.");
            }
        }
    }

    private static string Name(GgmlType type) => type.ToString().ToLowerInvariant() switch
    {
        var n when n.EndsWith("_k", StringComparison.Ordinal) => n[..^2] + "_K",
        var n => n,
    };

    private static nint Export(string name) =>
        NativeLibrary.TryGetExport(s_library, name, out nint address)
            ? address
            : throw new EntryPointNotFoundException($"libggml-base does not export {name}; the LLamaSharp native build changed.");

    private static nint Load()
    {
        // Loading libllama through the harness first makes LLamaSharp pick its CPU variant; dlopen by soname
        // then returns the libggml-base image that libllama already depends on.
        _ = LlamaCppModel.NativeLibraryDescription;
        return NativeLibrary.Load(OperatingSystem.IsWindows() ? "ggml-base.dll" : OperatingSystem.IsMacOS() ? "libggml-base.dylib" : "libggml-base.so");
    }
}
