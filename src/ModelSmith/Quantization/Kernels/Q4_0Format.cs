using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using ModelSmith.Formats;

namespace ModelSmith.Quantization.Kernels;

/// <summary>
/// Q4_0 against Q8_0 activations (ggml_vec_dot_q4_0_q8_0): levels are the stored nibbles n = l + 8, and a
/// block adds ((float)Σ l·q · d_x) · d_y.
/// </summary>
internal readonly unsafe struct Q4_0Format : ILegacyFormat
{
    public static GgmlType Type => GgmlType.Q4_0;

    public static GgmlType ActivationType => GgmlType.Q8_0;

    public static int TypeSize => 18;

    public static int OffsetShift => 3;

    public static bool Signed => false;

    public static bool HasMin => false;

    public static void UnpackBlock(byte* block, byte* levels, out float d, out float m)
    {
        d = HalfScale.ToSingle(*(ushort*)block);
        m = 0f;
        byte* qs = block + 2;
        for (int j = 0; j < 16; j++)
        {
            levels[j] = (byte)(qs[j] & 0x0F);
            levels[j + 16] = (byte)(qs[j] >> 4);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Levels(byte* block) => Nibbles.Split(block + 2);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Term(int sumi, float dx, float dy, float mx, float sy) => sumi * dx * dy;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Term(Vector256<int> sumi, Vector256<float> dx, Vector256<float> dy, Vector256<float> mx, Vector256<float> sy) =>
        Vector256.ConvertToSingle(sumi) * dx * dy;
}
