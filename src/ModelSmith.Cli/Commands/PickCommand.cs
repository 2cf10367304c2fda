using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using ModelSmith.Formats;
using ModelSmith.Quantization;
using ModelSmith.Registry;
using ModelSmith.Selection;
using Spectre.Console;

namespace ModelSmith.Cli.Commands;

/// <summary>`smith pick --memory 2GiB --min-tps 20 --domain D`: the registered variant to deploy, with reasons.</summary>
internal static class PickCommand
{
    public static Command Create()
    {
        var memory = new Option<string>("--memory", "-m") { Description = "Memory the model may use: 2GiB, 512MiB, 8GB ...", Required = true };
        var minTps = new Option<double>("--min-tps") { Description = "Decode speed floor in tokens/s (measured by `smith bench` on this machine, else estimated).", DefaultValueFactory = _ => 0 };
        var domain = new Option<string?>("--domain", "-d") { Description = "The data set quality is judged on: a file `smith eval` measured, or its name (default: general text, the data set most variants were measured on that no variant was fine-tuned on)." };
        var maxLoss = new Option<string?>("--max-loss") { Description = "Perplexity increase allowed over the best variant that fits, e.g. 2%, to choose a smaller one." };
        var ctx = new Option<int?>("--ctx", "-c") { Description = "KV cache positions the deployment needs (default: the longest context the registered variants were trained for, at most 2048)." };
        var workspace = new Option<string?>("--workspace", "-w") { Description = $"The workspace folder (default: ${Workspace.EnvironmentVariable}, else ./{Workspace.DefaultFolder})." };
        var model = new Option<string?>("--model") { Description = "With no registered variants: a GGUF or config.json to give type and context advice for from the estimator alone." };
        var machineFile = new Option<string?>("--machine") { Description = $"The machine profile file (default {MachineProfile.DefaultCachePath()}); measured and written when missing." };
        var json = new Option<bool>("--json") { Description = "Print the pick as JSON." };
        var command = new Command("pick", """
            Pick the registered variant to deploy under a memory limit and a speed floor, and say why.

            Every variant's peak memory is estimated at --ctx positions (as `smith estimate` does); its decode speed is
            what `smith bench` measured on this machine, or estimated (and marked so) when it was not benchmarked. The
            variants that fit and meet the floor are ranked by perplexity on --domain (from `smith eval`); the best wins,
            or with --max-loss the smallest whose perplexity is within that much of the best. The Pareto frontiers
            (perplexity against memory and against speed) show the trade-offs. Guidance: the base model when resources are
            ample and general ability matters; a fine-tuned one for a domain; a quantized one when memory or latency is
            tight; fine-tuned then quantized to keep domain quality small. When nothing fits, it says what would: a smaller
            type, a shorter context, more memory or a lower floor, with estimated numbers.

            Examples:
              smith pick --memory 2GiB --min-tps 20
              smith pick --memory 1GiB --domain data/legal.txt.gz --max-loss 2%
              smith pick --memory 8GiB --ctx 8192 --json
              smith pick --memory 512MiB --model model-f32.gguf       (no variants yet: which type fits)

            Exit codes: 0 a variant (or type) was picked, 1 nothing fits (the suggestions say what would) or the
            workspace cannot be read, 2 bad usage.
            """)
        {
            memory, minTps, domain, maxLoss, ctx, workspace, model, machineFile, json,
        };
        command.SetAction(parse => Run(
            parse.GetValue(memory)!, parse.GetValue(minTps), parse.GetValue(domain), parse.GetValue(maxLoss), parse.GetValue(ctx),
            parse.GetValue(workspace), parse.GetValue(model), parse.GetValue(machineFile), parse.GetValue(json)));
        return command;
    }

    /// <summary>The context when --ctx is not given.</summary>
    private const int DefaultContext = 2048;

