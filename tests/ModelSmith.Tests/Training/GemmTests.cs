using ModelSmith.Tensors;
using ModelSmith.Training;

namespace ModelSmith.Tests.Training;

[Trait("Category", "Kernels")]
public unsafe class GemmTests
{
    public static TheoryData<int, int, int, bool, bool> Shapes => new()
    {
        { 1, 1, 1, false, false },
        { 7, 13, 5, false, false },
        { 6, 64, 128, false, false },
        { 50, 130, 300, false, true },
        { 97, 65, 129, true, false },
        { 13, 200, 77, true, true },
        { 130, 9, 260, false, false },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Product_of_strided_operands_matches_the_double_reference(int m, int n, int k, bool transposeA, bool transposeB)
    {
        var rng = new Random(m * 1000 + n * 10 + k);
        float[] a = Random(rng, m * k), b = Random(rng, k * n);
        float[] c = Random(rng, m * (n + 3)), expected = (float[])c.Clone();
        using var pool = new ComputePool(2);
        using var buffer = new GemmBuffer();
        fixed (float* pa = a, pb = b, pc = c, pe = expected)
        {
            Strided sa = transposeA ? Strided.Columns(pa, m) : Strided.Rows(pa, k);
            Strided sb = transposeB ? Strided.Columns(pb, k) : Strided.Rows(pb, n);
            foreach (bool accumulate in new[] { false, true })
            {
                Gemm.Multiply(pool, buffer, sa, sb, m, n, k, pc, n + 3, accumulate);
                Gemm.Reference.Multiply(sa, sb, m, n, k, pe, n + 3, accumulate);
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n + 3; j++)
                    {
                        float e = expected[i * (n + 3) + j], g = c[i * (n + 3) + j];
                        Assert.True(MathF.Abs(e - g) <= 1e-5f * (k + 1) * (1 + MathF.Abs(e)), $"C[{i},{j}] = {g}, expected {e} (accumulate {accumulate})");
                    }
            }
        }
    }

    [Fact]
    public void Every_element_is_one_fused_multiply_add_chain_in_depth_order()
    {
        if (!System.Runtime.Intrinsics.X86.Fma.IsSupported) return;
        const int m = 37, n = 150, k = 300;
        var rng = new Random(5);
        float[] a = Random(rng, m * k), b = Random(rng, k * n), c0 = Random(rng, m * n);
        float[] c = (float[])c0.Clone();
        using var pool = new ComputePool(2);
        using var buffer = new GemmBuffer();
        fixed (float* pa = a, pb = b, pc = c)
            Gemm.Multiply(pool, buffer, Strided.Rows(pa, k), Strided.Rows(pb, n), m, n, k, pc, n, accumulate: true);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                float s = c0[i * n + j];
                for (int kk = 0; kk < k; kk++) s = MathF.FusedMultiplyAdd(a[i * k + kk], b[kk * n + j], s);
                Assert.Equal(s, c[i * n + j]);
            }
    }

    [Fact]
    public void Result_is_bit_identical_for_one_two_and_three_threads()
    {
        const int m = 200, n = 333, k = 257;
        var rng = new Random(9);
        float[] a = Random(rng, m * k), b = Random(rng, k * n);
        float[]? first = null;
        foreach (int threads in new[] { 1, 2, 3 })
        {
            var c = new float[m * n];
            using var pool = new ComputePool(threads);
            using var buffer = new GemmBuffer();
            fixed (float* pa = a, pb = b, pc = c)
                Gemm.Multiply(pool, buffer, Strided.Columns(pa, m), Strided.Rows(pb, n), m, n, k, pc, n, accumulate: false);
            if (first == null) first = c;
            else Assert.Equal(first, c);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(6)]
    [InlineData(70)]
    [InlineData(131)]
    public void Causal_masks_compute_what_attention_needs(int t)
    {
        const int d = 19;
        var rng = new Random(t);
        float* packA = stackalloc float[Gemm.PackedALength];
        float[] q = Random(rng, t * d), key = Random(rng, t * d), p = Random(rng, t * t);
        for (int i = 0; i < t; i++)
            for (int j = i + 1; j < t; j++) p[i * t + j] = 0f; // (T, T) lower triangular, like softmax output
        var packed = new float[Gemm.PackedBLength(Math.Max(t, d), Math.Max(t, d))];
        fixed (float* pq = q, pk = key, pp = p, pb = packed)
        {
            // Scores: S (T, T) = Q · Kᵀ, needed on and below the diagonal.
            var s = new float[t * t];
            var sRef = new float[t * t];
            fixed (float* ps = s, pr = sRef)
            {
                Gemm.PackB(Strided.Columns(pk, d), d, t, 0, Gemm.PanelCount(t), pb);
                Gemm.MultiplyPacked(Strided.Rows(pq, d), pb, t, t, d, ps, t, false, GemmMask.LowerColumns, packA);
                Gemm.Reference.Multiply(Strided.Rows(pq, d), Strided.Columns(pk, d), t, t, d, pr, t, false);
            }
            for (int i = 0; i < t; i++)
                for (int j = 0; j <= i; j++) Assert.Equal(sRef[i * t + j], s[i * t + j], 1e-4f);

            // Output: O (T, D) = P · V with P lower triangular; and dV (T, D) = Pᵀ · dO with Pᵀ upper triangular.
            foreach ((Strided a, GemmMask mask) in new[] { (Strided.Rows(pp, t), GemmMask.LowerDepth), (Strided.Columns(pp, t), GemmMask.UpperDepth) })
            {
                var o = new float[t * d];
                var oRef = new float[t * d];
                fixed (float* po = o, pr = oRef)
                {
                    Gemm.PackB(Strided.Rows(pk, d), t, d, 0, Gemm.PanelCount(d), pb);
                    Gemm.MultiplyPacked(a, pb, t, d, t, po, d, false, mask, packA);
                    Gemm.Reference.Multiply(a, Strided.Rows(pk, d), t, d, t, pr, d, false);
                }
                for (int i = 0; i < t * d; i++) Assert.Equal(oRef[i], o[i], 1e-4f);
            }
        }
    }

    private static float[] Random(Random rng, int n)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        return x;
    }
}
