using ModelSmith.Formats;
using ModelSmith.Tensors;
using static ModelSmith.Tests.Tensors.KernelTestData;

namespace ModelSmith.Tests.Tensors;

[Trait("Category", "Kernels")]
public sealed class MatMulTests : IDisposable
{
    private static readonly GgmlType[] Types = [GgmlType.F32, GgmlType.F16, GgmlType.BF16];
    private readonly ComputePool[] _pools = [new(1), new(2), new(3)];

    public void Dispose()
    {
        foreach (ComputePool p in _pools) p.Dispose();
    }

    // |y − y_ref| ≤ 1e-5 · Σ_k |x_k·w_k| (+ |bias|·2^-24): the documented bound.
    private static void AssertWithinBound(float[] x, WeightMatrix w, float[] bias, int tokens, float[] expected, float[] actual, string context)
    {
        var row = new float[w.Cols];
        for (int r = 0; r < w.Rows; r++)
        {
            MatMul.Reference.DequantizeRow(w, r, row);
            for (int t = 0; t < tokens; t++)
            {
                double bound = 0;
                for (int k = 0; k < w.Cols; k++) bound += Math.Abs((double)x[t * w.Cols + k] * row[k]);
                double tol = 1e-5 * bound + (bias.Length > 0 ? Math.Abs(bias[r]) * 1.2e-7 : 0) + 1e-30;
                float e = expected[t * w.Rows + r], a = actual[t * w.Rows + r];
                if (!(Math.Abs(a - e) <= tol))
                    Assert.Fail($"{context}: y[{t},{r}] = {a:R}, reference {e:R}, bound {tol:R}");
            }
        }
    }

    private static float[] Run(ComputePool pool, float[] x, WeightMatrix w, float[] bias, int tokens)
    {
        var y = new float[tokens * w.Rows];
        MatMul.Forward(x, w, bias, tokens, y, pool);
        return y;
    }

    // Runs the tokens of x: (T, K) as one batch and then one at a time, asserts each decoded token has the
    // bits of its row of the batch, and returns the batch's output.
    private static float[] AssertDecodeEqualsBatch(ComputePool pool, float[] x, WeightMatrix w, float[] bias, int tokens, string context)
    {
        float[] batch = Run(pool, x, w, bias, tokens);
        for (int t = 0; t < tokens; t++)
        {
            float[] single = Run(pool, x.AsSpan(t * w.Cols, w.Cols).ToArray(), w, bias, 1);
            AssertBitEqual(batch.AsSpan(t * w.Rows, w.Rows), single, $"{context}, token {t}");
        }
        return batch;
    }

    [Fact]
    public void Matmul_matches_reference_for_odd_shapes_types_and_token_counts()
    {
        int[] rowsSet = [1, 3, 4, 5, 17, 33];
        int[] colsSet = [1, 7, 16, 31, 33, 64, 100, 257];
        int[] tokensSet = [1, 2, 3, 5, 17];
        int seed = 0;
        foreach (GgmlType type in Types)
        foreach (int rows in rowsSet)
        foreach (int cols in colsSet)
        {
            WeightMatrix w = WeightMatrix.FromSingles(Uniform(rows * cols, ++seed), rows, cols, type);
            float[] bias = seed % 2 == 0 ? Uniform(rows, seed + 5000) : [];
            foreach (int tokens in tokensSet)
            {
                float[] x = Uniform(tokens * cols, seed * 31 + tokens);
                var expected = new float[tokens * rows];
                MatMul.Reference.Forward(x, w, bias, tokens, expected);
                float[] actual = Run(_pools[1], x, w, bias, tokens);
                AssertWithinBound(x, w, bias, tokens, expected, actual, $"{type} {rows}x{cols} T={tokens}");
            }
        }
    }

    [Fact]
    public void Matmul_is_bit_identical_for_one_two_and_three_threads()
    {
        foreach (GgmlType type in Types)
        foreach ((int rows, int cols, int tokens) in new[] { (37, 45, 1), (37, 45, 7), (70, 130, 17), (19, 600, 4) })
        {
            WeightMatrix w = WeightMatrix.FromSingles(Uniform(rows * cols, rows + cols), rows, cols, type);
            float[] bias = Uniform(rows, 9);
            float[] x = Uniform(tokens * cols, tokens);
            float[] one = Run(_pools[0], x, w, bias, tokens);
            AssertBitEqual(one, Run(_pools[1], x, w, bias, tokens), $"{type} {rows}x{cols} T={tokens}, 2 threads");
            AssertBitEqual(one, Run(_pools[2], x, w, bias, tokens), $"{type} {rows}x{cols} T={tokens}, 3 threads");
        }
    }

