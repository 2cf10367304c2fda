using System.Diagnostics;
using System.IO.Compression;
using System.Text;
using System.Text.Json;
using ModelSmith.Formats;
using ModelSmith.Inference;
using ModelSmith.Models;
using ModelSmith.Tokenization;

namespace ModelSmith.Evaluation;

/// <summary>One multiple-choice question: a context, the candidate continuations, and the index of the right one.</summary>
/// <param name="Line">The line of the task file it came from (1-based), for messages.</param>
public sealed record MultipleChoiceItem(string Context, IReadOnlyList<string> Choices, int Answer, int Line = 0);

/// <summary>How the model scored one item.</summary>
/// <param name="LogLikelihoods">Per choice: Σ log p of the continuation tokens given the context.</param>
/// <param name="Prediction">argmax of <paramref name="LogLikelihoods"/> (first on ties).</param>
/// <param name="NormalizedPrediction">argmax of LogLikelihoods / the choice's length in characters.</param>
public sealed record MultipleChoiceItemResult(int Line, double[] LogLikelihoods, int Prediction, int NormalizedPrediction, int Answer);

/// <summary>Accuracy over a task, as lm-evaluation-harness reports it.</summary>
/// <param name="Accuracy">acc: share of items whose <see cref="MultipleChoiceItemResult.Prediction"/> is the answer.</param>
/// <param name="AccuracyError">Standard error of the mean, √(acc(1 − acc)/(n − 1)).</param>
/// <param name="NormalizedAccuracy">acc_norm: the same with <see cref="MultipleChoiceItemResult.NormalizedPrediction"/>.</param>
/// <param name="NormalizedAccuracyError">Standard error of acc_norm.</param>
/// <param name="RandomChance">Expected accuracy of a uniform guess: mean of 1/(number of choices).</param>
public sealed record MultipleChoiceResult(
    IReadOnlyList<MultipleChoiceItemResult> Items, double Accuracy, double AccuracyError,
    double NormalizedAccuracy, double NormalizedAccuracyError, double RandomChance, TimeSpan Elapsed);

