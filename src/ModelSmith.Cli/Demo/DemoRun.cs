using System.Diagnostics;
using System.Globalization;
using System.Text;
using ModelSmith.Cli.Report;
using ModelSmith.Formats;
using ModelSmith.Registry;
using ModelSmith.Selection;
using ModelSmith.Training;
using Spectre.Console;

namespace ModelSmith.Cli.Demo;

/// <summary>One variant as the demo reports it: what it is and what was measured of it.</summary>
internal sealed record DemoVariant(string Id, string Name, string Role, string Kind, string Type, string? Parent, string Path, long FileBytes,
    double? GeneralPerplexity, double? DomainPerplexity, double? DecodeTokensPerSecond, double? PrefillTokensPerSecond, long EstimatedMemoryBytes);

/// <summary>The pick for one deployment profile.</summary>
internal sealed record DemoPick(string Profile, string Description, long MemoryBytes, double MinTokensPerSecond, string Dataset,
    string? Choice, string? ChoiceId, long? ChoiceMemoryBytes, double? ChoiceTokensPerSecond, IReadOnlyList<string> Explanation, IReadOnlyList<string> Suggestions);

/// <summary>One property the demo's results must have.</summary>
internal sealed record DemoCheck(string Text, bool Passed);

internal sealed record DemoResult(string Plan, string Workspace, List<DemoVariant> Variants, List<DemoPick> Picks, List<DemoCheck> Checks, long EdgeMemoryBytes);

/// <summary>
/// The demo's steps (see <see cref="Commands.DemoCommand"/>): each a `smith` child process, narrated with the command
/// line, then the results read back from the workspace's registry.
/// </summary>
internal sealed class DemoRun
{
    private const string GeneralTestName = "general-test.txt";
    private const string DomainTestName = "mail-test.txt";

    private readonly DemoPlan _plan;
    private readonly string _root;
    private readonly string _dataDirectory;
    private readonly int _threads;
    private readonly bool _quiet;
    private readonly CancellationToken _cancellation;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly Workspace _workspace;
    private readonly int _context;
    private int _step;
    private int _steps;

    public DemoRun(DemoPlan plan, string workspaceRoot, string dataDirectory, int threads, bool quiet, CancellationToken cancellationToken)
    {
        _plan = plan;
        _root = workspaceRoot;
        _dataDirectory = dataDirectory;
        _threads = threads;
        _quiet = quiet;
        _cancellation = cancellationToken;
        _workspace = Workspace.Open(workspaceRoot);
        ModelSize size = ModelSize.Find(plan.Size) ?? throw new InvalidOperationException($"no model preset '{plan.Size}'.");
        _context = size.Context;
    }

    public TimeSpan Elapsed => _clock.Elapsed;

    /// <summary>The folder the demo's models go to; everything registered from it is the demo's.</summary>
    private string ModelsDirectory => Path.Combine(_workspace.ModelsDirectory, "demo");