    private static int Run(string memoryText, double minTps, string? domainText, string? maxLossText, int? ctxOption, string? workspacePath,
        string? modelPath, string? machineFile, bool json)
    {
        long memory = Quantities.TryParseBytes(memoryText) is long m && m > 0
            ? m
            : throw new UsageException($"--memory '{memoryText}' is not a size; write e.g. 2GiB, 512MiB or 8GB.");
        if (minTps < 0 || !double.IsFinite(minTps)) throw new UsageException($"--min-tps {minTps} must be 0 or more.");
        double maxLoss = 0;
        if (maxLossText != null)
        {
            maxLoss = Quantities.TryParseFraction(maxLossText) is double f && f < 10
                ? f
                : throw new UsageException($"--max-loss '{maxLossText}' is not an allowed loss; write e.g. 2% or 0.02.");
        }
        if (ctxOption < 1) throw new UsageException($"--ctx {ctxOption} must be at least 1.");
        DatasetKey? domain = domainText is null ? null : DatasetKey.FromArgument(domainText);

        IReadOnlyList<Candidate> candidates = [];
        IReadOnlyList<string> skipped = [];
        string root = Workspace.ResolveRoot(workspacePath);
        if (File.Exists(Path.Combine(root, "registry.db")))
            candidates = WorkspaceCandidates.Load(Workspace.Open(root), out skipped);
        int trained = 0;
        foreach (Candidate c in candidates) trained = Math.Max(trained, c.Shape.Config.ContextLength);
        int ctx = ctxOption ?? (trained > 0 ? Math.Min(trained, DefaultContext) : DefaultContext);
        var request = new PickRequest(memory, minTps, domain, maxLoss, ctx);

        if (candidates.Count == 0 && modelPath is null)
        {
            Console.Error.WriteLine($"error: no variants are registered in {root}; register variants there first (their files, evals and benches), or give --model FILE for advice from the estimator alone.");
            return Program.Failed;
        }

        // Variants never benchmarked here are ranked by estimated speed: their types' rates and the fixed costs are
        // measured again first, as they drift on a shared machine (see MachineProfile.Refreshed). Advice from the
        // estimator alone (--model) compares a dozen types, so it refreshes the fixed costs only; the types'
        // rates are the cached ones.
        var estimatedTypes = new List<GgmlType>();
        foreach (Candidate c in candidates)
        {
            if (c.MeasuredTokensPerSecond is not null) continue;
            foreach (GgmlType t in ResourceEstimator.MatmulTypes(c.Shape))
            {
                if (!estimatedTypes.Contains(t)) estimatedTypes.Add(t);
            }
        }
        MachineProfile machine = MachineProfile.LoadOrMeasure(machineFile);
        if (candidates.Count == 0 || estimatedTypes.Count > 0) machine = machine.Refreshed(estimatedTypes);
        if (candidates.Count == 0)
        {
            ModelShape shape = EstimateCommand.Shape(new EstimateCommand.EstimateRequest(modelPath, null, ctx, null, null, null, null, 32000));
            return AdviseTypes(shape, request, machine, json);
        }

        PickResult result = Picker.Pick(candidates, request, machine);
        if (json) WriteJson(result, skipped);
        else WriteTable(result, skipped);
        return result.Choice is null ? Program.Failed : Program.Ok;
    }

