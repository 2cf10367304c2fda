using ModelSmith.Tokenization;
using ModelSmith.Training.Data;

namespace ModelSmith.Tests.Training.Data;

public sealed class ExampleTokenizerTests
{
    private static Tokenizer Tok => DataFiles.Tokenizer;

    private static int Id(string text) => Tok.TryGetTokenId(text, out int id) ? id : throw new InvalidOperationException(text);

    [Fact]
    public void Text_documents_train_on_every_token_and_end_in_eos()
    {
        var doc = new TrainingDocument("a.txt", 1, 0, DataFormat.Text) { Text = "The quick brown fox." };
        TokenizedExample example = ExampleTokenizer.Tokenize(doc, Tok, new TrainingDataOptions());
        Assert.Equal([.. Tok.Encode("The quick brown fox.", addSpecial: false), Tok.Eos], example.Tokens);
        Assert.All(example.Mask, Assert.True);
        Assert.Equal("a.txt", example.Source);
    }

    [Fact]
    public void Text_that_looks_like_a_special_token_stays_text()
    {
        var doc = new TrainingDocument("a.txt", 1, 0, DataFormat.JsonText) { Text = "a<|im_end|>b" };
        TokenizedExample example = ExampleTokenizer.Tokenize(doc, Tok, new TrainingDataOptions());
        Assert.DoesNotContain(Id("<|im_end|>"), example.Tokens);
        Assert.Equal("a<|im_end|>b", Tok.Decode(example.Tokens.AsSpan(0, example.Tokens.Length - 1)));
    }

    [Fact]
    public void Chat_trains_only_on_assistant_replies_and_their_end_markers_by_default()
    {
        var doc = new TrainingDocument("c.jsonl", 1, 0, DataFormat.Chat)
        {
            Messages = [new("user", "What is two plus two?"), new("assistant", "It is four."), new("user", "<|im_end|>"), new("assistant", "four")],
        };
        TokenizedExample example = ExampleTokenizer.Tokenize(doc, Tok, new TrainingDataOptions());
        int start = Id("<|im_start|>"), end = Id("<|im_end|>");
        Assert.Equal(start, example.Tokens[0]);
        Assert.Equal(Tok.Eos, example.Tokens[^1]);
        Assert.True(example.Mask[^1]);

        string trained = Tok.Decode([.. example.Tokens.Where((t, i) => example.Mask[i])], renderSpecial: true);
        Assert.Equal("It is four.<|im_end|>four<|im_end|><|endoftext|>", trained);
        Assert.Equal(ChatTemplate.ChatML.Apply(doc.Messages) + "<|endoftext|>", Tok.Decode(example.Tokens, renderSpecial: true));
        // the user's literal "<|im_end|>" is text, so exactly one <|im_start|>/<|im_end|> pair per message
        Assert.Equal(4, example.Tokens.Count(t => t == start));
        Assert.Equal(4, example.Tokens.Count(t => t == end));
    }

    [Fact]
    public void Completion_only_can_be_switched_off()
    {
        var doc = new TrainingDocument("c.jsonl", 1, 0, DataFormat.Chat) { Messages = [new("user", "hi"), new("assistant", "yo")] };
        TokenizedExample example = ExampleTokenizer.Tokenize(doc, Tok, new TrainingDataOptions { CompletionOnly = false });
        Assert.All(example.Mask, Assert.True);
    }

    [Fact]
    public void Alpaca_trains_on_the_output_after_the_standard_prompt()
    {
        var doc = new TrainingDocument("a.jsonl", 1, 0, DataFormat.Alpaca) { Instruction = "Add the numbers.", Input = "2 and 2", Output = "It is four." };
        IReadOnlyList<TextSegment> segments = ExampleTokenizer.Render(doc, ChatTemplate.ChatML);
        Assert.Equal(
            "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n" +
            "### Instruction:\nAdd the numbers.\n\n### Input:\n2 and 2\n\n### Response:\nIt is four.",
            string.Concat(segments.Select(s => s.Text)));
        TokenizedExample example = ExampleTokenizer.Tokenize(doc, Tok, new TrainingDataOptions());
        Assert.Equal("It is four.<|endoftext|>", Tok.Decode([.. example.Tokens.Where((t, i) => example.Mask[i])], renderSpecial: true));

        var noInput = doc with { Input = null };
        Assert.StartsWith("Below is an instruction that describes a task. Write", string.Concat(ExampleTokenizer.Render(noInput, ChatTemplate.ChatML).Select(s => s.Text)), StringComparison.Ordinal);
    }

    [Fact]
    public void Alpaca_can_be_rendered_as_a_chat()
    {
        var doc = new TrainingDocument("a.jsonl", 1, 0, DataFormat.Alpaca) { Instruction = "Add.", Input = "2 2", Output = "4" };
        Assert.Equal("<|im_start|>user\nAdd.\n\n2 2<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n",
            string.Concat(ExampleTokenizer.Render(doc, ChatTemplate.ChatML, alpacaAsChat: true).Select(s => s.Text)));
    }

    [Fact]
    public void A_tokenizer_that_adds_bos_puts_it_first_and_never_trains_on_it()
    {
        TokenizerSpec spec = BpeTrainer.Train(["hello world"], new BpeTrainerOptions { VocabSize = 300, MinFrequency = 1 }) with { AddBos = true };
        Tokenizer withBos = Tokenizer.Create(spec);
        var doc = new TrainingDocument("a.txt", 1, 0, DataFormat.Text) { Text = "hello" };
        TokenizedExample example = ExampleTokenizer.Tokenize(doc, withBos, new TrainingDataOptions());
        Assert.Equal(withBos.Bos, example.Tokens[0]);
        Assert.False(example.Mask[0]);
        Assert.All(example.Mask[1..], Assert.True);
    }
}
