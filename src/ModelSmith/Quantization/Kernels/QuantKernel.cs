using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using ModelSmith.Formats;

namespace ModelSmith.Quantization.Kernels;

/// <summary>Which instructions a quantized kernel uses. Every path returns the same bits.</summary>
internal enum QuantKernelPath
{
    /// <summary>Plain scalar code (any CPU).</summary>
    Scalar,

    /// <summary>256-bit AVX2: pmaddubsw/pmaddwd integer dot products.</summary>
    Avx2,

    /// <summary>AVX2 with AVX-VNNI's vpdpbusd/vpdpwssd, which fuse the widening multiply-adds.</summary>
    Avx2Vnni,

    /// <summary>512-bit AVX-512 BW + VBMI for the K-quants (vpermb reorders packed levels, vpermw expands
    /// scales) and for Q4_0's decode (vpermb picks two blocks per register); the other 32-block kernels
    /// stay 256-bit, with VNNI where the CPU has it.</summary>
    Avx512,
}

/// <summary>
/// The dot-product kernel of one block-quantized weight type: how to expand a stored row into the form the
/// integer multiply-adds read ("unpacked"), and the dot product of an unpacked row with one token of
/// <see cref="QuantizedActivations"/>, equal bit for bit to <see cref="VecDotReference.Dot"/>.
/// </summary>
/// <remarks>
/// A row is unpacked once per matmul into a worker's scratch and then meets every token, so prefill pays
/// the bit twiddling once per weight and decode reads each packed weight from memory once.
/// </remarks>
internal abstract unsafe class QuantKernel
{
    public abstract GgmlType Type { get; }

    /// <summary>ggml's vec_dot_type of <see cref="Type"/>: what the activations are quantized to.</summary>
    public abstract GgmlType ActivationType { get; }

    /// <summary>Elements per block (32 or 256).</summary>
    public abstract int BlockSize { get; }

    /// <summary>
    /// True when <see cref="Unpack"/> stores the levels of each 8 blocks interleaved and <see cref="Dot"/>
    /// expects activations quantized with <c>grouped: true</c> (see <see cref="QuantizedActivations.Grouped"/>).
    /// <see cref="DotPacked"/> always takes natural-order activations.
    /// </summary>
    public virtual bool GroupsBlocks => false;

    /// <summary>Bytes an unpacked row of K elements takes (a multiple of 64).</summary>
    public abstract int UnpackedRowBytes(int k);

    /// <summary>Expands one stored row. row: the row's K/BlockSize blocks, dst: (UnpackedRowBytes(k)), 64-byte aligned.</summary>
    public abstract void Unpack(byte* row, int k, byte* dst, QuantKernelPath path);

    /// <summary>Unpacked row · token <paramref name="token"/> of <paramref name="a"/> (K values), in ggml's float order.</summary>
    public abstract float Dot(byte* unpacked, QuantizedActivations a, int token, QuantKernelPath path);

    /// <summary>
    /// y[j·ldy] = <see cref="Dot"/> of the unpacked row with token t0 + j, for j in [0, count). Kernels may
    /// share the row's loads between tokens; every output has the same bits as one <see cref="Dot"/> call.
    /// </summary>
    public virtual void DotTokens(byte* unpacked, QuantizedActivations a, int t0, int count, QuantKernelPath path, float* y, int ldy)
    {
        for (int j = 0; j < count; j++) y[(long)j * ldy] = Dot(unpacked, a, t0 + j, path);
    }

    /// <summary>
    /// y[j·ldy + r] = <see cref="Dot"/> of unpacked row r with token t0 + j, for r in [0, rows) and j in
    /// [0, count). Kernels may tile rows × tokens so each load serves several products; every output has
    /// the same bits as one <see cref="Dot"/> call. unpacked: (rows, stride) bytes, y: (count, ldy).
    /// </summary>
    public virtual void DotTile(byte* unpacked, int stride, int rows, QuantizedActivations a, int t0, int count, QuantKernelPath path, float* y, int ldy)
    {
        for (int r = 0; r < rows; r++) DotTokens(unpacked + (long)r * stride, a, t0, count, path, y + r, ldy);
    }