    [Fact]
    public void Decoding_one_token_gives_the_same_bits_as_that_token_in_a_batch()
    {
        foreach (GgmlType type in Types)
        {
            const int rows = 23, cols = 1100, tokens = 9; // K crosses the 512-column passes and leaves a tail
            WeightMatrix w = WeightMatrix.FromSingles(Uniform(rows * cols, 77), rows, cols, type);
            float[] bias = Uniform(rows, 78);
            float[] x = Uniform(tokens * cols, 79);
            float[] batch = AssertDecodeEqualsBatch(_pools[1], x, w, bias, tokens, $"{type}");
            var expected = new float[tokens * rows];
            MatMul.Reference.Forward(x, w, bias, tokens, expected);
            AssertWithinBound(x, w, bias, tokens, expected, batch, $"{type} long rows");
        }
    }

    [Fact]
    public void Decoding_gives_the_bits_of_a_batch_whether_rows_start_on_cache_lines_or_not()
    {
        // F32 decode reads rows that start on 64-byte boundaries one at a time and other rows four at a
        // time; the two kernels must agree with each other and with prefill, for every row count and tail.
        const int tokens = 3;
        foreach ((int rows, int cols) in new[] { (1, 16), (3, 48), (7, 64), (9, 768), (5, 1104), (6, 33) })
        foreach (GgmlType type in Types)
        foreach (int offset in new[] { 0, 32, 4 })
        {
            WeightMatrix inArray = WeightMatrix.FromSingles(Uniform(rows * cols, rows * cols + offset), rows, cols, type);
            using var native = new NativeBytes(inArray.Data.Span, offset);
            var w = new WeightMatrix(type, rows, cols, native.Memory);
            float[] bias = Uniform(rows, 11);
            float[] x = Uniform(tokens * cols, 12);
            AssertDecodeEqualsBatch(_pools[1], x, w, bias, tokens, $"{type} {rows}x{cols}, rows at 64·n + {offset}");
        }
    }

    [Fact]
    public void Matmul_handles_more_tokens_than_one_accumulator_chunk()
    {
        const int rows = 9, cols = 40, tokens = 131;
        WeightMatrix w = WeightMatrix.FromSingles(Uniform(rows * cols, 5), rows, cols, GgmlType.F16);
        float[] x = Uniform(tokens * cols, 6);
        var expected = new float[tokens * rows];
        MatMul.Reference.Forward(x, w, [], tokens, expected);
        AssertWithinBound(x, w, [], tokens, expected, Run(_pools[2], x, w, [], tokens), "131 tokens");
    }

    [Fact]
    public void Matmul_reads_weights_that_are_not_in_an_array()
    {
        const int rows = 13, cols = 70, tokens = 3;
        foreach (GgmlType type in Types)
        {
            WeightMatrix inArray = WeightMatrix.FromSingles(Uniform(rows * cols, 3), rows, cols, type);
            using var native = new NativeBytes(inArray.Data.Span);
            var mapped = new WeightMatrix(type, rows, cols, native.Memory);
            float[] x = Uniform(tokens * cols, 4);
            AssertBitEqual(Run(_pools[1], x, inArray, [], tokens), Run(_pools[1], x, mapped, [], tokens), $"{type} native memory");
            AssertBitEqual(Run(_pools[1], x, inArray, [], 1), Run(_pools[1], x, mapped, [], 1), $"{type} native memory, decode");
        }
    }

    [Fact]
    public void Empty_shapes_produce_bias_or_nothing()
    {
        WeightMatrix w = WeightMatrix.FromSingles([], 3, 0);
        var y = new float[6];
        MatMul.Forward([], w, [1f, 2f, 3f], 2, y, _pools[1]);
        Assert.Equal([1f, 2f, 3f, 1f, 2f, 3f], y);
        MatMul.Forward(new float[10], WeightMatrix.FromSingles([], 0, 5), [], 2, [], _pools[1]);
        MatMul.Forward([], WeightMatrix.FromSingles(new float[10], 2, 5), [], 0, [], _pools[1]);
    }

    [Fact]
    public void Nonfinite_weights_propagate()
    {
        float[] values = Uniform(4 * 20, 8);
        values[25] = float.PositiveInfinity;
        values[62] = float.NaN;
        foreach (GgmlType type in Types)
        {
            WeightMatrix w = WeightMatrix.FromSingles(values, 4, 20, type);
            float[] y = Run(_pools[0], Uniform(20, 9, 0.5f, 1f), w, [], 1);
            Assert.True(float.IsPositiveInfinity(y[1]), $"{type}: row with +inf gives {y[1]}");
            Assert.True(float.IsNaN(y[3]), $"{type}: row with NaN gives {y[3]}");
            Assert.True(float.IsFinite(y[0]) && float.IsFinite(y[2]));
        }
    }

