using ModelSmith.Tokenization;

namespace ModelSmith.Training.Data;

/// <summary>
/// One document as token ids with a loss mask: <c>Mask[i]</c> says whether token i is a training target (predicted
/// from the tokens before it). BOS, when the tokenizer adds one, is never a target; the EOS at the end always is.
/// </summary>
/// <param name="Tokens">(N) token ids.</param>
/// <param name="Mask">(N) loss mask.</param>
/// <param name="Source">The document's file name.</param>
/// <param name="Line">The document's first line.</param>
public sealed record TokenizedExample(int[] Tokens, bool[] Mask, string Source, long Line);

/// <summary>Renders documents (Alpaca prompt or chat template) and tokenizes them with a loss mask.</summary>
public static class ExampleTokenizer
{
    /// <summary>The Alpaca prompt before the response, for records with an input.</summary>
    public const string AlpacaPromptWithInput =
        "Below is an instruction that describes a task, paired with an input that provides further context. " +
        "Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n";

    /// <summary>The Alpaca prompt before the response, for records without an input (or an empty one).</summary>
    public const string AlpacaPromptWithoutInput =
        "Below is an instruction that describes a task. " +
        "Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n";

    /// <summary>
    /// The document as text segments. Text: one completion segment. Alpaca: the Alpaca prompt (instruction and input
    /// as content, the rest as markup), then the output as the completion; or, with <paramref name="alpacaAsChat"/>, the
    /// chat [user: instruction + "\n\n" + input, assistant: output]. Chat: <paramref name="template"/>'s rendering.
    /// </summary>
    public static IReadOnlyList<TextSegment> Render(TrainingDocument document, ChatTemplate template, bool alpacaAsChat = false)
    {
        ArgumentNullException.ThrowIfNull(document);
        ArgumentNullException.ThrowIfNull(template);
        switch (document.Format)
        {
            case DataFormat.Text or DataFormat.JsonText:
                return [new TextSegment(document.Text ?? "", IsCompletion: true, IsMarkup: false)];
            case DataFormat.Alpaca:
                string instruction = document.Instruction ?? "", output = document.Output ?? "";
                bool hasInput = !string.IsNullOrEmpty(document.Input);
                if (alpacaAsChat)
                {
                    string user = hasInput ? instruction + "\n\n" + document.Input : instruction;
                    return template.Render([new ChatMessage("user", user), new ChatMessage("assistant", output)]);
                }
                var segments = new List<TextSegment>();
                string prompt = hasInput ? AlpacaPromptWithInput : AlpacaPromptWithoutInput;
                AddPrompt(segments, prompt, instruction, document.Input ?? "");
                segments.Add(new TextSegment(output, IsCompletion: true, IsMarkup: false));
                return segments;
            case DataFormat.Chat:
                return template.Render(document.Messages ?? []);
            default:
                throw new ArgumentException($"document {document.Source}:{document.Line} has format {document.Format}, which has no rendering.", nameof(document));
        }
    }

    /// <summary>
    /// Tokens and loss mask of <paramref name="document"/>: BOS if the tokenizer adds one, each rendered segment
    /// tokenized on its own (markup with special tokens recognised, content without), then EOS. Segments are tokenized
    /// separately so that the prompt/completion boundary is a token boundary.
    /// </summary>
    public static TokenizedExample Tokenize(TrainingDocument document, Tokenizer tokenizer, TrainingDataOptions options)
    {
        ArgumentNullException.ThrowIfNull(document);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(options);
        if (tokenizer.Eos < 0)
            throw new InvalidOperationException("the tokenizer has no EOS token, which training appends to every document; use a vocabulary with an end-of-text token.");
        IReadOnlyList<TextSegment> segments = Render(document, options.ChatTemplate, options.AlpacaAsChat);
        bool maskPrompt = options.CompletionOnly && document.IsInstruction;
        var tokens = new List<int>();
        var mask = new List<bool>();
        if (tokenizer.AddBos)
        {
            tokens.Add(tokenizer.Bos);
            mask.Add(false);
        }
        foreach (TextSegment segment in segments)
        {
            int before = tokens.Count;
            tokenizer.Encode(segment.Text, tokens, addSpecial: false, parseSpecial: segment.IsMarkup);
            bool target = !maskPrompt || segment.IsCompletion;
            for (int i = before; i < tokens.Count; i++)
                mask.Add(target);
        }
        tokens.Add(tokenizer.Eos);
        mask.Add(true);
        return new TokenizedExample([.. tokens], [.. mask], document.Source, document.Line);
    }

    private static void AddPrompt(List<TextSegment> segments, string prompt, string instruction, string input)
    {
        int at = 0;
        while (at < prompt.Length)
        {
            int open = prompt.IndexOf('{', at);
            if (open < 0)
            {
                segments.Add(new TextSegment(prompt[at..], false, true));
                break;
            }
            if (open > at)
                segments.Add(new TextSegment(prompt[at..open], false, true));
            int close = prompt.IndexOf('}', open);
            string field = prompt[(open + 1)..close];
            string value = field == "instruction" ? instruction : input;
            if (value.Length > 0)
                segments.Add(new TextSegment(value, false, false));
            at = close + 1;
        }
    }
}
