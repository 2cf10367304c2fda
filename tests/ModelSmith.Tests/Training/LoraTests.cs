using ModelSmith.Models;
using ModelSmith.Tensors;
using ModelSmith.Training;
using Xunit.Abstractions;

namespace ModelSmith.Tests.Training;

public unsafe class LoraTests(ITestOutputHelper output)
{
    public static TheoryData<string, bool> Cases => new() { { "llama", false }, { "llama", true }, { "gpt2", false } };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Adapter_gradients_match_central_differences_of_the_merged_double_model(string name, bool rsLora)
    {
        ModelConfig config = ModelGradientTests.Named(name);
        const int batch = 2, seqLen = 5;
        using var model = new TrainingModel(config, batch, seqLen, threads: 2);
        ModelGradientTests.Randomize(model.Parameters, 31);
        LoraAdapter lora = model.AttachLora(new LoraOptions { Rank = 3, Alpha = 5f, RankStabilized = rsLora }, seed: 2);
        // B starts at zero, which would make every A gradient zero; give it values.
        foreach (ParameterTensor t in lora.Layout.Tensors)
            if (t.Kind == ParameterKind.LoraB) new TrainingRandom(4).FillUniform(lora.Parameters[t], 0.3f);
        (int[] tokens, int[] targets, bool[] mask) = ModelGradientTests.Batch(config, batch, seqLen, 32);
        model.Forward(tokens, targets, batch, seqLen, mask);
        model.Gradients.Clear();
        lora.Gradients.Clear();
        model.Backward();
        Assert.True(model.Gradients.Values.IndexOfAnyExcept(0f) < 0, "the base model must stay frozen");

        double[] adapter = ModelGradientTests.ToDouble(lora.Parameters.Values);
        double[] baseline = ModelGradientTests.ToDouble(model.Parameters.Values);
        double[] merged = (double[])baseline.Clone();
        foreach (ParameterTensor t in lora.Layout.Tensors)
            if (t.Kind == ParameterKind.LoraA) Merge(lora.Layout, t.Name[..^".lora_a".Length], baseline, adapter, merged);
        double Loss() => DoubleReference.Loss(model.Layout, merged, tokens, targets, mask, batch, seqLen);
        Assert.Equal(Loss(), model.TokenLosses.ToArray().Sum() / model.CountedTokens, 1e-5);
        foreach (ParameterTensor t in lora.Layout.Tensors)
        {
            string weight = t.Name[..t.Name.LastIndexOf('.')];
            double err = 0, scale = 0;
            for (int i = 0; i < t.Length; i++)
            {
                int at = t.Offset + i;
                double keep = adapter[at], h = 1e-5;
                adapter[at] = keep + h;
                Merge(lora.Layout, weight, baseline, adapter, merged);
                double up = Loss();
                adapter[at] = keep - h;
                Merge(lora.Layout, weight, baseline, adapter, merged);
                double down = Loss();
                adapter[at] = keep;
                Merge(lora.Layout, weight, baseline, adapter, merged);
                double numeric = (up - down) / (2 * h);
                scale = Math.Max(scale, Math.Abs(numeric));
                err = Math.Max(err, Math.Abs(numeric - lora.Gradients[t][i]));
            }
            output.WriteLine($"{t.Name,-32} max |g| {scale:E2} relative error {err / scale:E2}");
            Assert.True(scale > 0 && err <= 1e-4 * scale, $"{t.Name}: error {err:E3}, max |g| {scale:E3}");
        }
    }

