using System.Buffers.Binary;
using ModelSmith.Formats;
using ModelSmith.Quantization;

namespace ModelSmith.Tests.Quantization;

/// <summary>
/// Blocks assembled by hand from the byte layouts documented on each format class, with values chosen so
/// every dequantized weight is exact: the dequantizers must read each field where the layout says, and
/// the max-scaled formats must quantize the dequantized block back to the same bytes.
/// </summary>
public class KnownBlockTests
{
    [Fact]
    public void Q8_0_block_reads_scale_then_signed_quants_and_round_trips()
    {
        var block = new byte[34];
        Half(block, 0, 0.5f);
        var expected = new float[32];
        for (int j = 0; j < 32; j++)
        {
            int q = j == 0 ? -127 : 4 * j - 64;
            block[2 + j] = (byte)(sbyte)q;
            expected[j] = q * 0.5f;
        }
        AssertDequantizes(GgmlType.Q8_0, block, expected);
        AssertRequantizes(GgmlType.Q8_0, block, expected);
    }

    [Fact]
    public void Q4_0_block_keeps_weight_j_in_the_low_nibble_and_j_plus_16_in_the_high_nibble()
    {
        var block = new byte[18];
        Half(block, 0, 0.25f);
        var expected = new float[32];
        for (int j = 0; j < 16; j++)
        {
            int low = j;
            int high = 15 - j;
            block[2 + j] = (byte)(low | (high << 4));
            expected[j] = (low - 8) * 0.25f;
            expected[j + 16] = (high - 8) * 0.25f;
        }
        AssertDequantizes(GgmlType.Q4_0, block, expected);
        AssertRequantizes(GgmlType.Q4_0, block, expected);
    }

    [Fact]
    public void Q4_1_block_adds_the_minimum_after_scaling()
    {
        var block = new byte[20];
        Half(block, 0, 0.5f);
        Half(block, 2, -1f);
        var expected = new float[32];
        for (int j = 0; j < 16; j++)
        {
            int low = (3 * j) % 16;
            int high = 15 - j;
            block[4 + j] = (byte)(low | (high << 4));
            expected[j] = low * 0.5f - 1f;
            expected[j + 16] = high * 0.5f - 1f;
        }
        AssertDequantizes(GgmlType.Q4_1, block, expected);
        AssertRequantizes(GgmlType.Q4_1, block, expected);
    }

    [Fact]
    public void Q5_0_block_takes_the_fifth_bit_of_weight_j_from_bit_j_of_qh()
    {
        var block = new byte[22];
        Half(block, 0, 1f);
        var expected = new float[32];
        uint qh = 0;
        for (int j = 0; j < 32; j++)
        {
            int q = (7 * j + 3) % 32;
            if (j == 5) q = 0;
            block[6 + j % 16] |= (byte)((q & 0xF) << (j < 16 ? 0 : 4));
            qh |= (uint)(q >> 4) << j;
            expected[j] = q - 16;
        }
        BinaryPrimitives.WriteUInt32LittleEndian(block.AsSpan(2, 4), qh);
        AssertDequantizes(GgmlType.Q5_0, block, expected);
        AssertRequantizes(GgmlType.Q5_0, block, expected);
    }

    [Fact]
    public void Q5_1_block_reads_scale_minimum_high_bits_then_nibbles()
    {
        var block = new byte[24];
        Half(block, 0, 0.5f);
        Half(block, 2, 0.25f);
        var expected = new float[32];
        uint qh = 0;
        for (int j = 0; j < 32; j++)
        {
            int q = j == 0 ? 0 : j == 1 ? 31 : (11 * j) % 32;
            block[8 + j % 16] |= (byte)((q & 0xF) << (j < 16 ? 0 : 4));
            qh |= (uint)(q >> 4) << j;
            expected[j] = q * 0.5f + 0.25f;
        }
        BinaryPrimitives.WriteUInt32LittleEndian(block.AsSpan(4, 4), qh);
        AssertDequantizes(GgmlType.Q5_1, block, expected);
        AssertRequantizes(GgmlType.Q5_1, block, expected);
    }

