using ModelSmith.Tensors;
using ModelSmith.Training;
using Xunit.Abstractions;

namespace ModelSmith.Tests.Training;

/// <summary>
/// Each layer's backward pass against central differences of its definition in double precision
/// (<see cref="DoubleReference"/>): for a random upstream gradient g, the layer's input and parameter
/// gradients must equal ∂(Σ g ⊙ y)/∂input.
/// </summary>
[Trait("Category", "Kernels")]
public unsafe class LayerGradientTests(ITestOutputHelper output)
{
    private const double Tolerance = 2e-5; // of the largest gradient entry

    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 13)]
    [InlineData(5, 40)]
    public void Rms_norm_backward_matches_central_differences(int n, int c)
    {
        var rng = new Random(n * 100 + c);
        float[] x = Values(rng, n * c, 1.5f), w = Values(rng, c, 0.5f, 1f), dy = Values(rng, n * c, 1f);
        var y = new float[n * c];
        var rstd = new float[n];
        var dx = Values(rng, n * c, 1f);
        var dxStart = (float[])dx.Clone();
        var dw = new float[c];
        using var pool = new ComputePool(2);
        fixed (float* px = x, pw = w, py = y, pr = rstd, pdy = dy, pdx = dx, pdw = dw)
        {
            RmsNormLayer.Forward(pool, px, pw, 1e-5f, n, c, py, pr);
            RmsNormLayer.Backward(pool, pdy, px, pw, pr, n, c, pdx, pdw);
        }
        AssertForwardMatches(DoubleReference.RmsNorm(D(x), D(w), 1e-5, n, c), y, 1e-6);
        Func<double[], double[], double> f = (xx, ww) => Dot(dy, DoubleReference.RmsNorm(xx, ww, 1e-5, n, c));
        Check("dx", Subtract(dx, dxStart), v => f(v, D(w)), D(x));
        Check("dw", dw, v => f(D(x), v), D(w));
    }

    [Theory]
    [InlineData(1, 3)]
    [InlineData(4, 15)]
    [InlineData(3, 33)]
    public void Layer_norm_backward_matches_central_differences(int n, int c)
    {
        var rng = new Random(n * 100 + c);
        float[] x = Values(rng, n * c, 1.5f, 0.3f), w = Values(rng, c, 0.5f, 1f), b = Values(rng, c, 0.5f), dy = Values(rng, n * c, 1f);
        var y = new float[n * c];
        var mean = new float[n];
        var rstd = new float[n];
        var dx = new float[n * c];
        var dw = new float[c];
        var db = new float[c];
        using var pool = new ComputePool(2);
        fixed (float* px = x, pw = w, pb = b, py = y, pm = mean, pr = rstd, pdy = dy, pdx = dx, pdw = dw, pdb = db)
        {
            LayerNormLayer.Forward(pool, px, pw, pb, 1e-5f, n, c, py, pm, pr);
            LayerNormLayer.Backward(pool, pdy, px, pw, pm, pr, n, c, pdx, pdw, pdb);
        }
        AssertForwardMatches(DoubleReference.LayerNorm(D(x), D(w), D(b), 1e-5, n, c), y, 1e-6);
        Func<double[], double[], double[], double> f = (xx, ww, bb) => Dot(dy, DoubleReference.LayerNorm(xx, ww, bb, 1e-5, n, c));
        Check("dx", dx, v => f(v, D(w), D(b)), D(x));
        Check("dw", dw, v => f(D(x), v, D(b)), D(w));
        Check("db", db, v => f(D(x), D(w), v), D(b));
    }

    [Theory]
    [InlineData(1, 1, 1, true)]
    [InlineData(7, 13, 5, true)]
    [InlineData(4, 33, 70, false)]
    public void Linear_backward_matches_central_differences(int n, int inDim, int outDim, bool bias)
    {
        var rng = new Random(n + inDim + outDim);
        float[] x = Values(rng, n * inDim, 1f), w = Values(rng, outDim * inDim, 0.5f), b = Values(rng, outDim, 0.5f), dy = Values(rng, n * outDim, 1f);
        float[] residual = Values(rng, n * outDim, 1f);
        var y = new float[n * outDim];
        var dx = new float[n * inDim];
        var dw = new float[outDim * inDim];
        var db = new float[outDim];
        using var pool = new ComputePool(2);
        using var buffer = new GemmBuffer();
        fixed (float* px = x, pw = w, pb = b, py = y, pres = residual, pdy = dy, pdx = dx, pdw = dw, pdb = db)
        {
            Linear.Forward(pool, buffer, px, pw, bias ? pb : null, n, inDim, outDim, py, pres);
            Linear.Backward(pool, buffer, pdy, px, pw, n, inDim, outDim, pdx, false, pdw, bias ? pdb : null);
        }
        double[] expected = DoubleReference.Linear(D(x), D(w), bias ? D(b) : [], n, inDim, outDim);
        for (int i = 0; i < expected.Length; i++) expected[i] += residual[i];
        AssertForwardMatches(expected, y, 1e-6);
        Func<double[], double[], double[], double> f = (xx, ww, bb) => Dot(dy, DoubleReference.Linear(xx, ww, bb, n, inDim, outDim));
        Check("dx", dx, v => f(v, D(w), D(b)), D(x));
        Check("dw", dw, v => f(D(x), v, D(b)), D(w));
        if (bias) Check("db", db, v => f(D(x), D(w), v), D(b));
    }

    [Theory]
    [InlineData(4, 2, 6, 6)]
    [InlineData(2, 1, 8, 4)]
    public void Rope_backward_is_the_gradient_of_the_rotation(int heads, int kvHeads, int d, int dims)
    {
        const int batch = 2, seqLen = 7;
        int n = batch * seqLen, s = (heads + 2 * kvHeads) * d;
        var rng = new Random(heads * d);
        float[] qkv = Values(rng, n * s, 1f), g = Values(rng, n * s, 1f);
        float[] rotated = (float[])qkv.Clone(), dqkv = (float[])g.Clone();
        var table = new RopeTable(dims, 10000f, seqLen, RopeMode.Normal);
        using var pool = new ComputePool(2);
        fixed (float* pq = rotated, pd = dqkv)
        {
            RopeLayer.Forward(pool, pq, n, seqLen, heads, kvHeads, d, table);
            RopeLayer.Backward(pool, pd, n, seqLen, heads, kvHeads, d, table);
        }
        double[] Rotate(double[] v)
        {
            var r = (double[])v.Clone();
            DoubleReference.Rope(r, n, seqLen, heads, kvHeads, d, dims, 10000);
            return r;
        }
        AssertForwardMatches(Rotate(D(qkv)), rotated, 1e-6);
        // Bit for bit what the inference engine's rotation gives.
        for (int t = 0; t < n; t++)
        {
            float[] row = qkv.AsSpan(t * s, s).ToArray();
            Rope.Apply(row.AsSpan(0, (heads + kvHeads) * d), d, t % seqLen, table);
            Assert.True(row.AsSpan().SequenceEqual(rotated.AsSpan(t * s, s)), $"row {t} differs from Rope.Apply");
        }
        Check("dqkv", dqkv, v => Dot(g, Rotate(v)), D(qkv));
    }

    [Theory]
    [InlineData(1, 1, 1, 1, 1)]
    [InlineData(2, 5, 4, 2, 6)]
    [InlineData(1, 9, 3, 1, 5)]
    [InlineData(2, 13, 2, 2, 7)]
    public void Causal_attention_backward_matches_central_differences(int batch, int seqLen, int heads, int kvHeads, int d)
    {
        int n = batch * seqLen, s = (heads + 2 * kvHeads) * d, qDim = heads * d;
        var rng = new Random(batch * 1000 + seqLen * 100 + heads * 10 + d);
        float[] qkv = Values(rng, n * s, 1.2f), dout = Values(rng, n * qDim, 1f);
        var att = new float[batch * heads * seqLen * seqLen];
        var o = new float[n * qDim];
        var dqkv = Values(rng, n * s, 1f); // overwritten
        using var pool = new ComputePool(2);
        fixed (float* pq = qkv, pa = att, po = o, pdo = dout, pd = dqkv)
        {
            CausalAttention.Forward(pool, pq, batch, seqLen, heads, kvHeads, d, pa, po);
            CausalAttention.Backward(pool, pdo, pq, pa, batch, seqLen, heads, kvHeads, d, pd);
        }
        AssertForwardMatches(DoubleReference.Attention(D(qkv), batch, seqLen, heads, kvHeads, d), o, 1e-6);
        Check("dqkv", dqkv, v => Dot(dout, DoubleReference.Attention(v, batch, seqLen, heads, kvHeads, d)), D(qkv));

        // The naive float reference agrees with the blocked kernels.
        var attRef = new float[att.Length];
        var oRef = new float[o.Length];
        var dRef = new float[dqkv.Length];
        CausalAttention.Reference.Forward(qkv, batch, seqLen, heads, kvHeads, d, attRef, oRef);
        CausalAttention.Reference.Backward(dout, qkv, attRef, batch, seqLen, heads, kvHeads, d, dRef);
        AssertForwardMatches(D(oRef), o, 1e-6);
        AssertForwardMatches(D(attRef), att, 1e-6);
        AssertForwardMatches(D(dRef), dqkv, 1e-5);
    }

    [Fact]
    public void SwiGlu_backward_matches_central_differences()
    {
        const int n = 3, f = 17;
        var rng = new Random(1);
        float[] gu = Values(rng, n * 2 * f, 4f), da = Values(rng, n * f, 1f);
        var act = new float[n * f];
        var dgu = new float[n * 2 * f];
        using var pool = new ComputePool(2);
        fixed (float* pg = gu, pa = act, pda = da, pd = dgu)
        {
            SwiGluLayer.Forward(pool, pg, n, f, pa);
            SwiGluLayer.Backward(pool, pda, pg, n, f, pd);
        }
        AssertForwardMatches(DoubleReference.SwiGlu(D(gu), n, f), act, 1e-6);
        Check("dgateup", dgu, v => Dot(da, DoubleReference.SwiGlu(v, n, f)), D(gu));
    }

    [Fact]
    public void Gelu_backward_matches_central_differences()
    {
        const int n = 70001; // more than one chunk
        var rng = new Random(2);
        float[] x = Values(rng, n, 6f), dy = Values(rng, n, 1f);
        var y = new float[n];
        var dx = new float[n];
        using var pool = new ComputePool(2);
        fixed (float* px = x, py = y, pdy = dy, pdx = dx)
        {
            GeluLayer.Forward(pool, px, n, py);
            GeluLayer.Backward(pool, pdy, px, n, pdx);
        }
        double maxErr = 0;
        for (int i = 0; i < n; i++)
        {
            double h = 1e-5, xi = x[i];
            double numeric = dy[i] * (DoubleReference.Gelu(xi + h) - DoubleReference.Gelu(xi - h)) / (2 * h);
            maxErr = Math.Max(maxErr, Math.Abs(numeric - dx[i]));
            Assert.True(Math.Abs(y[i] - DoubleReference.Gelu(xi)) <= 1e-6 * (1 + Math.Abs(xi)), $"gelu({xi}) = {y[i]}");
        }
        output.WriteLine($"gelu: max error {maxErr:E2}");
        Assert.True(maxErr < 2e-6, $"GELU derivative off by {maxErr}");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Cross_entropy_backward_matches_central_differences(bool masked)
    {
        const int n = 6, v = 37;
        var rng = new Random(3);
        float[] logits = Values(rng, n * v, 5f);
        int[] targets = [3, 0, 36, 5, 5, 17];
        bool[] mask = [true, false, true, true, false, true];
        var lse = new float[n];
        var losses = new float[n];
        var grad = (float[])logits.Clone();
        using var pool = new ComputePool(2);
        double sum;
        int count;
        fixed (float* pl = logits, pg = grad, plse = lse, ploss = losses)
        fixed (int* pt = targets)
        fixed (bool* pm = mask)
        {
            (sum, count) = CrossEntropy.Forward(pool, pg, pt, masked ? pm : null, n, v, plse, ploss);
            CrossEntropy.Backward(pool, pg, pt, masked ? pm : null, plse, n, v, 1f / count);
        }
        Assert.Equal(masked ? 4 : 6, count);
        double mean = DoubleReference.CrossEntropy(D(logits), targets, masked ? mask : null, n, v);
        Assert.Equal(mean, sum / count, 1e-6);
        Check("dlogits", grad, z => DoubleReference.CrossEntropy(z, targets, masked ? mask : null, n, v), D(logits));
    }

    // ---- helpers ----

    private void Check(string what, ReadOnlySpan<float> analytic, Func<double[], double> f, double[] x)
    {
        Assert.Equal(x.Length, analytic.Length);
        var numeric = new double[x.Length];
        double scale = 0;
        for (int i = 0; i < x.Length; i++)
        {
            double keep = x[i], h = 1e-5 * Math.Max(1, Math.Abs(keep));
            x[i] = keep + h;
            double up = f(x);
            x[i] = keep - h;
            double down = f(x);
            x[i] = keep;
            numeric[i] = (up - down) / (2 * h);
            scale = Math.Max(scale, Math.Abs(numeric[i]));
        }
        double err = 0;
        for (int i = 0; i < x.Length; i++) err = Math.Max(err, Math.Abs(analytic[i] - numeric[i]));
        output.WriteLine($"{what}: max |g| {scale:E2}, max error {err:E2} ({err / Math.Max(scale, 1e-30):E2} relative)");
        Assert.True(scale > 0, $"{what} is identically zero; the check would prove nothing.");
        Assert.True(err <= Tolerance * scale, $"{what}: analytic gradient differs from central differences by {err:E3} (max |g| {scale:E3})");
    }

    private static void AssertForwardMatches(double[] expected, ReadOnlySpan<float> actual, double relative)
    {
        double scale = 0, err = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            scale = Math.Max(scale, Math.Abs(expected[i]));
            err = Math.Max(err, Math.Abs(expected[i] - actual[i]));
        }
        Assert.True(err <= relative * Math.Max(scale, 1e-30), $"forward differs by {err:E3} (max |y| {scale:E3})");
    }

    private static float[] Values(Random rng, int n, float spread, float center = 0f)
    {
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = center + spread * (float)(2 * rng.NextDouble() - 1);
        return v;
    }

    private static double[] D(ReadOnlySpan<float> x) => ModelGradientTests.ToDouble(x);

    private static double Dot(float[] g, double[] y)
    {
        double s = 0;
        for (int i = 0; i < g.Length; i++) s += g[i] * y[i];
        return s;
    }

    private static float[] Subtract(float[] a, float[] b)
    {
        var r = new float[a.Length];
        for (int i = 0; i < a.Length; i++) r[i] = a[i] - b[i];
        return r;
    }
}