    [Fact]
    public void Dropout_on_the_adapter_input_has_the_gradient_of_its_mask()
    {
        const int n = 6, inDim = 13, outDim = 9, rank = 4;
        const float p = 0.3f, scale = 1.7f;
        const ulong key = 12345;
        var rng = new Random(8);
        float[] x = Values(rng, n * inDim), a = Values(rng, rank * inDim), b = Values(rng, outDim * rank), dy = Values(rng, n * outDim);
        var y = new float[n * outDim];
        var xd = new float[n * inDim];
        var hs = new float[n * rank];
        var dx = new float[n * inDim];
        var da = new float[rank * inDim];
        var db = new float[outDim * rank];
        var dh = new float[n * rank];
        var dbT = new float[rank * outDim];
        var dxd = new float[n * inDim];
        using var pool = new ComputePool(2);
        using var buffer = new GemmBuffer();
        fixed (float* px = x, pa = a, pb = b, py = y, pxd = xd, phs = hs, pdy = dy, pdx = dx, pda = da, pdb = db, pdbt = dbT, pdh = dh, pdxd = dxd)
        {
            LoraLinear.Forward(pool, buffer, px, n, inDim, outDim, rank, pa, pb, scale, p, key, pxd, phs, py, outDim);
            LoraLinear.Backward(pool, buffer, pdy, outDim, px, pxd, phs, n, inDim, outDim, rank, pa, pb, scale, p, key, pdx, pda, pdb, pdbt, pdh, pdxd);
        }
        int kept = 0;
        for (int i = 0; i < n * inDim; i++) kept += LoraLinear.Keep(key, i, p) ? 1 : 0;
        Assert.InRange(kept, n * inDim / 2, n * inDim - 5);

        // y = s·((x ⊙ m/(1 − p))·Aᵀ)·Bᵀ in double, differentiated numerically.
        double F(double[] xx, double[] aa, double[] bb)
        {
            var xm = new double[n * inDim];
            for (int i = 0; i < xm.Length; i++) xm[i] = LoraLinear.Keep(key, i, p) ? xx[i] / (1 - p) : 0;
            double[] h = DoubleReference.Linear(xm, aa, [], n, inDim, rank);
            double[] yy = DoubleReference.Linear(h, bb, [], n, rank, outDim);
            double sum = 0;
            for (int i = 0; i < yy.Length; i++) sum += scale * yy[i] * dy[i];
            return sum;
        }
        double[] dX = ModelGradientTests.ToDouble(x), dA = ModelGradientTests.ToDouble(a), dB = ModelGradientTests.ToDouble(b);
        AssertGradient("dx", dx, v => F(v, dA, dB), dX);
        AssertGradient("dA", da, v => F(dX, v, dB), dA);
        AssertGradient("dB", db, v => F(dX, dA, v), dB);
    }

