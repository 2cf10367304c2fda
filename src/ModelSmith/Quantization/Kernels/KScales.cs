namespace ModelSmith.Quantization.Kernels;

/// <summary>Scale unpacking shared by Q4_K and Q5_K.</summary>
internal static unsafe class KScales
{
    /// <summary>
    /// The 8 six-bit scales and mins packed in 12 bytes (get_scale_min_k4), each written twice: once per
    /// 16-element group of its 32-element sub-block. packed: (12), scales and mins: (16).
    /// </summary>
    public static void ScaleMinK4(byte* packed, short* scales, short* mins)
    {
        for (int j = 0; j < 8; j++)
        {
            int sc, m;
            if (j < 4)
            {
                sc = packed[j] & 63;
                m = packed[j + 4] & 63;
            }
            else
            {
                sc = (packed[j + 4] & 0xF) | ((packed[j - 4] >> 6) << 4);
                m = (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4);
            }
            scales[2 * j] = scales[2 * j + 1] = (short)sc;
            mins[2 * j] = mins[2 * j + 1] = (short)m;
        }
    }
}