    public DemoResult Execute()
    {
        string models = ModelsDirectory;
        int removed = ForgetEarlierRun(models);
        Directory.CreateDirectory(models);

        string[] parents = _plan.QuantizeLora ? ["base", "ft-full", "ft-lora"] : ["base", "ft-full"];
        int variantCount = 3 + parents.Length * DemoPlan.Types.Count;
        _steps = 1 + 3 + parents.Length * DemoPlan.Types.Count + 2 * variantCount + 1;
        Say($"[bold]smith demo[/] ({_plan.Name}): workspace {Markup.Escape(_root)}, {_threads} threads, {_steps} steps"
            + (removed > 0 ? $"; replaced an earlier demo run ({removed} variants)" : ""));

        Begin("Split the data: general text (Brown, 14 genres) and the domain (mail), one document in 20 held out for testing");
        DemoCorpus corpus = DemoCorpus.Prepare(_dataDirectory, Path.Combine(_root, "demo-data"), _plan.TestChars);
        Note(string.Create(CultureInfo.InvariantCulture,
            $"general: {corpus.GeneralTrainChars / 1e6:0.0} M characters to train on; mail: {corpus.DomainTrainChars / 1e6:0.0} M"));

        string Model(string name) => Path.Combine(models, name + ".gguf");
        string baseModel = Model("base"), full = Model("ft-full"), lora = Model("ft-lora");
        var files = new List<(string Path, string? Parent)>();

        Smith("Pretrain a base model on general text", true,
            "pretrain", "--data", corpus.GeneralTrain, "--out", baseModel, "--size", _plan.Size,
            "--steps", Text(_plan.PretrainSteps), "--batch", Text(_plan.PretrainBatch), "--lr", Text(_plan.PretrainLr),
            "--threads", Text(_threads), "--workspace", _root);
        files.Add((baseModel, null));

        Smith("Fine-tune every weight on the domain", true,
            "finetune", baseModel, "--data", corpus.DomainTrain, "--method", "full", "--out", full,
            "--steps", Text(_plan.FullSteps), "--batch", Text(_plan.FineTuneBatch), "--lr", Text(_plan.FullLr),
            "--threads", Text(_threads), "--workspace", _root);
        files.Add((full, baseModel));

        Smith("Fine-tune LoRA adapters on the domain (merged, GGUF and PEFT adapters written beside)", true,
            "finetune", baseModel, "--data", corpus.DomainTrain, "--method", "lora", "--rank", Text(_plan.LoraRank), "--alpha", Text(2 * _plan.LoraRank),
            "--out", lora, "--steps", Text(_plan.LoraSteps), "--batch", Text(_plan.FineTuneBatch), "--lr", Text(_plan.LoraLr),
            "--threads", Text(_threads), "--workspace", _root);
        files.Add((lora, baseModel));

        foreach (string parent in parents)
        {
            foreach (string type in DemoPlan.Types)
            {
                string output = Model($"{parent}-{type}");
                Smith($"Quantize {parent} to {type.ToUpperInvariant()}", false,
                    "quantize", Model(parent), "--type", type, "--out", output, "--threads", Text(_threads), "--workspace", _root);
                files.Add((output, Model(parent)));
            }
        }

        foreach ((string path, string? parent) in files)
        {
            var args = new List<string> { "eval", path, "--data", corpus.GeneralTest, "--data", corpus.DomainTest, "--ctx", Text(_context), "--threads", Text(_threads), "--workspace", _root };
            if (parent != null && path != full && path != lora)
            {
                args.Add("--parent");
                args.Add(parent);
            }
            Smith($"Evaluate {Path.GetFileNameWithoutExtension(path)} on held-out general and domain text", false, [.. args]);
        }
        foreach ((string path, _) in files)
        {
            Smith($"Bench {Path.GetFileNameWithoutExtension(path)}", false,
                "bench", path, "--pp", Text(_plan.BenchPrompt), "--tg", Text(_plan.BenchGenerate), "--reps", Text(_plan.BenchReps),
                "--threads", Text(_threads), "--workspace", _root);
        }

        return Collect(files, corpus);
    }

    public void WriteReport(string path) =>
        HtmlReport.Write(_workspace, new HtmlReport.Options(GeneralTestName, DomainTestName, null), path);

    /// <summary>Forgets the variants an earlier demo registered from <paramref name="models"/> and deletes their files.</summary>
    private int ForgetEarlierRun(string models)
    {
        string prefix = Path.GetFullPath(models) + Path.DirectorySeparatorChar;
        var ids = new List<string>();
        foreach (ModelVariant v in _workspace.List())
            if (Path.GetFullPath(v.Path).StartsWith(prefix, StringComparison.Ordinal)) ids.Add(v.Id);
        int removed = _workspace.Remove(ids);
        if (Directory.Exists(models)) Directory.Delete(models, recursive: true);
        return removed;
    }