    [Fact]
    public void Attached_adapters_start_as_the_identity_and_merging_reproduces_the_adapted_model()
    {
        ModelConfig config = ModelGradientTests.SmallLlama();
        using var model = new TrainingModel(config, 2, 6, threads: 2);
        model.Parameters.Initialize(3, std: 0.2f);
        (int[] tokens, _, _) = ModelGradientTests.Batch(config, 2, 6, 4);
        model.Forward(tokens, 2, 6);
        float[] before = model.Logits.ToArray();

        LoraAdapter lora = model.AttachLora(new LoraOptions { Rank = 4, Alpha = 8, Modules = ["attn_q", "attn_v", "ffn_down"] }, seed: 9);
        Assert.Equal(2 * 3 * 2, lora.Layout.Tensors.Count);
        Assert.Equal([13L, 4L], lora.Layout.Find("blk.1.attn_q.weight.lora_a")!.GgufShape);
        Assert.Equal([4L, 24L], lora.Layout.Find("blk.1.attn_q.weight.lora_b")!.GgufShape);
        model.Forward(tokens, 2, 6);
        Assert.Equal(before, model.Logits.ToArray());

        foreach (ParameterTensor t in lora.Layout.Tensors)
            if (t.Kind == ParameterKind.LoraB) new TrainingRandom(5).FillUniform(lora.Parameters[t], 0.2f);
        model.Forward(tokens, 2, 6);
        float[] adapted = model.Logits.ToArray();
        Assert.NotEqual(before, adapted);

        lora.Parameters.MergeInto(model.Parameters);
        model.DetachLora();
        model.Forward(tokens, 2, 6);
        ReadOnlySpan<float> merged = model.Logits;
        for (int i = 0; i < adapted.Length; i++) Assert.Equal(adapted[i], merged[i], 2e-5f);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_GGUF_adapter_round_trips_with_the_same_scale_and_merge(bool rsLora)
    {
        ModelConfig config = ModelGradientTests.SmallLlama();
        var layout = new ParameterLayout(config);
        var lora = new LoraParameters(new LoraLayout(layout, new LoraOptions { Rank = 3, Alpha = 6, RankStabilized = rsLora, Modules = ["attn_v", "ffn_up"] }));
        lora.Initialize(1);
        new TrainingRandom(2).FillUniform(lora.Values, 0.5f);
        using var dir = new TempDirectory();
        TrainingGguf.ExportAdapter(lora, dir.File("adapter.gguf"));
        using var file = ModelSmith.Formats.GgufFile.Open(dir.File("adapter.gguf"));
        Assert.Equal("adapter", file.GetString("general.type"));
        Assert.Equal([13L, 3L], file.RequireTensor("blk.0.attn_v.weight.lora_a").Shape);
        Assert.Equal([3L, 12L], file.RequireTensor("blk.0.attn_v.weight.lora_b").Shape);
        LoraParameters back = TrainingGguf.ImportAdapter(file, layout);
        Assert.Equal(lora.Layout.Options.Scale, back.Layout.Options.Scale, 1e-6f);
        Assert.True(lora.Values.SequenceEqual(back.Values));

        var a = new ModelParameters(layout);
        var b = new ModelParameters(layout);
        a.Initialize(5);
        b.CopyFrom(a);
        lora.MergeInto(a);
        back.MergeInto(b);
        for (int i = 0; i < a.Values.Length; i++) Assert.Equal(a.Values[i], b.Values[i], 1e-6f);
    }

    [Fact]
    public void Rank_stabilised_scaling_divides_alpha_by_the_root_of_the_rank()
    {
        Assert.Equal(2f, new LoraOptions { Rank = 8, Alpha = 16 }.Scale);
        Assert.Equal(16f / MathF.Sqrt(8), new LoraOptions { Rank = 8, Alpha = 16, RankStabilized = true }.Scale);
        Assert.NotNull(new LoraOptions { Modules = ["attn_qkv"] }.Validate(ModelArchitecture.Llama));
        Assert.NotNull(new LoraOptions { Dropout = 1f }.Validate(ModelArchitecture.Llama));
        Assert.Null(new LoraOptions { Modules = ["attn_qkv"] }.Validate(ModelArchitecture.Gpt2));
    }

    [Fact]
    public void Lora_training_with_dropout_learns_is_reproducible_and_leaves_the_base_untouched()
    {
        float[] first = Train(threads: 2, out float[] baseAfter, out float[] baseBefore);
        float[] second = Train(threads: 1, out _, out _);
        Assert.Equal(first, second);
        Assert.True(first[^1] < 0.7f * first[0], $"loss went from {first[0]} to {first[^1]}");
        Assert.Equal(baseBefore, baseAfter);
    }

    private static float[] Train(int threads, out float[] baseAfter, out float[] baseBefore)
    {
        ModelConfig config = ModelGradientTests.SmallGpt2();
        using var model = new TrainingModel(config, 2, 6, threads);
        model.Parameters.Initialize(7, std: 0.1f);
        baseBefore = model.Parameters.Values.ToArray();
        model.AttachLora(new LoraOptions { Rank = 4, Alpha = 8, Dropout = 0.1f }, seed: 3);
        var trainer = new Trainer(model, new AdamWOptions { WeightDecay = 0 }, new LearningRateSchedule { Peak = 3e-2f, WarmupSteps = 2, TotalSteps = 40 });
        var rng = new Random(1);
        var seq = new int[7];
        for (int i = 0; i < 7; i++) seq[i] = rng.Next(config.VocabSize);
        var tokens = new int[12];
        var targets = new int[12];
        for (int i = 0; i < 12; i++)
        {
            tokens[i] = seq[i % 6];
            targets[i] = seq[i % 6 + 1];
        }
        var losses = new float[40];
        for (int s = 0; s < 40; s++) losses[s] = trainer.Step([new TokenBatch(tokens, targets, 2, 6)]).Loss;
        baseAfter = model.Parameters.Values.ToArray();
        return losses;
    }

    /// <summary>merged[weight] = model[weight] + s·B·A, in double.</summary>
    private static void Merge(LoraLayout layout, string weight, double[] model, double[] adapter, double[] merged)
    {
        double s = layout.Options.Scale;
        int r = layout.Options.Rank;
        ParameterTensor a = layout.Find(weight + ".lora_a")!, b = layout.Find(weight + ".lora_b")!;
        ParameterTensor w = layout.Model.Find(weight)!;
        for (int o = 0; o < w.Rows; o++)
            for (int i = 0; i < w.Cols; i++)
            {
                double d = 0;
                for (int k = 0; k < r; k++) d += adapter[b.Offset + o * r + k] * adapter[a.Offset + k * w.Cols + i];
                merged[w.Offset + o * w.Cols + i] = model[w.Offset + o * w.Cols + i] + s * d;
            }
    }

    private void AssertGradient(string what, float[] analytic, Func<double[], double> f, double[] x)
    {
        double err = 0, scale = 0;
        for (int i = 0; i < x.Length; i++)
        {
            double keep = x[i], h = 1e-5;
            x[i] = keep + h;
            double up = f(x);
            x[i] = keep - h;
            double down = f(x);
            x[i] = keep;
            double numeric = (up - down) / (2 * h);
            scale = Math.Max(scale, Math.Abs(numeric));
            err = Math.Max(err, Math.Abs(numeric - analytic[i]));
        }
        output.WriteLine($"{what}: relative error {err / scale:E2}");
        Assert.True(scale > 0 && err <= 2e-5 * scale, $"{what}: error {err:E3}, max |g| {scale:E3}");
    }

    private static float[] Values(Random rng, int n)
    {
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float)(rng.NextDouble() * 2 - 1);
        return v;
    }
}
