using System.Diagnostics;
using System.Text.Json;
using ModelSmith.Formats;
using ModelSmith.Models;
using ModelSmith.Tests.Training;
using ModelSmith.Training;
using ModelSmith.Training.Data;

namespace ModelSmith.Tests.Cli;

public sealed class TrainingCliTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"smith-traincli-{Environment.ProcessId}-{Guid.NewGuid():N}");

    public TrainingCliTests()
    {
        Directory.CreateDirectory(_dir);
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private string PathOf(params string[] parts) => Path.Combine([_dir, .. parts]);

    private string[] PretrainArgs(string output, string data, string lr = "0.003") =>
    [
        "pretrain", "--data", data, "--out", output, "--dim", "64", "--layers", "2", "--heads", "4", "--kv-heads", "2", "--ffn", "128",
        "--context", "32", "--vocab", "320", "--steps", "40", "--batch", "4", "--lr", lr, "--checkpoint-every", "3",
        "--eval-every", "10", "--eval-batches", "2", "--threads", "2", "--json",
    ];

    /// <summary>Starts smith, waits for <paramref name="file"/> to appear, then sends <paramref name="signal"/> (KILL or INT).</summary>
    private static int InterruptWhenWritten(string[] args, string file, string signal)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = RepoPaths.Root };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "smith.dll"));
        foreach (string a in args) start.ArgumentList.Add(a);
        start.Environment["NO_COLOR"] = "1";
        using Process process = Process.Start(start)!;
        Task<string> output = process.StandardOutput.ReadToEndAsync();
        Task<string> error = process.StandardError.ReadToEndAsync();
        var clock = Stopwatch.StartNew();
        while (!File.Exists(file))
        {
            if (process.HasExited) Assert.Fail($"smith exited ({process.ExitCode}) before writing {file}: {error.Result}");
            Assert.True(clock.Elapsed < TimeSpan.FromMinutes(2), $"{file} did not appear within 2 minutes");
            Thread.Sleep(10);
        }
        Assert.False(process.HasExited, "the run finished before it could be interrupted; give it more steps");
        if (signal == "KILL")
        {
            process.Kill();
        }
        else
        {
            using Process kill = Process.Start("kill", ["-" + signal, process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!;
            kill.WaitForExit();
        }
        Assert.True(process.WaitForExit(60_000), "smith did not stop after the signal");
        _ = output.Result;
        if (signal == "INT")
        {
            Assert.Contains($"smith {args[0]} {args[1]} ", error.Result, StringComparison.Ordinal);
            Assert.Contains("--resume", error.Result, StringComparison.Ordinal);
            Assert.Contains("checkpoint written to", error.Result, StringComparison.Ordinal);
        }
        return process.ExitCode;
    }

    private static List<string> Losses(string log)
    {
        var lines = new List<string>();
        foreach (string line in File.ReadAllLines(log))
        {
            using var doc = JsonDocument.Parse(line);
            JsonElement e = doc.RootElement;
            lines.Add(e.TryGetProperty("summary", out _)
                ? "summary " + e.GetProperty("final_loss").GetRawText()
                : $"{e.GetProperty("step")} {e.GetProperty("loss").GetRawText()} {e.GetProperty("grad_norm").GetRawText()} {(e.TryGetProperty("val_loss", out JsonElement v) ? v.GetRawText() : "-")}");
        }
        return lines;
    }

    [Fact]
    public void Pretrain_killed_after_its_first_checkpoint_resumes_to_the_model_of_an_uninterrupted_run()
    {
        string data = PathOf("corpus.txt");
        File.WriteAllText(data, TrainingRunFixture.BrownSlice("fiction-science", 300));
        Directory.CreateDirectory(PathOf("a"));
        Directory.CreateDirectory(PathOf("b"));

        SmithProcess.Result whole = SmithProcess.Run(PretrainArgs(PathOf("a", "m.gguf"), data));
        Assert.True(whole.ExitCode == 0, whole.Error);
        using (JsonDocument json = JsonDocument.Parse(whole.Output))
        {
            JsonElement root = json.RootElement;
            Assert.Equal(40, root.GetProperty("steps").GetInt32());
            Assert.True(root.GetProperty("val_loss").GetSingle() > 0);
            Assert.True(root.GetProperty("peak_memory_bytes").GetInt64() > 0);
            JsonElement outcome = root.GetProperty("outcome");
            Assert.Equal("base", outcome.GetProperty("kind").GetString());
            Assert.Equal("pretrain", outcome.GetProperty("transform").GetString());
            Assert.Equal(JsonValueKind.Null, outcome.GetProperty("parent_path").ValueKind);
            Assert.Equal(PathOf("a", "m.gguf"), outcome.GetProperty("output_path").GetString());
            Assert.Equal(DataFile.Fingerprint(DataFile.Find([data])), outcome.GetProperty("data_fingerprint").GetString());
            Assert.Equal("64", outcome.GetProperty("parameters").GetProperty("dim").GetString());
        }
        Assert.False(File.Exists(PathOf("a", "m.gguf.ckpt")), "a completed run removes its checkpoint");

        string[] interrupted = PretrainArgs(PathOf("b", "m.gguf"), data);
        InterruptWhenWritten(interrupted, PathOf("b", "m.gguf.ckpt"), "KILL");
        Assert.False(File.Exists(PathOf("b", "m.gguf")));

        SmithProcess.Result other = SmithProcess.Run([.. PretrainArgs(PathOf("b", "m.gguf"), data, lr: "0.002"), "--resume"]);
        Assert.Equal(1, other.ExitCode);
        Assert.Contains("lr: 0.003 in the checkpoint, 0.002 now", other.Error, StringComparison.Ordinal);

        SmithProcess.Result resumed = SmithProcess.Run([.. interrupted, "--resume"]);
        Assert.True(resumed.ExitCode == 0, resumed.Error);
        using (JsonDocument json = JsonDocument.Parse(resumed.Output))
            Assert.True(json.RootElement.GetProperty("resumed_from_step").GetInt32() >= 3);
        Assert.Equal(File.ReadAllBytes(PathOf("a", "m.gguf")), File.ReadAllBytes(PathOf("b", "m.gguf")));
        Assert.Equal(Losses(PathOf("a", "m.gguf.log.jsonl")), Losses(PathOf("b", "m.gguf.log.jsonl")));
    }

    /// <summary>A small base model written by the pretraining code, and chat data for it.</summary>
    private (string Model, string Data) BaseAndChats()
    {
        using var f = new TrainingRunFixture(lines: 300, vocab: 320, context: 32);
        string model = PathOf("base.gguf");
        using (TrainingModel m = f.Model(batch: 4))
        {
            new TrainingRun(m, f.Data, new TrainingRunOptions { Steps = 5, BatchSize = 4, LearningRate = 3e-3f, MinLearningRate = 3e-4f, Threads = 2 }).Run();
            Pretraining.WriteModel(m.Parameters, f.Spec, model, GgmlType.F16, "test-base");
        }
        string data = PathOf("chats.jsonl");
        string[] lines = TrainingRunFixture.BrownSlice("humor", 120).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        using (var w = new StreamWriter(data))
        {
            for (int i = 0; i + 1 < lines.Length; i += 2)
            {
                var chat = new { messages = new[] { new { role = "user", content = lines[i] }, new { role = "assistant", content = lines[i + 1] } } };
                w.WriteLine(JsonSerializer.Serialize(chat));
            }
        }
        return (model, data);
    }

    private string[] FinetuneArgs(string model, string data, string output) =>
    [
        "finetune", model, "--data", data, "--out", output, "--method", "lora", "--rank", "4", "--alpha", "8", "--dropout", "0.1",
        "--modules", "q,v,down", "--steps", "30", "--batch", "4", "--lr", "0.005", "--context", "32", "--checkpoint-every", "3",
        "--eval-every", "10", "--eval-batches", "2", "--threads", "2", "--json",
    ];

    [Fact]
    public void Lora_finetune_interrupted_with_ctrl_c_resumes_to_the_same_merged_model_and_adapter()
    {
        (string model, string data) = BaseAndChats();
        Directory.CreateDirectory(PathOf("a"));
        Directory.CreateDirectory(PathOf("b"));

        SmithProcess.Result whole = SmithProcess.Run(FinetuneArgs(model, data, PathOf("a", "ft.gguf")));
        Assert.True(whole.ExitCode == 0, whole.Error);
        using (JsonDocument json = JsonDocument.Parse(whole.Output))
        {
            JsonElement outcome = json.RootElement.GetProperty("outcome");
            Assert.Equal("finetuned", outcome.GetProperty("kind").GetString());
            Assert.Equal("finetune-lora", outcome.GetProperty("transform").GetString());
            Assert.Equal(model, outcome.GetProperty("parent_path").GetString());
            Assert.Equal("attn_q,attn_v,ffn_down", outcome.GetProperty("parameters").GetProperty("modules").GetString());
            Assert.Equal(PathOf("a", "ft.lora.gguf"), outcome.GetProperty("adapter_path").GetString());
        }
        using (GgufFile merged = GgufFile.Open(PathOf("a", "ft.gguf")))
        using (GgufFile source = GgufFile.Open(model))
        {
            Assert.Equal(ChatTemplate.ChatMLJinja, merged.GetString(ChatTemplate.MetadataKey));
            Assert.Equal("test-base", merged.GetString("general.base_model.0.name"));
            Assert.Equal(source.Get("tokenizer.ggml.merges")!.Value, merged.Get("tokenizer.ggml.merges")!.Value);
            foreach (GgufTensorInfo t in source.Tensors)
                Assert.Equal(t.Type, merged.RequireTensor(t.Name).Type);
        }
        using (GgufFile adapter = GgufFile.Open(PathOf("a", "ft.lora.gguf")))
        using (GgufFile source = GgufFile.Open(model))
        {
            Assert.Equal("adapter", adapter.GetString("general.type"));
            Assert.NotNull(adapter.FindTensor("blk.1.ffn_down.weight.lora_b"));
            Assert.Null(adapter.FindTensor("blk.0.attn_k.weight.lora_a"));
            var layout = new ParameterLayout(ModelConfig.FromGguf(source));
            LoraParameters gguf = TrainingGguf.ImportAdapter(adapter, layout);
            LoraParameters peft = PeftAdapter.Read(PathOf("a", "ft.peft"), layout);
            Assert.Equal(gguf.Layout.Options.Scale, peft.Layout.Options.Scale);
            Assert.Equal(gguf.Values.ToArray(), peft.Values.ToArray());
            Assert.Contains(gguf.Values.ToArray(), v => v != 0);
        }

        string[] interrupted = FinetuneArgs(model, data, PathOf("b", "ft.gguf"));
        Assert.Equal(130, InterruptWhenWritten(interrupted, PathOf("b", "ft.gguf.ckpt"), "INT"));
        SmithProcess.Result resumed = SmithProcess.Run([.. interrupted, "--resume"]);
        Assert.True(resumed.ExitCode == 0, resumed.Error);
        Assert.Equal(File.ReadAllBytes(PathOf("a", "ft.gguf")), File.ReadAllBytes(PathOf("b", "ft.gguf")));
        Assert.Equal(File.ReadAllBytes(PathOf("a", "ft.lora.gguf")), File.ReadAllBytes(PathOf("b", "ft.lora.gguf")));
        Assert.Equal(File.ReadAllBytes(PathOf("a", "ft.peft", PeftAdapter.WeightsFileName)), File.ReadAllBytes(PathOf("b", "ft.peft", PeftAdapter.WeightsFileName)));
        Assert.Equal(Losses(PathOf("a", "ft.gguf.log.jsonl")), Losses(PathOf("b", "ft.gguf.log.jsonl")));
    }

    [Fact]
    public void Full_finetune_keeps_the_base_weight_types_and_tokenizer_and_records_the_chat_template()
    {
        (string model, string data) = BaseAndChats();
        string output = PathOf("full.gguf");
        SmithProcess.Result r = SmithProcess.Run("finetune", model, "--data", data, "--method", "full", "--out", output, "--steps", "3", "--batch", "2",
            "--lr", "0.001", "--chat-template", "llama3", "--threads", "2", "--json");
        Assert.True(r.ExitCode == 0, r.Error);
        using (JsonDocument json = JsonDocument.Parse(r.Output))
        {
            JsonElement root = json.RootElement;
            Assert.Equal("finetune-full", root.GetProperty("outcome").GetProperty("transform").GetString());
            Assert.Equal("llama3", root.GetProperty("outcome").GetProperty("parameters").GetProperty("chat_template").GetString());
            Assert.Equal(JsonValueKind.Null, root.GetProperty("outputs").GetProperty("adapter").ValueKind);
        }
        Assert.False(File.Exists(PathOf("full.lora.gguf")));
        Assert.False(Directory.Exists(PathOf("full.peft")));
        using GgufFile merged = GgufFile.Open(output);
        using GgufFile source = GgufFile.Open(model);
        Assert.Equal("llama3", merged.GetString(ChatTemplate.MetadataKey));
        Assert.Equal("full", merged.GetString("general.name"));
        Assert.Equal(source.GetInteger("general.file_type"), merged.GetInteger("general.file_type"));
        Assert.Equal(source.Tensors.Select(t => (t.Name, t.Type)), merged.Tensors.Select(t => (t.Name, t.Type)));
        Assert.NotEqual(source.GetTensorData(source.RequireTensor("blk.0.attn_q.weight")).ToArray(), merged.GetTensorData(merged.RequireTensor("blk.0.attn_q.weight")).ToArray());
        SmithProcess.Result info = SmithProcess.Run("generate", output, "-p", "The", "-n", "4", "--temperature", "0");
        Assert.True(info.ExitCode == 0, info.Error);
    }

    [Fact]
    public void Pretrain_with_a_given_tokenizer_keeps_that_vocabulary()
    {
        (string model, _) = BaseAndChats();
        string data = PathOf("more.txt");
        File.WriteAllText(data, TrainingRunFixture.BrownSlice("religion", 100));
        string output = PathOf("reused.gguf");
        SmithProcess.Result r = SmithProcess.Run("pretrain", "--data", data, "--tokenizer", model, "--out", output, "--dim", "64", "--layers", "1",
            "--heads", "2", "--kv-heads", "1", "--ffn", "128", "--context", "32", "--steps", "2", "--batch", "2", "--threads", "2", "--type", "f16", "--json");
        Assert.True(r.ExitCode == 0, r.Error);
        using GgufFile reused = GgufFile.Open(output);
        using GgufFile source = GgufFile.Open(model);
        foreach (string key in source.MetadataKeys.Where(k => k.StartsWith("tokenizer.", StringComparison.Ordinal)))
            Assert.Equal(source.Get(key)!.Value, reused.Get(key)!.Value);
        Assert.Equal(GgmlType.F16, reused.RequireTensor("token_embd.weight").Type);
        Assert.Equal(source.GetInteger("llama.vocab_size"), reused.GetInteger("llama.vocab_size"));
    }

    [Fact]
    public void Finetune_stops_at_a_malformed_record_naming_its_file_and_line()
    {
        (string model, _) = BaseAndChats();
        string bad = PathOf("bad.jsonl");
        File.WriteAllLines(bad, ["{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"hello\"}]}", "{\"messages\": [{\"role\": \"user\", \"content\": "]);
        SmithProcess.Result r = SmithProcess.Run("finetune", model, "--data", bad, "--out", PathOf("x.gguf"), "--steps", "2");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("bad.jsonl:2", r.Error, StringComparison.Ordinal);
        Assert.False(File.Exists(PathOf("x.gguf")));
    }

    [Fact]
    public void Impossible_training_options_are_usage_errors()
    {
        SmithProcess.Result size = SmithProcess.Run("pretrain", "--data", "data/brown", "--out", PathOf("x.gguf"), "--size", "huge");
        Assert.Equal(2, size.ExitCode);
        Assert.Contains("tiny, small or base", size.Error, StringComparison.Ordinal);
        SmithProcess.Result heads = SmithProcess.Run("pretrain", "--data", "data/brown", "--out", PathOf("x.gguf"), "--heads", "3");
        Assert.Equal(2, heads.ExitCode);
        Assert.Contains("not divisible by 3 heads", heads.Error, StringComparison.Ordinal);
        SmithProcess.Result method = SmithProcess.Run("finetune", "models/stories260K.gguf", "--data", "data/brown", "--out", PathOf("x.gguf"), "--method", "qlora");
        Assert.Equal(2, method.ExitCode);
        SmithProcess.Result module = SmithProcess.Run("finetune", "models/stories260K.gguf", "--data", "data/brown", "--out", PathOf("x.gguf"), "--modules", "q,zz");
        Assert.Equal(2, module.ExitCode);
        Assert.Contains("'zz' is not a linear module", module.Error, StringComparison.Ordinal);
    }
}
