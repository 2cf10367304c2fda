using ModelSmith.Training;

namespace ModelSmith.Tests.Training;

public class TrainingInputTests
{
    [Fact]
    public void Bad_batches_are_refused_with_the_position_and_the_fix()
    {
        using var model = new TrainingModel(ModelGradientTests.SmallLlama(), maxBatch: 2, maxSeqLen: 4, threads: 1);
        int[] ok = [1, 2, 3, 4];
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => model.Forward([1, 2, 29, 4], ok, 1, 4));
        Assert.Contains("position 2", e.Message);
        Assert.Contains("0..28", e.Message);
        e = Assert.Throws<ArgumentOutOfRangeException>(() => model.Forward(ok, [1, 2, -1, 4], 1, 4));
        Assert.Contains("mask it out", e.Message);
        Assert.True(model.Forward(ok, [1, 2, -1, 4], 1, 4, [true, true, false, true]) > 0);
        Assert.Equal(3, model.CountedTokens);
        Assert.Throws<ArgumentException>(() => model.Forward(ok, [1, 2, 3], 1, 4));
        Assert.Throws<ArgumentException>(() => model.Forward(ok, ok, 1, 4, [true, false]));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Forward(new int[15], new int[15], 3, 5));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Forward(new int[10], new int[10], 2, 5));
        Assert.Throws<ArgumentOutOfRangeException>(() => new TrainingModel(ModelGradientTests.SmallLlama(), 1, 9, 1));
    }

    [Fact]
    public void Backward_needs_a_forward_pass_with_targets_and_runs_once()
    {
        using var model = new TrainingModel(ModelGradientTests.SmallGpt2(), 1, 4, threads: 1);
        Assert.Throws<InvalidOperationException>(() => model.Backward());
        model.Forward([1, 2, 3, 4], 1, 4);
        Assert.Throws<InvalidOperationException>(() => model.Backward());
        model.Forward([1, 2, 3, 4], [2, 3, 4, 5], 1, 4);
        model.Backward();
        Assert.Throws<InvalidOperationException>(() => model.Backward());
        Assert.Throws<InvalidOperationException>(() => model.Logits.Length);
    }

    [Fact]
    public void Loader_rows_become_tokens_shifted_targets_and_the_targets_mask()
    {
        int[] rows = [10, 11, 12, 13, 20, 21, 22, 23];
        bool[] mask = [false, true, false, true, false, true, true, false];
        TokenBatch b = TokenBatch.FromRows(rows, mask, 2, 3);
        Assert.Equal([10, 11, 12, 20, 21, 22], b.Tokens);
        Assert.Equal([11, 12, 13, 21, 22, 23], b.Targets);
        Assert.Equal([true, false, true, true, true, false], b.Mask!);
        Assert.Equal(4, b.CountedTokens);
        Assert.Throws<ArgumentException>(() => TokenBatch.FromRows(rows, mask, 2, 4));
    }

    [Fact]
    public void Optimizer_options_and_schedules_are_validated()
    {
        Assert.NotNull(new AdamWOptions { Beta1 = 1f }.Validate());
        Assert.NotNull(new AdamWOptions { Epsilon = 0f }.Validate());
        Assert.NotNull(new AdamWOptions { WeightDecay = -1f }.Validate());
        Assert.NotNull(new LearningRateSchedule { Peak = 0f, TotalSteps = 1 }.Validate());
        Assert.Throws<ArgumentException>(() => new AdamW(new ParameterLayout(ModelGradientTests.SmallLlama()), new AdamWOptions { Beta2 = -0.1f }));
    }
}