    private static int AdviseTypes(ModelShape shape, PickRequest request, MachineProfile machine, bool json)
    {
        var (options, best) = Picker.AdviseTypes(shape, request, machine);
        if (json)
        {
            using var stream = Console.OpenStandardOutput();
            using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
            {
                w.WriteStartObject();
                w.WriteString("model", shape.Source);
                w.WriteNull("choice");
                if (best is QuantFileType b) w.WriteString("recommended_type", b.ToString());
                else w.WriteNull("recommended_type");
                w.WriteStartArray("types");
                foreach (var (type, e, fits) in options)
                {
                    w.WriteStartObject();
                    w.WriteString("type", type.ToString());
                    w.WriteNumber("memory_bytes", e.Memory.Total);
                    if (e.Speed is SpeedEstimate sp) w.WriteNumber("estimated_tokens_per_second", sp.TokensPerSecond);
                    w.WriteBoolean("fits", fits);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }
            stream.WriteByte((byte)'\n');
            return best is null ? Program.Failed : Program.Ok;
        }
        var table = new Table().Border(TableBorder.Rounded).AddColumn("type").AddColumn(new TableColumn("memory").RightAligned())
            .AddColumn(new TableColumn("decode (est.)").RightAligned()).AddColumn("fits");
        foreach (var (type, e, fits) in options)
        {
            table.AddRow(type.ToString(), Units.Bytes(e.Memory.Total),
                e.Speed is SpeedEstimate sp ? sp.TokensPerSecond.ToString("0.0", CultureInfo.InvariantCulture) + " tok/s" : "-",
                fits ? (type == best ? "[green]yes, recommended[/]" : "yes") : "no");
        }
        AnsiConsole.Write(table);
        string limits = Units.Bytes(request.MemoryBytes) + (request.MinTokensPerSecond > 0 ? string.Create(CultureInfo.InvariantCulture, $" and {request.MinTokensPerSecond:0.#} tok/s") : "");
        AnsiConsole.WriteLine(best is QuantFileType t && QuantFileTypes.DefaultType(t) == shape.DominantType
            ? $"No variants are registered; from the estimator alone, {shape.Source} fits {limits} at {request.Context} positions as it is ({t}). Bench and eval it to pick on measurements."
            : best is QuantFileType t2
            ? $"No variants are registered; from the estimator alone, {shape.Source} fits {limits} at {request.Context} positions as {t2} (the most bits that fit). Quantize it: smith quantize MODEL --type {t2.ToString().ToLowerInvariant()}; then bench and eval the variants to pick on measurements."
            : $"No variants are registered, and no type of {shape.Source} fits {limits} at {request.Context} positions; the smallest, {options[^1].Type}, needs {Units.Bytes(options[^1].Estimate.Memory.Total)}.");
        return best is null ? Program.Failed : Program.Ok;
    }

    private static void WriteTable(PickResult r, IReadOnlyList<string> skipped)
    {
        var table = new Table().Border(TableBorder.Rounded)
            .AddColumn("variant").AddColumn("kind").AddColumn("type").AddColumn(new TableColumn("memory").RightAligned())
            .AddColumn(new TableColumn("tok/s").RightAligned()).AddColumn(new TableColumn("perplexity").RightAligned())
            .AddColumn("");
        var ruledOut = new List<string>();
        bool anyEstimated = false;
        foreach (Judged j in r.Candidates.OrderBy(j => j.Perplexity ?? double.PositiveInfinity).ThenBy(j => j.Memory.Total))
        {
            bool chosen = ReferenceEquals(j, r.Choice);
            anyEstimated |= j.TokensPerSecond.HasValue && !j.SpeedMeasured;
            string speed = j.TokensPerSecond is double s ? (j.SpeedMeasured ? "" : "~") + s.ToString("0.0", CultureInfo.InvariantCulture) : "-";
            string ppl = j.Perplexity is double p ? p.ToString("0.###", CultureInfo.InvariantCulture) + (j.Loss is double l && l > 0 ? string.Create(CultureInfo.InvariantCulture, $" ({l:+0.#%})") : "") : "-";
            string status = chosen ? "[green]picked[/]" : j.Feasible ? "fits" : "[red]ruled out[/]";
            if (!j.Feasible) ruledOut.Add($"{j.Candidate.Name} {j.Rejection}.");
            table.AddRow(Markup.Escape(j.Candidate.Name), Markup.Escape(j.Candidate.Role), j.Candidate.Type.ToString(), Units.Bytes(j.Memory.Total), speed, ppl, status);
        }
        AnsiConsole.Write(table);
        string notes = "memory: estimated peak at " + r.Request.Context.ToString(CultureInfo.InvariantCulture) + " positions"
            + (anyEstimated ? "; ~ decode speed estimated (not benchmarked on this machine)" : "")
            + (r.Dataset is null ? "" : "; perplexity on " + r.Dataset);
        AnsiConsole.MarkupLine("[dim]" + Markup.Escape(notes) + "[/]");
        foreach (string line in ruledOut) AnsiConsole.MarkupLine("[red]✗[/] " + Markup.Escape(line));
        if (r.MemoryFrontier.Count > 1)
            AnsiConsole.MarkupLine("[bold]Pareto frontier, perplexity vs memory:[/] " + Markup.Escape(string.Join(" → ", r.MemoryFrontier.Select(j => $"{j.Candidate.Name} ({Units.Bytes(j.Memory.Total)}, {j.Perplexity!.Value.ToString("0.###", CultureInfo.InvariantCulture)})"))));
        if (r.SpeedFrontier.Count > 1)
            AnsiConsole.MarkupLine("[bold]Pareto frontier, perplexity vs speed:[/] " + Markup.Escape(string.Join(" → ", r.SpeedFrontier.Select(j => $"{j.Candidate.Name} ({j.TokensPerSecond!.Value.ToString("0.0", CultureInfo.InvariantCulture)} tok/s, {j.Perplexity!.Value.ToString("0.###", CultureInfo.InvariantCulture)})"))));
        foreach (string line in r.Explanation) AnsiConsole.WriteLine(line);
        foreach (string line in r.Suggestions) AnsiConsole.WriteLine("  • " + line);
        foreach (string line in skipped) AnsiConsole.WriteLine("Skipped " + line);
    }

    private static void WriteJson(PickResult r, IReadOnlyList<string> skipped)
    {
        using var stream = Console.OpenStandardOutput();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteStartObject("request");
            w.WriteNumber("memory_bytes", r.Request.MemoryBytes);
            w.WriteNumber("min_tokens_per_second", r.Request.MinTokensPerSecond);
            w.WriteNumber("max_loss", r.Request.MaxLoss);
            w.WriteNumber("ctx", r.Request.Context);
            if (r.Request.Domain is DatasetKey d) w.WriteString("domain", d.Name);
            else w.WriteNull("domain");
            w.WriteEndObject();
            if (r.Dataset is string ds) w.WriteString("dataset", ds);
            else w.WriteNull("dataset");
            if (r.Choice is Judged c) w.WriteString("choice", c.Candidate.Id);
            else w.WriteNull("choice");
            w.WriteStartArray("candidates");
            foreach (Judged j in r.Candidates)
            {
                w.WriteStartObject();
                w.WriteString("id", j.Candidate.Id);
                w.WriteString("name", j.Candidate.Name);
                w.WriteString("kind", VariantKinds.Name(j.Candidate.Kind));
                w.WriteString("role", j.Candidate.Role);
                w.WriteString("type", j.Candidate.Type.ToString());
                w.WriteNumber("memory_bytes", j.Memory.Total);
                if (j.TokensPerSecond is double s) w.WriteNumber("tokens_per_second", s);
                else w.WriteNull("tokens_per_second");
                w.WriteBoolean("speed_measured", j.SpeedMeasured);
                if (j.Perplexity is double p) w.WriteNumber("perplexity", p);
                else w.WriteNull("perplexity");
                if (j.Loss is double l) w.WriteNumber("loss", l);
                else w.WriteNull("loss");
                w.WriteBoolean("feasible", j.Feasible);
                if (j.Rejection is string why) w.WriteString("rejection", why);
                w.WriteBoolean("memory_frontier", r.MemoryFrontier.Contains(j));
                w.WriteBoolean("speed_frontier", r.SpeedFrontier.Contains(j));
                w.WriteEndObject();
            }
            w.WriteEndArray();
            WriteStrings(w, "explanation", r.Explanation);
            WriteStrings(w, "suggestions", r.Suggestions);
            WriteStrings(w, "skipped", skipped);
            w.WriteEndObject();
        }
        stream.WriteByte((byte)'\n');
    }

    private static void WriteStrings(Utf8JsonWriter w, string name, IReadOnlyList<string> lines)
    {
        w.WriteStartArray(name);
        foreach (string line in lines) w.WriteStringValue(line);
        w.WriteEndArray();
    }
}