    [Fact]
    public void F16_decode_gives_the_bits_of_the_exact_widening_for_every_length_and_special_weight()
    {
        // Half subnormals and the largest halves in every matrix (the fast widening); infinities of both
        // signs and NaN in every other one (the exact widening), in some group of rows or in the
        // K % lanes tail; x with half subnormals and values near the half range.
        float[] finite = [3e-6f, -5.9604645e-8f, 65504f, -65504f];
        float[] nonfinite = [float.PositiveInfinity, float.NegativeInfinity, float.NaN];
        // A prime row count, so the rows split into work items of unequal size (decode reads F16 rows one
        // at a time, the non-finite matrices four at a time with a leftover row).
        const int rows = 29;
        for (int cols = 0; cols <= 257; cols++)
        {
            float[] values = Uniform(rows * cols, cols + 100);
            float[] x = Uniform(2 * cols, cols + 200);
            if (cols > 0)
            {
                values[(cols * 7) % (rows * cols)] = finite[cols % finite.Length];
                values[(cols * 11 + 2) % (rows * cols)] = finite[(cols + 1) % finite.Length];
                if (cols % 2 == 1) values[(cols * 5 + 3) % (rows * cols)] = nonfinite[cols / 2 % nonfinite.Length];
                x[cols / 2] = cols % 2 == 0 ? 60000f : 1e-7f;
            }
            WeightMatrix w = WeightMatrix.FromSingles(values, rows, cols, GgmlType.F16);
            Assert.Equal(cols % 2 == 0, w.HalvesAreFinite);
            float[] bias = Uniform(rows, cols + 300);
            float[] batch = Run(_pools[0], x, w, bias, 2);
            AssertBitEqual(batch.AsSpan(0, rows), Run(_pools[0], x.AsSpan(0, cols).ToArray(), w, bias, 1), $"F16 decode, {cols} columns");
            AssertBitEqual(batch.AsSpan(rows, rows), Run(_pools[1], x.AsSpan(cols, cols).ToArray(), w, bias, 1), $"F16 decode, {cols} columns, 2 threads");
        }
    }

    [Fact]
    public void Bad_shapes_are_rejected_with_the_sizes_in_the_message()
    {
        WeightMatrix w = WeightMatrix.FromSingles(new float[12], 3, 4);
        var e = Assert.Throws<ArgumentException>(() => MatMul.Forward(new float[7], w, [], 2, new float[6], _pools[0]));
        Assert.Contains("2 tokens x 4 columns", e.Message);
        Assert.Throws<ArgumentException>(() => MatMul.Forward(new float[8], w, [], 2, new float[5], _pools[0]));
        Assert.Throws<ArgumentException>(() => MatMul.Forward(new float[8], w, new float[2], 2, new float[6], _pools[0]));
        var shared = new float[20];
        Assert.Throws<ArgumentException>(() => MatMul.Forward(shared.AsSpan(0, 8), w, [], 2, shared.AsSpan(4, 6), _pools[0]));
    }

    [Fact]
    public void Weight_matrix_checks_its_byte_count_and_type()
    {
        var e = Assert.Throws<ArgumentException>(() => new WeightMatrix(GgmlType.F16, 3, 4, new byte[23]));
        Assert.Contains("24 bytes", e.Message);
        Assert.Throws<NotSupportedException>(() => new WeightMatrix(GgmlType.I32, 1, 8, new byte[32]));
    }

    [Fact]
    public void Dequantize_row_returns_the_stored_values()
    {
        float[] values = Uniform(5 * 33, 12);
        foreach (GgmlType type in Types)
        {
            WeightMatrix w = WeightMatrix.FromSingles(values, 5, 33, type);
            var expected = new float[33];
            var actual = new float[33];
            for (int r = 0; r < 5; r++)
            {
                MatMul.Reference.DequantizeRow(w, r, expected);
                w.DequantizeRow(r, actual);
                AssertBitEqual(expected, actual, $"{type} row {r}");
                if (type == GgmlType.F32) AssertBitEqual(values.AsSpan(r * 33, 33), actual, "F32 row");
                else AssertClose(values.AsSpan(r * 33, 33), actual, type == GgmlType.F16 ? 1e-3f : 8e-3f, 1e-4f, $"{type} row {r}");
            }
        }
    }
}