    /// <summary>True when <see cref="DotPacked"/> multiplies a stored row directly (unpacking in registers).</summary>
    public virtual bool HasPackedDot => false;

    /// <summary>
    /// Stored row · token <paramref name="token"/>, the same bits as <see cref="Unpack"/> then <see cref="Dot"/>
    /// without the round trip through memory (decode). Only called when <see cref="HasPackedDot"/>.
    /// </summary>
    public virtual float DotPacked(byte* row, QuantizedActivations a, int token, QuantKernelPath path) =>
        throw new NotSupportedException($"{Type} multiplies unpacked rows only; call Unpack, then Dot.");

    /// <summary>
    /// y[r] = <see cref="DotPacked"/> of stored row r, for <paramref name="count"/> rows rowBytes apart.
    /// Kernels may interleave rows; every y[r] has the same bits as one <see cref="DotPacked"/> call.
    /// rows: (count, rowBytes), y: (count).
    /// </summary>
    public virtual void DotPackedRows(byte* rows, int rowBytes, int count, QuantizedActivations a, int token, QuantKernelPath path, float* y)
    {
        for (int r = 0; r < count; r++) y[r] = DotPacked(rows + (long)r * rowBytes, a, token, path);
    }

    /// <summary>The widest path this CPU runs.</summary>
    public static QuantKernelPath BestPath { get; } =
        IsSupported(QuantKernelPath.Avx512) ? QuantKernelPath.Avx512 :
        IsSupported(QuantKernelPath.Avx2Vnni) ? QuantKernelPath.Avx2Vnni :
        IsSupported(QuantKernelPath.Avx2) ? QuantKernelPath.Avx2 : QuantKernelPath.Scalar;

    public static bool IsSupported(QuantKernelPath path) => path switch
    {
        QuantKernelPath.Scalar => true,
        QuantKernelPath.Avx2 => Avx2.IsSupported,
        QuantKernelPath.Avx2Vnni => Avx2.IsSupported && AvxVnni.IsSupported,
        QuantKernelPath.Avx512 => Avx2.IsSupported && Avx512BW.IsSupported && Avx512Vbmi.IsSupported && Vector512.IsHardwareAccelerated,
        _ => false,
    };

    /// <summary>True for the weight types with a kernel here.</summary>
    public static bool Supports(GgmlType type) => VecDotReference.Supports(type);

    /// <summary>The kernel of <paramref name="type"/>.</summary>
    public static QuantKernel For(GgmlType type) => type switch
    {
        GgmlType.Q4_0 => LegacyKernel<Q4_0Format>.Instance,
        GgmlType.Q4_1 => LegacyKernel<Q4_1Format>.Instance,
        GgmlType.Q5_0 => LegacyKernel<Q5_0Format>.Instance,
        GgmlType.Q5_1 => LegacyKernel<Q5_1Format>.Instance,
        GgmlType.Q8_0 => LegacyKernel<Q8_0Format>.Instance,
        GgmlType.Q2_K => KQuantKernel<Q2_KFormat>.Instance,
        GgmlType.Q3_K => KQuantKernel<Q3_KFormat>.Instance,
        GgmlType.Q4_K => KQuantKernel<Q4_KFormat>.Instance,
        GgmlType.Q5_K => KQuantKernel<Q5_KFormat>.Instance,
        GgmlType.Q6_K => KQuantKernel<Q6_KFormat>.Instance,
        _ => throw new NotSupportedException($"{type} has no quantized dot kernel (supported: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)."),
    };

    /// <summary>Bytes rounded up to whole 64-byte lines.</summary>
    protected static int Align64(int bytes) => (bytes + 63) & ~63;
}