    [Fact]
    public void Q2_K_block_applies_each_sub_block_scale_and_min()
    {
        var block = new byte[84];
        var expected = new float[256];
        for (int s = 0; s < 16; s++)
        {
            block[s] = (byte)(s | ((15 - s) << 4));
        }
        for (int e = 0; e < 256; e++)
        {
            int l = (e * 5 + e / 16) % 4;
            int half = e / 128, offset = e % 128;
            block[16 + 32 * half + offset % 32] |= (byte)(l << (2 * (offset / 32)));
            int s = e / 16;
            expected[e] = 2f * s * l - 0.5f * (15 - s);
        }
        Half(block, 80, 2f);
        Half(block, 82, 0.5f);
        AssertDequantizes(GgmlType.Q2_K, block, expected);
    }

    [Fact]
    public void Q3_K_block_combines_hmask_low_bits_and_six_bit_signed_scales()
    {
        var block = new byte[110];
        var expected = new float[256];
        int[] scale = new int[16];
        for (int j = 0; j < 16; j++)
        {
            scale[j] = (j * 13) % 64 - 32;
            int stored = scale[j] + 32;
            if (j < 8) block[96 + j] |= (byte)(stored & 0xF);
            else block[96 + j - 8] |= (byte)((stored & 0xF) << 4);
            block[96 + 8 + j % 4] |= (byte)((stored >> 4) << (2 * (j / 4)));
        }
        for (int e = 0; e < 256; e++)
        {
            int stored = (e * 3 + e / 32) % 8;
            block[e % 32] |= (byte)((stored >> 2) << (e / 32));
            int half = e / 128, offset = e % 128;
            block[32 + 32 * half + offset % 32] |= (byte)((stored & 3) << (2 * (offset / 32)));
            expected[e] = 0.5f * scale[e / 16] * (stored - 4);
        }
        Half(block, 108, 0.5f);
        AssertDequantizes(GgmlType.Q3_K, block, expected);
    }

    [Fact]
    public void Q4_K_block_unpacks_six_bit_scales_and_mins()
    {
        var (block, expected) = KQuant4Or5(5);
        AssertDequantizes(GgmlType.Q4_K, block, expected);
    }

    [Fact]
    public void Q5_K_block_adds_the_high_bit_from_qh()
    {
        var (block, expected) = KQuant4Or5(5 + 1);
        AssertDequantizes(GgmlType.Q5_K, block, expected);
    }

    [Fact]
    public void Q6_K_block_combines_low_nibbles_high_bit_pairs_and_signed_scales()
    {
        var block = new byte[210];
        var expected = new float[256];
        for (int s = 0; s < 16; s++)
        {
            block[192 + s] = (byte)(sbyte)(s * 9 - 70);
        }
        for (int e = 0; e < 256; e++)
        {
            int stored = (e * 7 + e / 64) % 64;
            int half = e / 128, o = e % 128;
            int l = o % 32, part = o / 32;
            int qlByte = 64 * half + l + (part % 2 == 1 ? 32 : 0);
            block[qlByte] |= (byte)((stored & 0xF) << (part >= 2 ? 4 : 0));
            block[128 + 32 * half + l] |= (byte)((stored >> 4) << (2 * part));
            expected[e] = 0.125f * (sbyte)block[192 + e / 16] * (stored - 32);
        }
        Half(block, 208, 0.125f);
        AssertDequantizes(GgmlType.Q6_K, block, expected);
    }

    [Fact]
    public void Q8_K_block_reads_an_f32_scale_and_quantizes_back_with_its_sums()
    {
        var block = new byte[292];
        BinaryPrimitives.WriteSingleLittleEndian(block, 0.25f);
        var expected = new float[256];
        for (int e = 0; e < 256; e++)
        {
            int q = e == 0 ? -127 : (e * 37) % 255 - 127;
            block[4 + e] = (byte)(sbyte)q;
            expected[e] = 0.25f * q;
        }
        for (int j = 0; j < 16; j++)
        {
            int sum = 0;
            for (int i = 0; i < 16; i++) sum += (sbyte)block[4 + 16 * j + i];
            BinaryPrimitives.WriteInt16LittleEndian(block.AsSpan(260 + 2 * j), (short)sum);
        }
        AssertDequantizes(GgmlType.Q8_K, block, expected);
        AssertRequantizes(GgmlType.Q8_K, block, expected);
    }