    private DemoResult Collect(List<(string Path, string? Parent)> files, DemoCorpus corpus)
    {
        Begin("Read the results back from the registry; pick for three deployments");
        var byPath = new Dictionary<string, ModelVariant>(StringComparer.Ordinal);
        foreach ((string path, _) in files)
            byPath[path] = _workspace.Find(path) ?? throw new InvalidOperationException($"'{path}' was not registered by the command that wrote it.");

        var variants = new List<DemoVariant>();
        foreach ((string path, string? parent) in files)
        {
            ModelVariant v = byPath[path];
            IReadOnlyList<EvalResult> evals = _workspace.Evals(v.Id);
            IReadOnlyList<BenchResult> benches = _workspace.Benches(v.Id);
            BenchResult? bench = benches.Count > 0 ? benches[^1] : null;
            ModelShape shape = ModelShape.FromGguf(path);
            long memory = ResourceEstimator.EstimateMemory(shape, _context, _threads).Total;
            string role = Path.GetFileNameWithoutExtension(path) switch
            {
                "base" => "base",
                "ft-full" => "fine-tuned (full)",
                "ft-lora" => "fine-tuned (LoRA)",
                var n when n.StartsWith("base-", StringComparison.Ordinal) => "quantized",
                _ => "fine-tuned, quantized",
            };
            variants.Add(new DemoVariant(v.Id, v.Name, role, v.KindName, shape.DominantType.ToString(), parent == null ? null : byPath[parent].Id, path, v.Size,
                Latest(evals, GeneralTestName), Latest(evals, DomainTestName), bench?.DecodeTokensPerSecond, bench?.PrefillTokensPerSecond, memory));
        }

        var ids = new HashSet<string>(variants.Select(v => v.Id), StringComparer.Ordinal);
        IReadOnlyList<Candidate> candidates = WorkspaceCandidates.Load(_workspace, out _).Where(c => ids.Contains(c.Id)).ToList();
        var general = new DatasetKey(GeneralTestName, FileHash.Sha256(corpus.GeneralTest));
        var domain = new DatasetKey(DomainTestName, FileHash.Sha256(corpus.DomainTest));
        // The edge budget sits halfway between the fine-tuned model's Q4_K_M and Q8_0 estimates: scaled to these small
        // models, it leaves room for 4-bit variants only.
        DemoVariant q4 = variants.Find(v => v.Name.EndsWith("ft-full-q4_k_m", StringComparison.Ordinal)) ?? variants[^1];
        DemoVariant q8 = variants.Find(v => v.Name.EndsWith("ft-full-q8_0", StringComparison.Ordinal)) ?? variants[^1];
        long edgeMemory = (q4.EstimatedMemoryBytes + Math.Max(q4.EstimatedMemoryBytes, q8.EstimatedMemoryBytes)) / 2 / 1024 * 1024;
        var profiles = new (string Name, string Description, long Memory, double Floor, DatasetKey Data)[]
        {
            ("server", "256 GiB, no speed floor; general ability matters", 256L << 30, 0, general),
            ("laptop", "8 GiB, no speed floor; the domain matters", 8L << 30, 0, domain),
            ("edge", $"{Units.Bytes(edgeMemory)} (scaled to these small models: only 4-bit variants fit) and at least 20 tokens/s; the domain matters", edgeMemory, 20, domain),
        };
        var picks = new List<DemoPick>();
        foreach (var p in profiles)
        {
            PickResult r = Picker.Pick(candidates, new PickRequest(p.Memory, p.Floor, p.Data, 0, _context), null);
            picks.Add(new DemoPick(p.Name, p.Description, p.Memory, p.Floor, p.Data.Name, r.Choice?.Candidate.Name, r.Choice?.Candidate.Id,
                r.Choice?.Memory.Total, r.Choice?.TokensPerSecond, r.Explanation, r.Suggestions));
        }

        return new DemoResult(_plan.Name, _root, variants, picks, Checks(variants, picks), edgeMemory);
    }

    private static double? Latest(IReadOnlyList<EvalResult> evals, string dataset)
    {
        for (int i = evals.Count - 1; i >= 0; i--)
            if (evals[i].Perplexity is double p && evals[i].Data.Name == dataset) return p;
        return null;
    }

