using ModelSmith.Formats;
using ModelSmith.Quantization;
using ModelSmith.Quantization.Kernels;
using ModelSmith.Tensors;

namespace ModelSmith.Tests.Quantization.Kernels;

/// <summary>
/// The quantized matmul against <see cref="VecDotReference"/> (ggml's generic vec_dot kernels on ggml's
/// block bytes): every output bit-identical, on every kernel path this CPU runs, for every type, for row
/// lengths that leave every kind of remainder, weights from the quantizer and from random bytes, and
/// activations with zero blocks and outliers. Also run by test.sh with AVX-512 and AVX2 switched off.
/// </summary>
[Trait("Category", "Kernels")]
public sealed class QuantizedMatMulTests : IDisposable
{
    public static TheoryData<GgmlType> Types => new()
    {
        GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1,
        GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K,
    };

    private readonly ComputePool _pool1 = new(1);
    private readonly ComputePool _pool3 = new(3);

    public void Dispose()
    {
        _pool1.Dispose();
        _pool3.Dispose();
    }

    private static IEnumerable<QuantKernelPath> Paths() =>
        Enum.GetValues<QuantKernelPath>().Where(QuantKernel.IsSupported);

    private static int[] Lengths(GgmlType type) => GgmlTypeInfo.BlockSize(type) == 32
        ? [32, 64, 96, 224, 256, 288, 480, 512, 608, 1056]
        : [256, 512, 768, 1024, 2304, 3072];

    /// <summary>Weights as a user meets them: our reference quantizer on a mix of distributions.</summary>
    private static byte[] QuantizedWeights(GgmlType type, int rows, int cols, ulong seed)
    {
        float[] values = new TestWeights(seed).Mixed(rows, cols);
        var bytes = new byte[rows * BlockQuantizer.RowSize(type, cols)];
        BlockQuantizer.Quantize(type, values, rows, cols, bytes);
        return bytes;
    }

    /// <summary>Random bytes with finite F16 scales: every level and scale pattern, extremes included.</summary>
    private static byte[] RandomWeights(GgmlType type, int rows, int cols, int seed)
    {
        var rng = new Random(seed);
        var bytes = new byte[rows * BlockQuantizer.RowSize(type, cols)];
        rng.NextBytes(bytes);
        int size = GgmlTypeInfo.TypeSize(type);
        int[] halves = type switch
        {
            GgmlType.Q4_1 or GgmlType.Q5_1 or GgmlType.Q4_K or GgmlType.Q5_K => [0, 2],
            GgmlType.Q2_K => [80, 82],
            GgmlType.Q3_K => [108],
            GgmlType.Q6_K => [208],
            _ => [0],
        };
        for (int b = 0; b < bytes.Length / size; b++)
        {
            foreach (int h in halves)
            {
                ushort bits = BitConverter.HalfToUInt16Bits((Half)((float)(rng.NextDouble() * 2 - 1) * 0.05f));
                bytes[b * size + h] = (byte)bits;
                bytes[b * size + h + 1] = (byte)(bits >> 8);
            }
        }
        return bytes;
    }

    /// <summary>Activations: normals, a zero block, one large outlier per token.</summary>
    private static float[] Activations(int tokens, int cols, ulong seed)
    {
        var w = new TestWeights(seed);
        var x = new float[tokens * cols];
        for (int i = 0; i < x.Length; i++) x[i] = w.Normal();
        for (int t = 0; t < tokens; t++)
        {
            if (t % 2 == 1)
            {
                for (int j = 0; j < Math.Min(32, cols); j++) x[t * cols + j] = 0;
            }
            x[t * cols + (7 * t + 3) % cols] = 40f;
        }
        return x;
    }

    private static float[] Expected(GgmlType type, byte[] w, int rows, int cols, float[] x, int tokens)
    {
        int rowBytes = BlockQuantizer.RowSize(type, cols);
        var y = new float[tokens * rows];
        for (int t = 0; t < tokens; t++)
        {
            byte[] a = VecDotReference.QuantizeActivations(VecDotReference.VecDotType(type), x.AsSpan(t * cols, cols));
            for (int r = 0; r < rows; r++) y[t * rows + r] = VecDotReference.Dot(type, w.AsSpan(r * rowBytes, rowBytes), a, cols);
        }
        return y;
    }

