using ModelSmith.Evaluation;
using ModelSmith.Formats;
using ModelSmith.Models;
using ModelSmith.Tokenization;

namespace ModelSmith.Tests.Evaluation;

public class MultipleChoiceTests
{
    /// <summary>
    /// The lowercase letters ordered from most to least likely after <paramref name="context"/> + " ", by the
    /// logits of their byte tokens, with the engine run directly, not through the scorer.
    /// </summary>
    private static char[] LettersByLikelihood(LanguageModel model, Tokenizer tokenizer, string context)
    {
        var logits = new float[model.Config.VocabSize];
        int[] prefix = tokenizer.Encode(context + " ", addSpecial: true);
        model.Forward(prefix, model.CreateCache(prefix.Length), logits);
        char[] letters = "abcdefghijklmnopqrstuvwxyz".ToCharArray();
        return [.. letters.OrderByDescending(ch => logits[ByteToken(tokenizer, ch)])];
    }

    private static int ByteToken(Tokenizer tokenizer, char ch) =>
        tokenizer.TryGetTokenId($"<0x{(int)ch:X2}>", out int id) ? id : throw new InvalidOperationException($"no byte token for '{ch}'");

    [Fact]
    public void The_choice_the_model_finds_likeliest_is_chosen()
    {
        // stories260K's vocabulary in this repository is llama2.c's placeholder one, so text is spelled in byte
        // tokens: " x" after a context is the same space tokens then x's byte token, and the choices differ only
        // in the probability of that last token, which the logits give directly.
        using LanguageModel model = LanguageModel.Load(RepoPaths.Stories260K, threads: 1);
        Tokenizer tokenizer = GgufTokenizer.Load(model.File!);
        var items = new List<MultipleChoiceItem>();
        string[] contexts = ["Once upon a time", "The little dog was", "She said", "Tom and Lily went to"];
        for (int i = 0; i < contexts.Length; i++)
        {
            char[] ranked = LettersByLikelihood(model, tokenizer, contexts[i]);
            var choices = new List<string> { ranked[^1].ToString(), ranked[5].ToString(), ranked[12].ToString() };
            choices.Insert(i % 4, ranked[0].ToString());
            items.Add(new MultipleChoiceItem(contexts[i], choices, i % 4));
        }

        MultipleChoiceResult result = MultipleChoice.Evaluate(model, tokenizer, items);

        Assert.Equal(1.0, result.Accuracy);
        Assert.Equal(0.0, result.AccuracyError);
        Assert.Equal(1.0, result.NormalizedAccuracy);
        Assert.Equal(0.25, result.RandomChance, 1e-12);
        Assert.All(result.Items, r => Assert.Equal(r.Answer, r.Prediction));
    }

    [Fact]
    public void Log_likelihoods_equal_a_full_forward_pass_over_context_and_continuation()
    {
        using LanguageModel model = LanguageModel.Load(RepoPaths.Stories260K, threads: 1);
        Tokenizer tokenizer = GgufTokenizer.Load(model.File!);
        var item = new MultipleChoiceItem("The cat sat on the ", ["mat and slept", "dog", "big red ball."], 0);

        MultipleChoiceItemResult result = MultipleChoice.Evaluate(model, tokenizer, [item]).Items[0];

        int v = model.Config.VocabSize;
        for (int c = 0; c < item.Choices.Count; c++)
        {
            // The harness: the context's trailing space moves to the continuation; the continuation's tokens are the tail.
            int[] context = tokenizer.Encode("The cat sat on the", addSpecial: true);
            int[] whole = tokenizer.Encode("The cat sat on the  " + item.Choices[c], addSpecial: true);
            int[] continuation = whole[context.Length..];
            int[] input = [.. context, .. continuation[..^1]];
            var logits = new float[input.Length * v];
            model.Forward(input, model.CreateCache(input.Length), logits, allLogits: true);
            double expected = 0;
            for (int k = 0; k < continuation.Length; k++)
            {
                ReadOnlySpan<float> row = logits.AsSpan((context.Length - 1 + k) * v, v);
                double max = double.NegativeInfinity;
                foreach (float x in row) max = Math.Max(max, x);
                double z = 0;
                foreach (float x in row) z += Math.Exp(x - max);
                expected += row[continuation[k]] - max - Math.Log(z);
            }
            Assert.Equal(expected, result.LogLikelihoods[c], 1e-4);
        }
        int norm = 0;
        for (int c = 1; c < 3; c++)
            if (result.LogLikelihoods[c] / item.Choices[c].Length > result.LogLikelihoods[norm] / item.Choices[norm].Length) norm = c;
        Assert.Equal(norm, result.NormalizedPrediction);
        Assert.Equal(Array.IndexOf(result.LogLikelihoods, result.LogLikelihoods.Max()), result.Prediction);
    }

