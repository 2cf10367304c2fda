using ModelSmith.Models;
using ModelSmith.Training;

namespace ModelSmith.Tests.Training;

public class OptimizerTests
{
    [Fact]
    public void Schedule_warms_up_linearly_then_decays_by_cosine_to_the_minimum()
    {
        var s = new LearningRateSchedule { Peak = 1e-3f, Minimum = 1e-4f, WarmupSteps = 4, TotalSteps = 14 };
        Assert.Null(s.Validate());
        Assert.Equal(0.25e-3f, s.At(0), 1e-9f);
        Assert.Equal(1e-3f, s.At(3), 1e-9f);
        Assert.Equal(1e-3f, s.At(4), 1e-9f);
        Assert.Equal(0.55e-3f, s.At(9), 1e-8f); // halfway through the decay
        Assert.Equal(1e-4f, s.At(14), 1e-9f);
        Assert.Equal(1e-4f, s.At(1000), 1e-9f);
        for (int i = 4; i < 14; i++) Assert.True(s.At(i + 1) <= s.At(i));
        Assert.NotNull((s with { Minimum = 2e-3f }).Validate());
        Assert.NotNull((s with { WarmupSteps = 20 }).Validate());
    }

    [Fact]
    public void Update_follows_the_AdamW_formula_with_decay_only_where_it_belongs()
    {
        ModelConfig config = ModelGradientTests.SmallGpt2();
        var layout = new ParameterLayout(config);
        var p = new ModelParameters(layout);
        var g = new ModelGradients(layout);
        ModelGradientTests.Randomize(p, 1);
        var options = new AdamWOptions { Beta1 = 0.8f, Beta2 = 0.9f, Epsilon = 1e-6f, WeightDecay = 0.5f, DecayEmbeddings = false, MaxGradNorm = 0 };
        var adam = new AdamW(layout, options);
        int n = layout.Count;
        double[] theta = ModelGradientTests.ToDouble(p.Values), m = new double[n], v = new double[n];
        var rng = new TrainingRandom(2);
        for (int step = 1; step <= 3; step++)
        {
            rng.FillUniform(g.Values, 0.1f);
            const float lr = 0.01f;
            adam.Update(p, g, lr);
            foreach (ParameterTensor t in layout.Tensors)
            {
                double decay = t.Kind is ParameterKind.Matrix ? 0.5 : 0;
                for (int i = t.Offset; i < t.Offset + t.Length; i++)
                {
                    double gi = g.Values[i];
                    m[i] = 0.8 * m[i] + 0.2 * gi;
                    v[i] = 0.9 * v[i] + 0.1 * gi * gi;
                    double mh = m[i] / (1 - Math.Pow(0.8, step)), vh = v[i] / (1 - Math.Pow(0.9, step));
                    theta[i] -= lr * (mh / (Math.Sqrt(vh) + 1e-6) + decay * theta[i]);
                }
            }
        }
        Assert.Equal(3, adam.Step);
        for (int i = 0; i < n; i++) Assert.True(Math.Abs(p.Values[i] - theta[i]) < 1e-5, $"parameter {i}: {p.Values[i]} vs {theta[i]}");
        Assert.False(adam.Decays(ParameterKind.Norm));
        Assert.False(adam.Decays(ParameterKind.Bias));
        Assert.False(adam.Decays(ParameterKind.TokenEmbedding));
        Assert.True(new AdamW(layout, options with { DecayEmbeddings = true }).Decays(ParameterKind.PositionEmbedding));
    }

    [Fact]
    public void Gradients_above_the_maximum_norm_are_scaled_down_to_it()
    {
        var layout = new ParameterLayout(ModelGradientTests.SmallLlama());
        var p = new ModelParameters(layout);
        var g = new ModelGradients(layout);
        g.Values.Fill(0.5f);
        double norm = 0.5 * Math.Sqrt(layout.Count);
        var adam = new AdamW(layout, new AdamWOptions { MaxGradNorm = 2f, WeightDecay = 0 });
        Assert.Equal(norm, adam.GradientNorm(g), 1e-6 * norm);
        OptimizerStep s = adam.Update(p, g, 1e-3f);
        Assert.Equal(norm, s.GradientNorm, 1e-6 * norm);
        Assert.Equal(2 / norm, s.ClipScale, 1e-6);
        Assert.Equal(0.5f * s.ClipScale * 0.1f, adam.FirstMoments[0], 1e-9f); // m = (1 − β₁)·clipped g
        Assert.Equal(1f, new AdamW(layout, new AdamWOptions { MaxGradNorm = 2f }).Update(p, new ModelGradients(layout), 1e-3f).ClipScale);
    }

    [Fact]
    public void Same_seed_gives_the_same_loss_curve_bit_for_bit_at_any_thread_count()
    {
        float[][] curves = [Curve(threads: 2), Curve(threads: 2), Curve(threads: 1), Curve(threads: 3)];
        foreach (float[] c in curves) Assert.Equal(curves[0], c);
    }

    [Fact]
    public void A_tiny_model_memorises_a_repeated_sequence()
    {
        float[] curve = Curve(threads: 2, steps: 60, repeat: true);
        Assert.True(curve[^1] < 0.3f * curve[0], $"loss went from {curve[0]} to {curve[^1]}");
    }

