using ModelSmith.Models;
using ModelSmith.Training;
using Xunit.Abstractions;

namespace ModelSmith.Tests.Training;

public class ModelGradientTests(ITestOutputHelper output)
{
    /// <summary>Odd widths, GQA ratio 2, partial RoPE, tied and untied output.</summary>
    public static ModelConfig SmallLlama(bool tied = false, int ropeDims = 6) => new()
    {
        Architecture = ModelArchitecture.Llama,
        VocabSize = 29,
        ContextLength = 8,
        EmbeddingLength = 13,
        BlockCount = 2,
        FeedForwardLength = 17,
        HeadCount = 4,
        KvHeadCount = 2,
        HeadDim = 6,
        NormEpsilon = 1e-5f,
        RopeFreqBase = 10000f,
        RopeDims = ropeDims,
        TiedOutput = tied,
    };

    /// <summary>Odd widths (C = 3 heads × 5), tied or untied output.</summary>
    public static ModelConfig SmallGpt2(bool tied = false, int kvHeads = 3) => new()
    {
        Architecture = ModelArchitecture.Gpt2,
        VocabSize = 31,
        ContextLength = 8,
        EmbeddingLength = 15,
        BlockCount = 2,
        FeedForwardLength = 19,
        HeadCount = 3,
        KvHeadCount = kvHeads,
        HeadDim = 5,
        NormEpsilon = 1e-5f,
        TiedOutput = tied,
    };

    public static TheoryData<string> Models => new() { "llama", "llama-tied-partial-rope", "gpt2", "gpt2-tied-gqa" };

    internal static ModelConfig Named(string name) => name switch
    {
        "llama" => SmallLlama(),
        "llama-tied-partial-rope" => SmallLlama(tied: true, ropeDims: 4),
        "gpt2" => SmallGpt2(),
        "gpt2-tied-gqa" => SmallGpt2(tied: true, kvHeads: 1),
        _ => throw new ArgumentException(name),
    };

    /// <summary>
    /// Parameters large enough that attention is far from uniform and every nonlinearity is exercised:
    /// matrices N(0, 0.35²), norm scales 1 ± 0.3, biases ±0.2.
    /// </summary>
    internal static void Randomize(ModelParameters p, ulong seed)
    {
        p.Initialize(seed, std: 0.35f);
        var rng = new TrainingRandom(seed + 1);
        foreach (ParameterTensor t in p.Layout.Tensors)
        {
            Span<float> v = p[t];
            if (t.Kind == ParameterKind.Norm) for (int i = 0; i < v.Length; i++) v[i] = 1f + 0.3f * (2 * rng.NextSingle() - 1);
            if (t.Kind == ParameterKind.Bias) rng.FillUniform(v, 0.2f);
        }
    }