    [Fact]
    public void Acc_norm_divides_by_the_length_in_characters_and_can_disagree_with_acc()
    {
        // The long ending has the lower total log-likelihood (-484 against -33) but the higher one per character (-9.7 against -16.6).
        using LanguageModel model = LanguageModel.Load(RepoPaths.Stories260K, threads: 1);
        Tokenizer tokenizer = GgufTokenizer.Load(model.File!);
        var item = new MultipleChoiceItem("Once upon a time, there was a little girl named Lily. She", ["loved to play outside in the sun with her friends.", "zq"], 0);

        MultipleChoiceItemResult r = MultipleChoice.Evaluate(model, tokenizer, [item]).Items[0];

        Assert.True(r.LogLikelihoods[0] < r.LogLikelihoods[1]);
        Assert.True(r.LogLikelihoods[0] / 50 > r.LogLikelihoods[1] / 2);
        Assert.Equal(1, r.Prediction);
        Assert.Equal(0, r.NormalizedPrediction);
    }

    [Fact]
    public void Characters_are_counted_as_code_points()
    {
        Assert.Equal(3, MultipleChoice.CharacterLength("abc"));
        Assert.Equal(2, MultipleChoice.CharacterLength("é🎉"));
    }

    [Fact]
    public void Encoding_moves_the_context_trailing_space_into_the_continuation()
    {
        using LanguageModel model = LanguageModel.Load(RepoPaths.Stories260K, threads: 1);
        Tokenizer tokenizer = GgufTokenizer.Load(model.File!);

        var (context, continuation) = MultipleChoice.EncodePair(tokenizer, "Hello ", " world");

        Assert.Equal(tokenizer.Encode("Hello", addSpecial: true), context);
        Assert.Equal(tokenizer.Encode("Hello  world", addSpecial: true)[context.Length..], continuation);
    }

    [Fact]
    public void An_empty_context_is_the_bos_token_alone()
    {
        using LanguageModel model = LanguageModel.Load(RepoPaths.Stories260K, threads: 1);
        Tokenizer tokenizer = GgufTokenizer.Load(model.File!);

        var (context, continuation) = MultipleChoice.EncodePair(tokenizer, "", " cat");

        Assert.Equal([tokenizer.Bos], context);
        Assert.Equal(tokenizer.Encode(" cat", addSpecial: false), continuation);
    }

    [Fact]
    public void A_task_file_is_read_with_its_line_numbers()
    {
        using var dir = new TempDirectory();
        string path = dir.File("task.jsonl");
        File.WriteAllText(path, "{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"answer\": 1}\n\n{\"context\": \"\", \"choices\": [\"x\", \"y\", \"z\"], \"answer\": 0, \"extra\": true}\n");

        IReadOnlyList<MultipleChoiceItem> items = MultipleChoice.Load(path);

        Assert.Equal(2, items.Count);
        Assert.Equal(1, items[0].Answer);
        Assert.Equal(["b", "c"], items[0].Choices);
        Assert.Equal(3, items[1].Line);
        Assert.Equal("", items[1].Context);
    }

    [Theory]
    [InlineData("not json", "not valid JSON")]
    [InlineData("[1, 2]", "not an object")]
    [InlineData("{\"choices\": [\"a\", \"b\"], \"answer\": 0}", "\"context\"")]
    [InlineData("{\"context\": \"c\", \"answer\": 0}", "\"choices\"")]
    [InlineData("{\"context\": \"c\", \"choices\": [\"a\"], \"answer\": 0}", "at least two")]
    [InlineData("{\"context\": \"c\", \"choices\": [\"a\", 3], \"answer\": 0}", "choice 1")]
    [InlineData("{\"context\": \"c\", \"choices\": [\"a\", \"\"], \"answer\": 0}", "choice 1 is empty")]
    [InlineData("{\"context\": \"c\", \"choices\": [\"a\", \"b\"]}", "\"answer\"")]
    [InlineData("{\"context\": \"c\", \"choices\": [\"a\", \"b\"], \"answer\": 2}", "0..1")]
    [InlineData("{\"context\": \"c\", \"choices\": [\"a\", \"b\"], \"answer\": \"a\"}", "\"answer\"")]
    public void Malformed_records_are_reported_with_file_line_and_reason(string record, string reason)
    {
        using var dir = new TempDirectory();
        string path = dir.File("bad.jsonl");
        File.WriteAllText(path, "{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"answer\": 1}\n" + record + "\n");

        var e = Assert.Throws<ModelFormatException>(() => MultipleChoice.Load(path));

        Assert.Contains(path, e.Message, StringComparison.Ordinal);
        Assert.Contains("line 2", e.Message, StringComparison.Ordinal);
        Assert.Contains(reason, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_empty_task_file_is_refused()
    {
        using var dir = new TempDirectory();
        string path = dir.File("empty.jsonl");
        File.WriteAllText(path, "\n\n");
        var e = Assert.Throws<ModelFormatException>(() => MultipleChoice.Load(path));
        Assert.Contains("no items", e.Message, StringComparison.Ordinal);
    }
}