    [Fact]
    public void Training_resumed_from_saved_parameters_and_optimizer_state_continues_exactly()
    {
        ModelConfig config = ModelGradientTests.SmallLlama();
        var schedule = new LearningRateSchedule { Peak = 3e-3f, Minimum = 3e-4f, WarmupSteps = 2, TotalSteps = 8 };
        var options = new AdamWOptions();
        List<TokenBatch[]> data = Data(config, 8, repeat: false);

        using var model = new TrainingModel(config, 2, 6, threads: 2);
        model.Parameters.Initialize(7, std: 0.1f);
        var trainer = new Trainer(model, options, schedule);
        for (int i = 0; i < 4; i++) trainer.Step(data[i]);
        float[] saved = model.Parameters.Values.ToArray();
        var state = new MemoryStream();
        trainer.Optimizer.SaveState(state);
        var expected = new List<float>();
        for (int i = 4; i < 8; i++) expected.Add(trainer.Step(data[i]).Loss);

        using var resumed = new TrainingModel(config, 2, 6, threads: 1);
        saved.CopyTo(resumed.Parameters.Values);
        var trainer2 = new Trainer(resumed, options, schedule);
        state.Position = 0;
        trainer2.Optimizer.LoadState(state);
        Assert.Equal(4, trainer2.Optimizer.Step);
        var actual = new List<float>();
        for (int i = 4; i < 8; i++) actual.Add(trainer2.Step(data[i]).Loss);
        Assert.Equal(expected, actual);
        Assert.True(model.Parameters.Values.SequenceEqual(resumed.Parameters.Values));
    }

    [Fact]
    public void Loading_optimizer_state_of_another_model_or_a_truncated_stream_fails_clearly()
    {
        var a = new AdamW(new ParameterLayout(ModelGradientTests.SmallLlama()), new AdamWOptions());
        var b = new AdamW(new ParameterLayout(ModelGradientTests.SmallLlama(tied: true)), new AdamWOptions());
        var stream = new MemoryStream();
        a.SaveState(stream);
        stream.Position = 0;
        var e = Assert.Throws<InvalidDataException>(() => b.LoadState(stream));
        Assert.Contains("different model", e.Message);
        byte[] bytes = stream.ToArray();
        e = Assert.Throws<InvalidDataException>(() => a.LoadState(new MemoryStream(bytes[..^10])));
        Assert.Contains("truncated", e.Message);
        e = Assert.Throws<InvalidDataException>(() => a.LoadState(new MemoryStream(new byte[64])));
        Assert.Contains("magic", e.Message);
    }

    [Fact]
    public void A_step_whose_masks_exclude_every_token_is_refused()
    {
        ModelConfig config = ModelGradientTests.SmallLlama();
        using var model = new TrainingModel(config, 1, 4, threads: 1);
        var trainer = new Trainer(model, new AdamWOptions(), new LearningRateSchedule { Peak = 1e-3f, TotalSteps = 10 });
        var batch = new TokenBatch([1, 2, 3, 4], [2, 3, 4, 5], 1, 4, [false, false, false, false]);
        Assert.Throws<ArgumentException>(() => trainer.Step([batch]));
    }

    /// <summary>Losses of a few steps (two micro-batches each) of a small Llama trained from seed 7.</summary>
    private static float[] Curve(int threads, int steps = 6, bool repeat = false)
    {
        ModelConfig config = ModelGradientTests.SmallLlama();
        using var model = new TrainingModel(config, 2, 6, threads);
        model.Parameters.Initialize(7, std: 0.1f);
        var trainer = new Trainer(model, new AdamWOptions { WeightDecay = 0.01f }, new LearningRateSchedule { Peak = 1e-2f, Minimum = 1e-3f, WarmupSteps = 2, TotalSteps = steps });
        List<TokenBatch[]> data = Data(config, steps, repeat);
        var losses = new float[steps];
        for (int i = 0; i < steps; i++) losses[i] = trainer.Step(data[i]).Loss;
        return losses;
    }

    private static List<TokenBatch[]> Data(ModelConfig config, int steps, bool repeat)
    {
        var rng = new Random(3);
        var data = new List<TokenBatch[]>();
        int[] fixedSeq = new int[13];
        for (int i = 0; i < fixedSeq.Length; i++) fixedSeq[i] = rng.Next(config.VocabSize);
        for (int s = 0; s < steps; s++)
        {
            var micro = new TokenBatch[2];
            for (int m = 0; m < 2; m++)
            {
                var tokens = new int[12];
                var targets = new int[12];
                var mask = new bool[12];
                for (int i = 0; i < 12; i++)
                {
                    int p = i % 6;
                    tokens[i] = repeat ? fixedSeq[p] : rng.Next(config.VocabSize);
                    targets[i] = repeat ? fixedSeq[p + 1] : rng.Next(config.VocabSize);
                    mask[i] = repeat || rng.Next(4) != 0;
                }
                micro[m] = new TokenBatch(tokens, targets, 2, 6, mask);
            }
            data.Add(micro);
        }
        return data;
    }
}