    [Fact]
    public void Zero_rows_quantize_to_the_bytes_llama_cpp_writes()
    {
        // Q4_0 and Q5_0 store the zero level as its offset (8 or 16), and their scale max/−8 (max/−16) of a
        // zero block is −0, F16 0x8000. The other formats write all-zero blocks.
        Assert.Equal(Block(34, 0), Quantize(GgmlType.Q8_0, 32));
        Assert.Equal([0x00, 0x80, .. Enumerable.Repeat((byte)0x88, 16)], Quantize(GgmlType.Q4_0, 32));
        Assert.Equal(Block(20, 0), Quantize(GgmlType.Q4_1, 32));
        Assert.Equal([0x00, 0x80, 0xFF, 0xFF, 0xFF, 0xFF, .. Block(16, 0)], Quantize(GgmlType.Q5_0, 32));
        Assert.Equal(Block(24, 0), Quantize(GgmlType.Q5_1, 32));
        Assert.Equal(Block(84, 0), Quantize(GgmlType.Q2_K, 256));
        Assert.Equal(Block(110, 0), Quantize(GgmlType.Q3_K, 256));
        Assert.Equal(Block(144, 0), Quantize(GgmlType.Q4_K, 256));
        Assert.Equal(Block(176, 0), Quantize(GgmlType.Q5_K, 256));
        Assert.Equal(Block(210, 0), Quantize(GgmlType.Q6_K, 256));
        Assert.Equal(Block(292, 0), Quantize(GgmlType.Q8_K, 256));
    }

    /// <summary>A Q4_K (nibbleBits 5 → Q5_K) block with 6-bit scales and mins across their whole range.</summary>
    private static (byte[] Block, float[] Expected) KQuant4Or5(int bits)
    {
        bool five = bits == 6;
        var block = new byte[five ? 176 : 144];
        int qsOffset = five ? 48 : 16;
        var expected = new float[256];
        int[] sc = new int[8];
        int[] mn = new int[8];
        for (int j = 0; j < 8; j++)
        {
            sc[j] = 8 * j + 7;
            mn[j] = 63 - 9 * j;
            if (j < 4)
            {
                block[4 + j] = (byte)sc[j];
                block[4 + j + 4] = (byte)mn[j];
            }
            else
            {
                block[4 + j + 4] = (byte)((sc[j] & 0xF) | ((mn[j] & 0xF) << 4));
                block[4 + j - 4] |= (byte)((sc[j] >> 4) << 6);
                block[4 + j] |= (byte)((mn[j] >> 4) << 6);
            }
        }
        for (int e = 0; e < 256; e++)
        {
            int level = five ? (e * 11 + e / 32) % 32 : (e * 5 + e / 32) % 16;
            int chunk = e / 64, o = e % 64;
            block[qsOffset + 32 * chunk + o % 32] |= (byte)((level & 0xF) << (o < 32 ? 0 : 4));
            if (five)
            {
                block[16 + o % 32] |= (byte)((level >> 4) << (2 * chunk + (o < 32 ? 0 : 1)));
            }
            expected[e] = 0.5f * sc[e / 32] * level - 0.25f * mn[e / 32];
        }
        Half(block, 0, 0.5f);
        Half(block, 2, 0.25f);
        return (block, expected);
    }

    private static void AssertDequantizes(GgmlType type, byte[] block, float[] expected)
    {
        var actual = new float[expected.Length];
        BlockQuantizer.Dequantize(type, block, 1, expected.Length, actual);
        Assert.Equal(expected, actual);
    }

    private static void AssertRequantizes(GgmlType type, byte[] block, float[] values)
    {
        var bytes = new byte[block.Length];
        BlockQuantizer.Quantize(type, values, 1, values.Length, bytes);
        Assert.Equal(block, bytes);
    }

    private static byte[] Quantize(GgmlType type, int cols)
    {
        var bytes = new byte[BlockQuantizer.RowSize(type, cols)];
        Array.Fill(bytes, (byte)0xCD);
        BlockQuantizer.Quantize(type, new float[cols], 1, cols, bytes);
        return bytes;
    }

    private static byte[] Block(int size, byte value) => Enumerable.Repeat(value, size).ToArray();

    private static void Half(byte[] block, int offset, float value) =>
        BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(offset), BitConverter.HalfToUInt16Bits((Half)value));
}