    /// <summary>The shape of a sound result: what the demo is meant to show.</summary>
    private static List<DemoCheck> Checks(List<DemoVariant> variants, List<DemoPick> picks)
    {
        var checks = new List<DemoCheck>();
        DemoVariant? Named(string suffix) => variants.Find(v => v.Path.EndsWith(Path.DirectorySeparatorChar + suffix + ".gguf", StringComparison.Ordinal));
        DemoVariant baseModel = Named("base")!;
        foreach (string ft in new[] { "ft-full", "ft-lora" })
        {
            DemoVariant? v = Named(ft);
            if (v == null) continue;
            bool better = v.DomainPerplexity < baseModel.DomainPerplexity;
            checks.Add(new DemoCheck(Inv($"{ft} beats the base on the domain: perplexity {v.DomainPerplexity:0.00} vs {baseModel.DomainPerplexity:0.00}"), better));
        }
        foreach (DemoVariant q in variants.Where(v => v.Path.EndsWith("-q8_0.gguf", StringComparison.Ordinal)))
        {
            DemoVariant parent = variants.Find(v => v.Id == q.Parent)!;
            double worst = Math.Max(Math.Abs(q.DomainPerplexity!.Value / parent.DomainPerplexity!.Value - 1), Math.Abs(q.GeneralPerplexity!.Value / parent.GeneralPerplexity!.Value - 1));
            checks.Add(new DemoCheck(Inv($"{Path.GetFileNameWithoutExtension(q.Path)} is within 1% perplexity of its parent: {worst:0.00%} at most"), worst <= 0.01));
        }
        foreach (DemoVariant q4 in variants.Where(v => v.Path.EndsWith("-q4_k_m.gguf", StringComparison.Ordinal)))
        {
            DemoVariant? q8 = variants.Find(v => v.Path == q4.Path.Replace("-q4_k_m.gguf", "-q8_0.gguf", StringComparison.Ordinal));
            if (q8 == null) continue;
            checks.Add(new DemoCheck(Inv($"{Path.GetFileNameWithoutExtension(q4.Path)} is smaller than Q8_0: {q4.FileBytes / 1048576.0:0.00} vs {q8.FileBytes / 1048576.0:0.00} MiB"), q4.FileBytes < q8.FileBytes));
        }
        foreach (DemoPick p in picks)
        {
            bool fits = p.ChoiceId != null && p.ChoiceMemoryBytes <= p.MemoryBytes && (p.ChoiceTokensPerSecond ?? 0) >= p.MinTokensPerSecond;
            checks.Add(new DemoCheck(Inv($"the {p.Profile} pick ({p.Choice ?? "none"}) respects its limits: {(p.ChoiceMemoryBytes ?? 0) / 1048576.0:0.0} ≤ {p.MemoryBytes / 1048576.0:0} MiB, {p.ChoiceTokensPerSecond ?? 0:0} ≥ {p.MinTokensPerSecond:0} tokens/s"), fits));
        }
        return checks;
    }

    private static string Inv(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private static string Text(int value) => value.ToString(CultureInfo.InvariantCulture);

    private static string Text(float value) => value.ToString("R", CultureInfo.InvariantCulture);

    private void Begin(string title)
    {
        _step++;
        Say($"[bold][[{DemoClock()} {_step}/{_steps}]][/] {Markup.Escape(title)}");
    }

    private void Note(string text) => Say("  [grey]" + Markup.Escape(text) + "[/]");

    private string DemoClock() => string.Create(CultureInfo.InvariantCulture, $"{(int)_clock.Elapsed.TotalMinutes}:{_clock.Elapsed.Seconds:00}");

    private void Say(string markup)
    {
        if (!_quiet) AnsiConsole.MarkupLine(markup);
    }

    /// <summary>Runs one step as `smith ARGS`; training steps show the child's progress lines.</summary>
    private void Smith(string title, bool showOutput, params string[] args)
    {
        Begin(title);
        Note("$ " + SmithChild.Display(args));
        var started = Stopwatch.StartNew();
        Action<string>? onLine = showOutput && !_quiet ? line => AnsiConsole.MarkupLine("    [grey]" + Markup.Escape(line) + "[/]") : null;
        SmithChild.Run(args, onLine, _cancellation);
        Note(string.Create(CultureInfo.InvariantCulture, $"done in {started.Elapsed.TotalSeconds:0.0} s"));
    }
}
