using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using ModelSmith.Formats;

namespace ModelSmith.Quantization.Kernels;

/// <summary>
/// Q4_1 against Q8_1 activations (ggml_vec_dot_q4_1_q8_1): levels are the nibbles n ∈ [0, 15] (weight
/// n·d + m), and a block adds (d_x·d_y)·Σ n·q + m_x·s_y, where s_y = d_y·Σq carries the min.
/// </summary>
internal readonly unsafe struct Q4_1Format : ILegacyFormat
{
    public static GgmlType Type => GgmlType.Q4_1;

    public static GgmlType ActivationType => GgmlType.Q8_1;

    public static int TypeSize => 20;

    public static int OffsetShift => -1;

    public static bool Signed => false;

    public static bool HasMin => true;

    public static void UnpackBlock(byte* block, byte* levels, out float d, out float m)
    {
        d = HalfScale.ToSingle(*(ushort*)block);
        m = HalfScale.ToSingle(*(ushort*)(block + 2));
        byte* qs = block + 4;
        for (int j = 0; j < 16; j++)
        {
            levels[j] = (byte)(qs[j] & 0x0F);
            levels[j + 16] = (byte)(qs[j] >> 4);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Levels(byte* block) => Nibbles.Split(block + 4);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Term(int sumi, float dx, float dy, float mx, float sy) => (dx * dy) * sumi + mx * sy;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Term(Vector256<int> sumi, Vector256<float> dx, Vector256<float> dy, Vector256<float> mx, Vector256<float> sy) =>
        (dx * dy) * Vector256.ConvertToSingle(sumi) + mx * sy;
}
