using System.Runtime.InteropServices;
using ModelSmith.Formats;

namespace ModelSmith.Interop.Tests.Quantization;

/// <summary>
/// llama.cpp's own row quantizers and dequantizers (ggml-quants.c), called straight from the libggml-base
/// that LLamaSharp loaded for libllama: quantize_row_*_ref (what llama_model_quantize runs for each
/// tensor when no importance matrix is given), dequantize_row_* (ggml's to_float), and the scalar F16/BF16
/// conversions. Used as the oracle for our block formats one row at a time.
/// </summary>
internal static unsafe class GgmlQuants
{
    private static readonly nint s_library = Load();

    /// <summary>The types with a reference quantizer and a dequantizer here.</summary>
    public static readonly GgmlType[] BlockTypes =
    [
        GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1,
        GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.Q8_K,
    ];

    /// <summary>quantize_row_{type}_ref(x, y, k): <paramref name="x"/> (k) into <paramref name="y"/> (k / block · type size).</summary>
    public static void QuantizeRowRef(GgmlType type, ReadOnlySpan<float> x, Span<byte> y)
    {
        Check(type, x.Length, y.Length);
        var fn = (delegate* unmanaged[Cdecl]<float*, byte*, long, void>)Export($"quantize_row_{Name(type)}_ref");
        fixed (float* px = x)
        fixed (byte* py = y)
        {
            fn(px, py, x.Length);
        }
    }

    /// <summary>dequantize_row_{type}(x, y, k): <paramref name="x"/> (k / block · type size) into <paramref name="y"/> (k).</summary>
    public static void DequantizeRow(GgmlType type, ReadOnlySpan<byte> x, Span<float> y)
    {
        Check(type, y.Length, x.Length);
        var fn = (delegate* unmanaged[Cdecl]<byte*, float*, long, void>)Export($"dequantize_row_{Name(type)}");
        fixed (byte* px = x)
        fixed (float* py = y)
        {
            fn(px, py, y.Length);
        }
    }

    /// <summary>ggml_fp32_to_fp16_row: GGML_FP32_TO_FP16 on every value.</summary>
    public static void Fp32ToFp16Row(ReadOnlySpan<float> x, Span<ushort> y)
    {
        var fn = (delegate* unmanaged[Cdecl]<float*, ushort*, long, void>)Export("ggml_fp32_to_fp16_row");
        fixed (float* px = x)
        fixed (ushort* py = y)
        {
            fn(px, py, x.Length);
        }
    }

    /// <summary>ggml_fp32_to_bf16_row_ref: ggml's round-to-nearest-even BF16 conversion.</summary>
    public static void Fp32ToBf16RowRef(ReadOnlySpan<float> x, Span<ushort> y)
    {
        var fn = (delegate* unmanaged[Cdecl]<float*, ushort*, long, void>)Export("ggml_fp32_to_bf16_row_ref");
        fixed (float* px = x)
        fixed (ushort* py = y)
        {
            fn(px, py, x.Length);
        }
    }

    private static string Name(GgmlType type) => type.ToString().ToLowerInvariant() switch
    {
        // ggml spells the K suffix in upper case: quantize_row_q4_K_ref.
        var n when n.EndsWith("_k", StringComparison.Ordinal) => n[..^2] + "_K",
        var n => n,
    };

    private static void Check(GgmlType type, int values, int bytes)
    {
        if (Array.IndexOf(BlockTypes, type) < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(type), type, "No ggml row quantizer is bound for this type.");
        }
        long expected = GgmlTypeInfo.ByteCount(type, values);
        if (bytes != expected)
        {
            throw new ArgumentException($"{values} {type} values take {expected} bytes, not {bytes}.");
        }
    }

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