/// <summary>
/// Multiple-choice scoring as lm-evaluation-harness does it for <c>output_type: multiple_choice</c>: each
/// choice is the continuation " " + choice of the context, scored by its log-likelihood Σ log p(token | all
/// before) over the continuation's tokens; <c>acc</c> takes the argmax of the sums, <c>acc_norm</c> the argmax
/// of the sums divided by the choice's length in characters (Unicode code points, as Python's len).
/// Tokenization follows the harness's _encode_pair: trailing whitespace of the context moves to the front of
/// the continuation, the context and context + continuation are encoded separately, and the continuation's
/// tokens are the tail of the second beyond the length of the first (so a token that spans the boundary is
/// scored as the model would see it). Texts are encoded with the vocabulary's special tokens (BOS first when
/// it adds one, as llama.cpp's own multiple-choice scorer does); an empty context becomes BOS (or EOS without
/// a BOS). Inputs longer than the model's context keep their last tokens, as the harness truncates on the left.
/// </summary>
public static class MultipleChoice
{
    /// <summary>
    /// Reads a task file: JSON Lines (optionally .gz), one object a line with "context" (string), "choices"
    /// (at least two non-empty strings) and "answer" (the 0-based index of the right choice); blank lines are
    /// skipped. Any other line is an error naming the file, the line and what is wrong.
    /// </summary>
    public static IReadOnlyList<MultipleChoiceItem> Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Task file '{path}' does not exist.", path);
        }
        var items = new List<MultipleChoiceItem>();
        using FileStream file = File.OpenRead(path);
        using Stream stream = path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? new GZipStream(file, CompressionMode.Decompress) : file;
        using var reader = new StreamReader(stream, new UTF8Encoding(false, throwOnInvalidBytes: true));
        int lineNumber = 0;
        try
        {
            while (reader.ReadLine() is { } line)
            {
                lineNumber++;
                if (string.IsNullOrWhiteSpace(line))
                {
                    continue;
                }
                items.Add(ParseItem(path, lineNumber, line));
            }
        }
        catch (Exception e) when (e is DecoderFallbackException or InvalidDataException)
        {
            throw new ModelFormatException($"{path}: line {lineNumber + 1}: cannot be read as {(stream is GZipStream ? "gzip-compressed " : "")}UTF-8 text: {e.Message}", e);
        }
        if (items.Count == 0)
        {
            throw new ModelFormatException($"{path}: has no items; each line must be a JSON object like {{\"context\": \"...\", \"choices\": [\"...\", \"...\"], \"answer\": 0}}.");
        }
        return items;
    }

    private static MultipleChoiceItem ParseItem(string path, int line, string text)
    {
        ModelFormatException Bad(string problem, Exception? inner = null) =>
            inner is null ? new ModelFormatException($"{path}: line {line}: {problem}") : new ModelFormatException($"{path}: line {line}: {problem}", inner);
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(text);
        }
        catch (JsonException e)
        {
            throw Bad($"is not valid JSON: {e.Message}", e);
        }
        using (doc)
        {
            JsonElement root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw Bad($"is a JSON {root.ValueKind.ToString().ToLowerInvariant()}, not an object like {{\"context\": \"...\", \"choices\": [...], \"answer\": 0}}.");
            }
            if (!root.TryGetProperty("context", out JsonElement context) || context.ValueKind != JsonValueKind.String)
            {
                throw Bad("has no \"context\" string.");
            }
            if (!root.TryGetProperty("choices", out JsonElement choices) || choices.ValueKind != JsonValueKind.Array)
            {
                throw Bad("has no \"choices\" array.");
            }
            var list = new List<string>();
            foreach (JsonElement choice in choices.EnumerateArray())
            {
                if (choice.ValueKind != JsonValueKind.String)
                {
                    throw Bad($"choice {list.Count} is a JSON {choice.ValueKind.ToString().ToLowerInvariant()}; every choice must be a string.");
                }
                string value = choice.GetString()!;
                if (value.Length == 0)
                {
                    throw Bad($"choice {list.Count} is empty; acc_norm divides by the choice's length, so every choice needs at least one character.");
                }
                list.Add(value);
            }
            if (list.Count < 2)
            {
                throw Bad($"has {list.Count} choice(s); a multiple-choice item needs at least two.");
            }
            if (!root.TryGetProperty("answer", out JsonElement answer) || answer.ValueKind != JsonValueKind.Number || !answer.TryGetInt32(out int index))
            {
                throw Bad("has no \"answer\" integer (the 0-based index of the right choice).");
            }
            if (index < 0 || index >= list.Count)
            {
                throw Bad($"\"answer\" is {index}, but there are {list.Count} choices (0..{list.Count - 1}).");
            }
            return new MultipleChoiceItem(context.GetString()!, list, index, line);
        }
    }

    /// <summary>
    /// The harness's _encode_pair: the context's tokens and the continuation's tokens, where the continuation's
    /// are the tail of encode(context + continuation) past the length of encode(context).
    /// </summary>
    public static (int[] Context, int[] Continuation) EncodePair(Tokenizer tokenizer, string context, string continuation)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(continuation);
        int spaces = context.Length - context.TrimEnd().Length;
        if (spaces > 0)
        {
            continuation = context[^spaces..] + continuation;
            context = context[..^spaces];
        }
        int[] contextTokens = Encode(tokenizer, context);
        if (contextTokens.Length == 0)
        {
            // The harness's empty context: the prefix token alone, and the continuation encoded on its own.
            int prefix = tokenizer.Bos >= 0 ? tokenizer.Bos : tokenizer.Eos;
            if (prefix < 0)
            {
                throw new ArgumentException("The context is empty and the vocabulary has neither BOS nor EOS to stand for it; give a context.", nameof(context));
            }
            return ([prefix], tokenizer.Encode(continuation, addSpecial: false));
        }
        int[] whole = Encode(tokenizer, context + continuation);
        return (contextTokens, whole.Length > contextTokens.Length ? whole[contextTokens.Length..] : []);
    }

    /// <summary>Text with the vocabulary's BOS, without a trailing EOS (a scored text must not end there).</summary>
    private static int[] Encode(Tokenizer tokenizer, string text)
    {
        int[] ids = tokenizer.Encode(text, addSpecial: true);
        return tokenizer.AddEos && ids.Length > 0 && ids[^1] == tokenizer.Eos ? ids[..^1] : ids;
    }

    /// <summary>Number of Unicode code points of <paramref name="text"/> (Python's len).</summary>
    public static int CharacterLength(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        int n = 0;
        foreach (Rune _ in text.EnumerateRunes())
        {
            n++;
        }
        return n;
    }

    /// <summary>Scores every item of a task on <paramref name="model"/> with its <paramref name="tokenizer"/>.</summary>
    public static MultipleChoiceResult Evaluate(LanguageModel model, Tokenizer tokenizer, IReadOnlyList<MultipleChoiceItem> items,
        IProgress<int>? progress = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(items);
        if (items.Count == 0)
        {
            throw new ArgumentException("No items to evaluate.", nameof(items));
        }
        if (tokenizer.VocabularySize != model.Config.VocabSize)
        {
            throw new ArgumentException($"The tokenizer has {tokenizer.VocabularySize} tokens but the model {model.Config.VocabSize}; use the model's own tokenizer.", nameof(tokenizer));
        }
        var clock = Stopwatch.StartNew();
        var scorer = new Scorer(model);
        var results = new MultipleChoiceItemResult[items.Count];
        int correct = 0, correctNorm = 0;
        double chance = 0;
        for (int i = 0; i < items.Count; i++)
        {
            cancellation.ThrowIfCancellationRequested();
            MultipleChoiceItem item = items[i];
            var pairs = new (int[] Context, int[] Continuation)[item.Choices.Count];
            for (int c = 0; c < pairs.Length; c++)
            {
                pairs[c] = EncodePair(tokenizer, item.Context, " " + item.Choices[c]);
                if (pairs[c].Continuation.Length == 0)
                {
                    throw new ArgumentException($"Item at line {item.Line}: choice {c} ('{item.Choices[c]}') gives no tokens after the context.", nameof(items));
                }
            }
            double[] sums = scorer.Score(pairs, item.Line);
            int best = 0, bestNorm = 0;
            for (int c = 1; c < sums.Length; c++)
            {
                if (sums[c] > sums[best]) best = c;
                if (sums[c] / CharacterLength(item.Choices[c]) > sums[bestNorm] / CharacterLength(item.Choices[bestNorm])) bestNorm = c;
            }
            results[i] = new MultipleChoiceItemResult(item.Line, sums, best, bestNorm, item.Answer);
            if (best == item.Answer) correct++;
            if (bestNorm == item.Answer) correctNorm++;
            chance += 1.0 / item.Choices.Count;
            progress?.Report(i + 1);
        }
        int n = items.Count;
        double acc = (double)correct / n, accNorm = (double)correctNorm / n;
        return new MultipleChoiceResult(results, acc, StandardError(acc, n), accNorm, StandardError(accNorm, n), chance / n, clock.Elapsed);
    }

    /// <summary>The harness's mean_stderr of 0/1 scores: the sample standard deviation over √n = √(p(1 − p)/(n − 1)).</summary>
    private static double StandardError(double p, int n) => n > 1 ? Math.Sqrt(p * (1 - p) / (n - 1)) : 0;

    /// <summary>Runs context + continuation pairs through the model and sums the continuation's log-probabilities.</summary>
    private sealed class Scorer(LanguageModel model)
    {
        private readonly int _vocab = model.Config.VocabSize;
        private readonly int _capacity = model.Config.ContextLength;
        private readonly KvCache _cache = model.CreateCache();
        private readonly float[] _contextLogits = new float[model.Config.VocabSize];   // (V)
        private float[] _logits = [];                                                   // (T, V)

        public double[] Score((int[] Context, int[] Continuation)[] pairs, int line)
        {
            var sums = new double[pairs.Length];
            bool shared = true;
            foreach (var (context, continuation) in pairs)
            {
                shared &= context.AsSpan().SequenceEqual(pairs[0].Context) && context.Length + continuation.Length - 1 <= _capacity;
            }
            if (shared)
            {
                // One pass over the context; each continuation then runs from the cached context.
                int[] context = pairs[0].Context;
                _cache.Clear();
                model.Forward(context, _cache, _contextLogits);
                for (int c = 0; c < pairs.Length; c++)
                {
                    int[] continuation = pairs[c].Continuation;
                    _cache.Truncate(context.Length);
                    double sum = TokenScores.LogSoftmax(_contextLogits, continuation[0]);
                    if (continuation.Length > 1)
                    {
                        Span<float> logits = Logits(continuation.Length - 1);
                        model.Forward(continuation.AsSpan(0, continuation.Length - 1), _cache, logits, allLogits: true);
                        for (int k = 1; k < continuation.Length; k++)
                        {
                            sum += TokenScores.LogSoftmax(logits.Slice((k - 1) * _vocab, _vocab), continuation[k]);
                        }
                    }
                    sums[c] = sum;
                }
                return sums;
            }
            for (int c = 0; c < pairs.Length; c++)
            {
                var (context, continuation) = pairs[c];
                if (continuation.Length > _capacity)
                {
                    throw new ArgumentException($"Item at line {line}: choice {c} is {continuation.Length} tokens, more than the model's context of {_capacity}.", nameof(pairs));
                }
                // The harness's input: (context + continuation)[-(max_length + 1):][:-1].
                int[] all = [.. context, .. continuation];
                int begin = Math.Max(0, all.Length - (_capacity + 1));
                ReadOnlySpan<int> input = all.AsSpan(begin, all.Length - 1 - begin);
                Span<float> logits = Logits(input.Length);
                _cache.Clear();
                model.Forward(input, _cache, logits, allLogits: true);
                double sum = 0;
                int firstRow = input.Length - continuation.Length;
                for (int k = 0; k < continuation.Length; k++)
                {
                    sum += TokenScores.LogSoftmax(logits.Slice((firstRow + k) * _vocab, _vocab), continuation[k]);
                }
                sums[c] = sum;
            }
            return sums;
        }

        private Span<float> Logits(int rows)
        {
            long needed = (long)rows * _vocab;
            if (_logits.Length < needed)
            {
                _logits = new float[needed];
            }
            return _logits.AsSpan(0, (int)needed);
        }
    }
}