    internal static (int[] Tokens, int[] Targets, bool[] Mask) Batch(ModelConfig config, int batch, int seqLen, int seed)
    {
        var rng = new Random(seed);
        int n = batch * seqLen;
        var tokens = new int[n];
        var targets = new int[n];
        var mask = new bool[n];
        for (int i = 0; i < n; i++)
        {
            tokens[i] = rng.Next(config.VocabSize);
            targets[i] = rng.Next(config.VocabSize);
            mask[i] = i % 3 != 1;
        }
        // A repeated token, so the embedding gradient's scatter-add meets itself.
        tokens[n - 1] = tokens[0];
        return (tokens, targets, mask);
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void Forward_loss_matches_the_double_precision_model(string name)
    {
        ModelConfig config = Named(name);
        using var model = new TrainingModel(config, maxBatch: 2, maxSeqLen: 6, threads: 2);
        Randomize(model.Parameters, 3);
        (int[] tokens, int[] targets, bool[] mask) = Batch(config, 2, 6, 4);
        float loss = model.Forward(tokens, targets, 2, 6, mask);
        double expected = DoubleReference.Loss(model.Layout, ToDouble(model.Parameters.Values), tokens, targets, mask, 2, 6);
        output.WriteLine($"{name}: loss {loss} vs double {expected}");
        Assert.True(Math.Abs(loss - expected) < 2e-6 * Math.Max(1, expected), $"loss {loss}, double reference {expected}");

        double[] logits = DoubleReference.Logits(model.Layout, ToDouble(model.Parameters.Values), tokens, 2, 6);
        ReadOnlySpan<float> got = model.Logits;
        double maxAbs = 0, maxDiff = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            maxAbs = Math.Max(maxAbs, Math.Abs(logits[i]));
            maxDiff = Math.Max(maxDiff, Math.Abs(got[i] - logits[i]));
        }
        Assert.True(maxDiff < 1e-5 * maxAbs, $"logits differ by {maxDiff} (max |logit| {maxAbs})");
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void Every_parameter_gradient_matches_central_differences_of_the_double_model(string name)
    {
        ModelConfig config = Named(name);
        const int batch = 2, seqLen = 5;
        using var model = new TrainingModel(config, batch, seqLen, threads: 2);
        Randomize(model.Parameters, 11);
        (int[] tokens, int[] targets, bool[] mask) = Batch(config, batch, seqLen, 12);
        model.Forward(tokens, targets, batch, seqLen, mask);
        model.Gradients.Clear();
        model.Backward();

        double[] p = ToDouble(model.Parameters.Values);
        double worst = 0;
        foreach (ParameterTensor t in model.Layout.Tensors)
        {
            ReadOnlySpan<float> analytic = model.Gradients[t];
            var numeric = new double[t.Length];
            double scale = 0;
            for (int i = 0; i < t.Length; i++)
            {
                int at = t.Offset + i;
                double keep = p[at], h = 1e-5;
                p[at] = keep + h;
                double up = DoubleReference.Loss(model.Layout, p, tokens, targets, mask, batch, seqLen);
                p[at] = keep - h;
                double down = DoubleReference.Loss(model.Layout, p, tokens, targets, mask, batch, seqLen);
                p[at] = keep;
                numeric[i] = (up - down) / (2 * h);
                scale = Math.Max(scale, Math.Abs(numeric[i]));
            }
            double err = 0;
            for (int i = 0; i < t.Length; i++) err = Math.Max(err, Math.Abs(analytic[i] - numeric[i]));
            double relative = err / Math.Max(scale, 1e-12);
            worst = Math.Max(worst, relative);
            output.WriteLine($"{t.Name,-24} max |g| {scale:E2}  max error {err:E2}  relative {relative:E2}");
            Assert.True(scale > 0, $"{t.Name}: the gradient is identically zero; the check would prove nothing.");
            Assert.True(err <= 1e-4 * scale + 1e-7, $"{t.Name}: analytic gradient differs from central differences by {err:E3} (max |g| {scale:E3})");
        }
        output.WriteLine($"worst relative error {worst:E2}");
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void Loss_and_gradients_are_bit_identical_for_one_two_and_three_threads(string name)
    {
        ModelConfig config = Named(name);
        float[]? grads = null;
        float loss0 = 0;
        foreach (int threads in new[] { 1, 2, 3 })
        {
            using var model = new TrainingModel(config, 3, 7, threads);
            Randomize(model.Parameters, 5);
            (int[] tokens, int[] targets, bool[] mask) = Batch(config, 3, 7, 6);
            float loss = model.Forward(tokens, targets, 3, 7, mask);
            model.Gradients.Clear();
            model.Backward();
            if (grads == null)
            {
                grads = model.Gradients.Values.ToArray();
                loss0 = loss;
            }
            else
            {
                Assert.Equal(loss0, loss);
                Assert.True(grads.AsSpan().SequenceEqual(model.Gradients.Values), $"gradients differ at {threads} threads");
            }
        }
    }

    [Fact]
    public void Gradients_of_micro_batches_add_up_to_the_gradient_of_the_whole_batch()
    {
        ModelConfig config = SmallLlama();
        using var model = new TrainingModel(config, 4, 5, threads: 2);
        Randomize(model.Parameters, 21);
        (int[] tokens, int[] targets, bool[] mask) = Batch(config, 4, 5, 22);
        model.Forward(tokens, targets, 4, 5, mask);
        int total = model.CountedTokens;
        model.Gradients.Clear();
        model.Backward();
        float[] whole = model.Gradients.Values.ToArray();

        model.Gradients.Clear();
        for (int m = 0; m < 2; m++)
        {
            model.Forward(tokens.AsSpan(m * 10, 10), targets.AsSpan(m * 10, 10), 2, 5, mask.AsSpan(m * 10, 10));
            model.Backward(1f / total);
        }
        ReadOnlySpan<float> accumulated = model.Gradients.Values;
        float scale = 0;
        foreach (float g in whole) scale = Math.Max(scale, Math.Abs(g));
        for (int i = 0; i < whole.Length; i++) Assert.True(Math.Abs(whole[i] - accumulated[i]) <= 1e-5f * scale, $"gradient {i}: {accumulated[i]} vs {whole[i]}");
    }

    internal static double[] ToDouble(ReadOnlySpan<float> x)
    {
        var d = new double[x.Length];
        for (int i = 0; i < x.Length; i++) d[i] = x[i];
        return d;
    }
}
