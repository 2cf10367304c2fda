using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using ModelSmith.Formats;

namespace ModelSmith.Quantization.Kernels;

/// <summary>
/// Q5_1 against Q8_1 activations (ggml_vec_dot_q5_1_q8_1): levels are the 5-bit n ∈ [0, 31] (weight
/// n·d + m), and a block adds (d_x·d_y)·Σ n·q + m_x·s_y.
/// </summary>
internal readonly unsafe struct Q5_1Format : ILegacyFormat
{
    public static GgmlType Type => GgmlType.Q5_1;

    public static GgmlType ActivationType => GgmlType.Q8_1;

    public static int TypeSize => 24;

    public static int OffsetShift => -1;

    public static bool Signed => false;

    public static bool HasMin => true;

    public static void UnpackBlock(byte* block, byte* levels, out float d, out float m)
    {
        d = HalfScale.ToSingle(*(ushort*)block);
        m = HalfScale.ToSingle(*(ushort*)(block + 2));
        Nibbles.FiveBitScalar(*(uint*)(block + 4), block + 8, levels);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Levels(byte* block) => Nibbles.FiveBit(*(uint*)(block + 4), block + 8);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Term(int sumi, float dx, float dy, float mx, float sy) => (dx * dy) * sumi + mx * sy;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Term(Vector256<int> sumi, Vector256<float> dx, Vector256<float> dy, Vector256<float> mx, Vector256<float> sy) =>
        (dx * dy) * Vector256.ConvertToSingle(sumi) + mx * sy;
}
