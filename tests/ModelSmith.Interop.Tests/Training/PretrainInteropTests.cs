using System.IO.Compression;
using System.Text;
using ModelSmith.Formats;
using ModelSmith.Models;
using ModelSmith.Tokenization;
using ModelSmith.Training;
using ModelSmith.Training.Data;
using Xunit.Abstractions;

namespace ModelSmith.Interop.Tests.Training;

/// <summary>
/// A model made by the pretraining code path (vocabulary learned from text, a few training steps, the model file
/// written by <see cref="Pretraining.WriteModel"/>) loaded by llama.cpp: its logits against ours, and its tokenizer
/// against ours on held-out text.
/// </summary>
[Trait("Category", "Interop")]
public sealed class PretrainInteropTests(ITestOutputHelper output)
{
    [Fact]
    public void Llama_cpp_runs_a_pretrained_model_as_we_do_and_tokenizes_held_out_text_with_its_vocabulary_as_we_do()
    {
        string dir = Path.Combine(Path.GetTempPath(), "smith-pretrain-interop-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string data = Path.Combine(dir, "corpus.txt");
            File.WriteAllText(data, Lines("fiction-science", 500) + "\n\n" + Lines("humor", 500));
            var dataOptions = new TrainingDataOptions { ContextLength = 64, ValidationFraction = 0.05, Seed = 5, TextSplit = TextDocumentSplit.Lines };
            TokenizerSpec spec = Pretraining.TrainTokenizer([data], dataOptions, 600);
            Tokenizer tokenizer = Tokenizer.Create(spec);
            TrainingData training = TrainingData.Load([data], tokenizer, dataOptions);
            // Preset widths (256-multiples, grouped-query attention) at a test's depth and context.
            ModelSize shape = ModelSize.Tiny with { Layers = 2, Context = 64 };
            ModelConfig config = shape.ToConfig(spec.Tokens.Count);
            string path = Path.Combine(dir, "base.gguf");
            using (var model = new TrainingModel(config, 4, 64, threads: 2))
            {
                model.Parameters.Initialize(9);
                TrainingRunResult r = new TrainingRun(model, training, new TrainingRunOptions { Steps = 8, BatchSize = 4, LearningRate = 3e-3f, MinLearningRate = 3e-4f, Threads = 2 }).Run();
                output.WriteLine($"trained {r.Steps} steps: loss {r.FinalLoss:F3}, validation {r.ValidationLoss:F3}");
                Pretraining.WriteModel(model.Parameters, spec, path, GgmlType.F32, "interop-base");
            }

            string heldOut = Lines("religion", 40);
            int[] ours = tokenizer.Encode(heldOut, addSpecial: false);
            using (var llama = new LlamaCppModel(path, threads: 2))
            {
                Assert.Equal(config.VocabSize, llama.VocabSize);
                Assert.Equal(tokenizer.Eos, llama.Eos);
                Assert.Equal(ours, llama.Tokenize(heldOut, addSpecial: false, parseSpecial: false));
                Assert.Equal(heldOut, llama.Detokenize(ours));
            }

            int[] sequence = ours.AsSpan(0, 64).ToArray();
            float[] theirs;
            using (var llama = new LlamaCppModel(path, threads: 2))
                theirs = llama.EvalAllLogits(sequence);
            using LanguageModel engine = LanguageModel.Load(path, threads: 2);
            var logits = new float[sequence.Length * config.VocabSize];
            engine.Forward(sequence, engine.CreateCache(sequence.Length), logits, allLogits: true);
            Assert.Equal(theirs.Length, logits.Length);
            double maxDiff = 0, maxAbs = 0;
            for (int i = 0; i < logits.Length; i++)
            {
                maxDiff = Math.Max(maxDiff, Math.Abs(logits[i] - theirs[i]));
                maxAbs = Math.Max(maxAbs, Math.Abs(theirs[i]));
            }
            double error = maxDiff / maxAbs;
            output.WriteLine($"{ours.Length} held-out tokens equal; logits: max |Δ| {maxDiff:E2}, max |logit| {maxAbs:F3}, relative {error:E2}");
            Assert.True(error < 1e-3, $"relative max-abs logit error {error:E2}");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static string Lines(string genre, int count)
    {
        using var gzip = new GZipStream(File.OpenRead(Path.Combine(RepoPaths.Root, "data", "brown", genre + ".txt.gz")), CompressionMode.Decompress);
        using var reader = new StreamReader(gzip, Encoding.UTF8);
        var text = new StringBuilder();
        for (int i = 0; i < count && reader.ReadLine() is { } line; i++)
            text.Append(line).Append('\n');
        return text.ToString();
    }
}
