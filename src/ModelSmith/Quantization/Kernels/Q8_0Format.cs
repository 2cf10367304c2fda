using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using ModelSmith.Formats;

namespace ModelSmith.Quantization.Kernels;

/// <summary>
/// Q8_0 against Q8_0 activations (ggml_vec_dot_q8_0_q8_0): levels are the stored int8 quants, and a
/// block adds (float)Σ l·q · (d_x·d_y).
/// </summary>
internal readonly unsafe struct Q8_0Format : ILegacyFormat
{
    public static GgmlType Type => GgmlType.Q8_0;

    public static GgmlType ActivationType => GgmlType.Q8_0;

    public static int TypeSize => 34;

    public static int OffsetShift => -1;

    public static bool Signed => true;

    public static bool HasMin => false;

    public static void UnpackBlock(byte* block, byte* levels, out float d, out float m)
    {
        d = HalfScale.ToSingle(*(ushort*)block);
        m = 0f;
        for (int j = 0; j < 32; j++) levels[j] = block[2 + j];
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Levels(byte* block) => Vector256.Load(block + 2);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Term(int sumi, float dx, float dy, float mx, float sy) => sumi * (dx * dy);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Term(Vector256<int> sumi, Vector256<float> dx, Vector256<float> dy, Vector256<float> mx, Vector256<float> sy) =>
        Vector256.ConvertToSingle(sumi) * (dx * dy);
}
