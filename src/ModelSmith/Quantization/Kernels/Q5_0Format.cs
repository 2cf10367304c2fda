using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using ModelSmith.Formats;

namespace ModelSmith.Quantization.Kernels;

/// <summary>
/// Q5_0 against Q8_0 activations (ggml_vec_dot_q5_0_q8_0): levels are the 5-bit n = l + 16 (nibble plus
/// the qh bit as bit 4), and a block adds (d_x·d_y)·Σ l·q.
/// </summary>
internal readonly unsafe struct Q5_0Format : ILegacyFormat
{
    public static GgmlType Type => GgmlType.Q5_0;

    public static GgmlType ActivationType => GgmlType.Q8_0;

    public static int TypeSize => 22;

    public static int OffsetShift => 4;

    public static bool Signed => false;

    public static bool HasMin => false;

    public static void UnpackBlock(byte* block, byte* levels, out float d, out float m)
    {
        d = HalfScale.ToSingle(*(ushort*)block);
        m = 0f;
        Nibbles.FiveBitScalar(*(uint*)(block + 2), block + 6, levels);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Levels(byte* block) => Nibbles.FiveBit(*(uint*)(block + 2), block + 6);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Term(int sumi, float dx, float dy, float mx, float sy) => (dx * dy) * sumi;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Term(Vector256<int> sumi, Vector256<float> dx, Vector256<float> dy, Vector256<float> mx, Vector256<float> sy) =>
        (dx * dy) * Vector256.ConvertToSingle(sumi);
}
