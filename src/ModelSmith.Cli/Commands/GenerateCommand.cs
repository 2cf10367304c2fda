using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using ModelSmith.Inference;
using ModelSmith.Models;
using ModelSmith.Tokenization;

namespace ModelSmith.Cli.Commands;

/// <summary>`smith generate MODEL -p TEXT`: streamed generation with prefill and decode speed.</summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var model = new Argument<FileInfo>("model") { Description = "A GGUF model file (llama or gpt2 architecture)." };
        var prompt = new Option<string?>("--prompt", "-p") { Description = "Prompt text, tokenized with the model's own vocabulary." };
        var ids = new Option<string?>("--ids") { Description = "Prompt as comma-separated token ids (e.g. 1,450,23); the output is then the ids, prompt first, on one line." };
        var count = new Option<int>("--n-predict", "-n") { Description = "Number of tokens to generate.", DefaultValueFactory = _ => 128 };
        var temperature = new Option<float>("--temperature", "--temp") { Description = "Sampling temperature; 0 is greedy (argmax).", DefaultValueFactory = _ => 0.8f };
        var topK = new Option<int>("--top-k") { Description = "Sample only among the k most likely tokens (0 = all).", DefaultValueFactory = _ => 40 };
        var topP = new Option<float>("--top-p") { Description = "Sample only among the most likely tokens whose probabilities add up to p.", DefaultValueFactory = _ => 0.95f };
        var seed = new Option<ulong>("--seed", "-s") { Description = "Random seed; the same seed gives the same text.", DefaultValueFactory = _ => 42UL };
        var threads = new Option<int>("--threads", "-t") { Description = "Worker threads (default: all cores).", DefaultValueFactory = _ => Environment.ProcessorCount };
        var context = new Option<int>("--ctx-size", "-c") { Description = "Context size in tokens (default: the model's training context)." };
        var json = new Option<bool>("--json") { Description = "Print the result and timings as JSON." };
        var noMmap = new Option<bool>("--no-mmap") { Description = "Copy the weights into private memory (huge pages where the OS allows) instead of reading them from the file's memory map." };
        var command = new Command("generate", """
            Generate text from a prompt, streaming tokens as they come, then report prefill and decode speed.

            Examples:
              smith generate model.gguf -p "Once upon a time" -n 64
              smith generate model.gguf -p "Hello" --temperature 0          (greedy)
              smith generate models/stories260K.gguf --ids 1 -n 32 --temperature 0
            """)
        {
            model, prompt, ids, count, temperature, topK, topP, seed, threads, context, json, noMmap,
        };
        command.SetAction(parse => Run(
            parse.GetValue(model)!, parse.GetValue(prompt), parse.GetValue(ids), parse.GetValue(count),
            new SamplingOptions
            {
                Temperature = parse.GetValue(temperature),
                TopK = parse.GetValue(topK),
                TopP = parse.GetValue(topP),
                Seed = parse.GetValue(seed),
            },
            parse.GetValue(threads), parse.GetValue(context), parse.GetValue(json), parse.GetValue(noMmap)));
        return command;
    }

    private static int Run(FileInfo path, string? promptText, string? idList, int count, SamplingOptions sampling, int threads, int context, bool json, bool noMmap)
    {
        if ((promptText == null) == (idList == null))
            throw new UsageException("give the prompt either as text (--prompt) or as token ids (--ids), not both and not neither.");
        if (count < 0) throw new UsageException($"--n-predict {count} must be 0 or more.");
        if (threads < 1) throw new UsageException($"--threads {threads} must be at least 1.");
        string? problem = sampling.Validate();
        if (problem != null) throw new UsageException(problem);

        using LanguageModel lm = LanguageModel.Load(path.FullName, threads, noMmap ? WeightResidence.Memory : WeightResidence.Mapped);
        Tokenizer? tokenizer = null;
        int[] promptIds;
        if (idList != null)
        {
            promptIds = ParseIds(idList, lm.Config.VocabSize);
        }
        else
        {
            tokenizer = GgufTokenizer.Load(lm.File!);
            promptIds = tokenizer.Encode(promptText!, addSpecial: true);
            if (promptIds.Length == 0) throw new UsageException("the prompt is empty after tokenization and the vocabulary adds no BOS token; give some text.");
        }
        int ctx = context > 0 ? context : lm.Config.ContextLength;
        if (promptIds.Length + count > ctx)
            throw new UsageException($"{promptIds.Length} prompt tokens + {count} new tokens exceed the context size {ctx}; use a shorter prompt, fewer tokens (-n) or a larger --ctx-size.");

        var generator = new Generator(lm, ctx);
        var stdout = Console.Out;
        var streaming = tokenizer != null && !json ? tokenizer.CreateStreamDecoder() : null;
        if (streaming != null) stdout.Write(promptText);
        GenerationResult result = generator.Generate(
            promptIds, count, sampling,
            onToken: id =>
            {
                if (streaming == null) return;
                stdout.Write(streaming.Append(id));
                stdout.Flush();
            },
            isEndOfText: tokenizer == null ? null : tokenizer.IsEndOfGeneration);
        if (streaming != null) stdout.WriteLine(streaming.Flush());

        if (json)
        {
            using var stream = Console.OpenStandardOutput();
            using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
            w.WriteStartObject();
            w.WriteStartArray("tokens");
            foreach (int t in result.Tokens) w.WriteNumberValue(t);
            w.WriteEndArray();
            w.WriteNumber("prompt_tokens", result.PromptLength);
            w.WriteNumber("generated_tokens", result.Tokens.Length - result.PromptLength);
            if (tokenizer != null) w.WriteString("text", tokenizer.Decode(result.Generated));
            w.WriteNumber("prefill_seconds", result.PrefillTime.TotalSeconds);
            w.WriteNumber("decode_seconds", result.DecodeTime.TotalSeconds);
            w.WriteNumber("prefill_tokens_per_second", result.PrefillTokensPerSecond);
            w.WriteNumber("decode_tokens_per_second", result.DecodeTokensPerSecond);
            w.WriteBoolean("stopped_at_end_of_text", result.StoppedAtEndOfText);
            w.WriteNumber("threads", lm.Threads);
            w.WriteEndObject();
            w.Flush();
            stream.WriteByte((byte)'\n');
            return Program.Ok;
        }
        if (tokenizer == null)
            stdout.WriteLine(string.Join(',', result.Tokens));
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"prefill: {result.PromptLength} tokens in {result.PrefillTime.TotalMilliseconds:0.0} ms ({result.PrefillTokensPerSecond:0.0} tokens/s); " +
            $"decode: {result.Tokens.Length - result.PromptLength} tokens in {result.DecodeTime.TotalMilliseconds:0.0} ms ({result.DecodeTokensPerSecond:0.0} tokens/s); {lm.Threads} threads"));
        return Program.Ok;
    }

    private static int[] ParseIds(string text, int vocab)
    {
        string[] parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0) throw new UsageException("--ids is empty; give at least one token id, e.g. --ids 1.");
        var ids = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out ids[i]))
                throw new UsageException($"--ids item {i + 1} '{parts[i]}' is not a token id (a whole number).");
            if (ids[i] >= vocab)
                throw new UsageException($"--ids item {i + 1} is {ids[i]}, outside the model's vocabulary of {vocab} tokens (0..{vocab - 1}).");
        }
        return ids;
    }
}