    private static void AssertBitEqual(float[] expected, float[] actual, string context)
    {
        for (int i = 0; i < expected.Length; i++)
        {
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{context}: output {i} is {actual[i]:R}, ggml's generic kernel gives {expected[i]:R}.");
        }
    }

    private void CheckAllPaths(GgmlType type, byte[] bytes, int rows, int cols, float[] x, int tokens, string context)
    {
        var w = new WeightMatrix(type, rows, cols, bytes);
        float[] expected = Expected(type, bytes, rows, cols, x, tokens);
        foreach (QuantKernelPath path in Paths())
        {
            foreach (ComputePool pool in new[] { _pool1, _pool3 })
            {
                var y = new float[tokens * rows];
                QuantizedMatMul.Forward(x, w, [], tokens, y, pool, path);
                AssertBitEqual(expected, y, $"{context} {path} threads={pool.ThreadCount} tokens={tokens}");
            }
            // One token at a time (decode) gives the same bits as the batch.
            for (int t = 0; t < tokens; t++)
            {
                var y = new float[rows];
                QuantizedMatMul.Forward(x.AsSpan(t * cols, cols), w, [], 1, y, _pool3, path);
                AssertBitEqual(expected.AsSpan(t * rows, rows).ToArray(), y, $"{context} {path} decode token {t}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void Quantized_matmul_equals_ggml_generic_dot_for_quantizer_weights_on_every_path(GgmlType type)
    {
        ulong seed = 1;
        foreach (int cols in Lengths(type))
        {
            const int rows = 7, tokens = 9;
            byte[] w = QuantizedWeights(type, rows, cols, seed++);
            float[] x = Activations(tokens, cols, seed++);
            CheckAllPaths(type, w, rows, cols, x, tokens, $"{type} K={cols}");
        }
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void Quantized_matmul_equals_ggml_generic_dot_for_random_block_bytes(GgmlType type)
    {
        int seed = 100;
        foreach (int cols in Lengths(type))
        {
            const int rows = 5, tokens = 6;
            byte[] w = RandomWeights(type, rows, cols, seed++);
            float[] x = Activations(tokens, cols, (ulong)seed++);
            CheckAllPaths(type, w, rows, cols, x, tokens, $"{type} random bytes K={cols}");
        }
    }

    [Fact]
    public unsafe void Grouping_blocks_transposes_each_full_group_of_eight_and_leaves_the_rest()
    {
        var rng = new Random(17);
        for (int blocks = 0; blocks <= 33; blocks++)
        {
            var bytes = new byte[32 * blocks];
            rng.NextBytes(bytes);
            var expected = (byte[])bytes.Clone();
            // Word j of block i (bytes 32i + 4j..) moves to word i of row j, within each full group of 8.
            for (int g = 0; g + 8 <= blocks; g += 8)
            {
                for (int i = 0; i < 8; i++)
                {
                    for (int j = 0; j < 8; j++) Array.Copy(bytes, 32 * (g + i) + 4 * j, expected, 32 * (g + j) + 4 * i, 4);
                }
            }
            fixed (byte* p = bytes) QuantizedActivations.GroupBlocks(p, blocks);
            Assert.Equal(expected, bytes);
        }
    }

    public static TheoryData<GgmlType> BlockTypes => new()
    {
        GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1,
    };

    [Theory]
    [MemberData(nameof(BlockTypes))]
    public void Prefill_tiles_of_rows_and_tokens_equal_ggml_generic_dot_for_every_shape(GgmlType type)
    {
        // Row counts that leave odd rows in an item and partial items; token counts that leave partial tiles;
        // lengths with no full group of 8 blocks, whole groups, and a partial group after them.
        (int Rows, int Tokens)[] shapes = [(2, 4), (3, 4), (16, 8), (17, 5), (37, 13), (1, 7)];
        int[] lengths = [32, 224, 256, 288, 800];
        ulong seed = 300;
        foreach ((int rows, int tokens) in shapes)
        {
            foreach (int cols in lengths)
            {
                byte[] w = seed % 2 == 0 ? QuantizedWeights(type, rows, cols, seed) : RandomWeights(type, rows, cols, (int)seed);
                float[] x = Activations(tokens, cols, seed + 1);
                CheckAllPaths(type, w, rows, cols, x, tokens, $"{type} {rows}x{cols} tokens={tokens}");
                seed += 3;
            }
        }
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void Unpacked_rows_are_the_same_on_every_path(GgmlType type)
    {
        QuantKernel kernel = QuantKernel.For(type);
        foreach (int cols in Lengths(type))
        {
            byte[] w = RandomWeights(type, 1, cols, cols);
            int size = kernel.UnpackedRowBytes(cols);
            byte[]? first = null;
            foreach (QuantKernelPath path in Paths())
            {
                byte[] unpacked = Unpack(kernel, w, cols, size, path);
                if (first is null) first = unpacked;
                else Assert.True(first.AsSpan().SequenceEqual(unpacked), $"{type} K={cols}: {path} unpacks differently from {Paths().First()}");
            }
        }
    }

    private static unsafe byte[] Unpack(QuantKernel kernel, byte[] row, int cols, int size, QuantKernelPath path)
    {
        var result = new byte[size];
        byte* aligned = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)size, 64);
        try
        {
            new Span<byte>(aligned, size).Fill(0xCD);
            fixed (byte* r = row) kernel.Unpack(r, cols, aligned, path);
            new Span<byte>(aligned, size).CopyTo(result);
        }
        finally
        {
            System.Runtime.InteropServices.NativeMemory.AlignedFree(aligned);
        }
        return result;
    }

    [Theory]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.Q8_1)]
    [InlineData(GgmlType.Q8_K)]
    public unsafe void Activation_quantization_matches_ggml_bytes(GgmlType type)
    {
        int block = type == GgmlType.Q8_K ? 256 : 32;
        const int tokens = 3;
        int cols = 4 * 256;
        float[] x = Activations(tokens, cols, 77);
        x[5] = 1e-30f;
        var act = new QuantizedActivations();
        act.Quantize(x, tokens, cols, type);
        ReadOnlySpan<byte> order = QuantizedActivations.Interleave;
        for (int t = 0; t < tokens; t++)
        {
            byte[] g = VecDotReference.QuantizeActivations(type, x.AsSpan(t * cols, cols));
            int size = GgmlTypeInfo.TypeSize(type);
            for (int b = 0; b < cols / block; b++)
            {
                ReadOnlySpan<byte> gb = g.AsSpan(b * size, size);
                int o = t * act.Blocks + b;
                sbyte* q = act.Quants + (long)t * cols + b * block;
                if (type == GgmlType.Q8_K)
                {
                    Assert.Equal(BitConverter.ToSingle(gb[..4]), act.Scales[o]);
                    for (int i = 0; i < 256; i++) Assert.Equal((sbyte)gb[4 + 32 * (i / 32) + order[i % 32]], q[i]);
                    for (int j = 0; j < 16; j++) Assert.Equal(BitConverter.ToInt16(gb.Slice(260 + 2 * j, 2)), act.GroupSums[16 * o + j]);
                    continue;
                }
                int qs = type == GgmlType.Q8_1 ? 4 : 2;
                Assert.Equal((float)BitConverter.UInt16BitsToHalf(BitConverter.ToUInt16(gb[..2])), act.Scales[o]);
                int sum = 0;
                for (int i = 0; i < 32; i++)
                {
                    Assert.Equal((sbyte)gb[qs + i], q[i]);
                    sum += (sbyte)gb[qs + i];
                }
                Assert.Equal(sum, act.BlockSums[o]);
                if (type == GgmlType.Q8_1)
                    Assert.Equal((float)BitConverter.UInt16BitsToHalf(BitConverter.ToUInt16(gb.Slice(2, 2))), act.Offsets[o]);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void Matmul_entry_point_adds_bias_and_rows_dequantize_like_ggml(GgmlType type)
    {
        int cols = GgmlTypeInfo.BlockSize(type) == 32 ? 96 : 512, rows = 9, tokens = 2;
        byte[] bytes = QuantizedWeights(type, rows, cols, 5);
        var w = new WeightMatrix(type, rows, cols, bytes);
        float[] x = Activations(tokens, cols, 6);
        float[] bias = new float[rows];
        for (int r = 0; r < rows; r++) bias[r] = 0.25f * r - 1f;
        var y = new float[tokens * rows];
        MatMul.Forward(x, w, bias, tokens, y, _pool3);
        float[] expected = Expected(type, bytes, rows, cols, x, tokens);
        for (int i = 0; i < expected.Length; i++) expected[i] += bias[i % rows];
        AssertBitEqual(expected, y, $"{type} with bias");

        var row = new float[cols];
        var all = new float[rows * cols];
        BlockQuantizer.Dequantize(type, bytes, rows, cols, all);
        for (int r = 0; r < rows; r++)
        {
            w.DequantizeRow(r, row);
            Assert.True(all.AsSpan(r * cols, cols).SequenceEqual(row), $"{type}: row {r} dequantizes differently");
        }
        Assert.True(RowKernel.IsSupported(type));
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void Reference_dot_equals_the_dot_of_the_dequantized_blocks(GgmlType type)
    {
        int cols = 1024, rows = 6;
        byte[] w = QuantizedWeights(type, rows, cols, 9);
        float[] x = Activations(1, cols, 10);
        GgmlType vt = VecDotReference.VecDotType(type);
        byte[] a = VecDotReference.QuantizeActivations(vt, x);
        var ya = new float[cols];
        int block = GgmlTypeInfo.BlockSize(vt), size = GgmlTypeInfo.TypeSize(vt);
        // Q8_1 carries s = F16(d·Σq); ggml multiplies the weights' min by that rounded s, not by d·Σq.
        var sRounding = new double[cols / 32];
        for (int b = 0; b < cols / block; b++)
        {
            float d = vt == GgmlType.Q8_K ? BitConverter.ToSingle(a, b * size) : (float)BitConverter.UInt16BitsToHalf(BitConverter.ToUInt16(a, b * size));
            int qs = vt switch { GgmlType.Q8_K => 4, GgmlType.Q8_1 => 4, _ => 2 };
            int sum = 0;
            for (int j = 0; j < block; j++)
            {
                ya[b * block + j] = d * (sbyte)a[b * size + qs + j];
                sum += (sbyte)a[b * size + qs + j];
            }
            if (vt == GgmlType.Q8_1) sRounding[b] = (double)(float)BitConverter.UInt16BitsToHalf(BitConverter.ToUInt16(a, b * size + 2)) - (double)d * sum;
        }
        var wf = new float[rows * cols];
        BlockQuantizer.Dequantize(type, w, rows, cols, wf);
        int rowBytes = BlockQuantizer.RowSize(type, cols);
        for (int r = 0; r < rows; r++)
        {
            double exact = 0, magnitude = 0;
            for (int j = 0; j < cols; j++)
            {
                exact += (double)wf[r * cols + j] * ya[j];
                magnitude += Math.Abs((double)wf[r * cols + j] * ya[j]);
            }
            if (vt == GgmlType.Q8_1)
            {
                for (int b = 0; b < cols / 32; b++)
                {
                    double m = (float)BitConverter.UInt16BitsToHalf(BitConverter.ToUInt16(w, r * rowBytes + b * GgmlTypeInfo.TypeSize(type) + 2));
                    exact += m * sRounding[b];
                }
            }
            float dot = VecDotReference.Dot(type, w.AsSpan(r * rowBytes, rowBytes), a, cols);
            Assert.True(Math.Abs(dot - exact) <= 1e-5 * magnitude + 1e-30, $"{type} row {r}: reference {dot:R}, exact {exact:R} (Σ|terms| {magnitude:R})");
        }
    }
}
