using System.CommandLine;
using System.Globalization;
using ModelSmith.Registry;
using Spectre.Console;

namespace ModelSmith.Cli.Commands;

/// <summary>`smith show ID`: one variant with its lineage and every result recorded for it.</summary>
internal static class ShowCommand
{
    public static Command Create()
    {
        var id = new Argument<string>("id") { Description = "The variant: id (or a unique prefix), name, or model file." };
        var json = new Option<bool>("--json") { Description = "Print everything as JSON." };
        var workspace = WorkspaceOption.Create();
        var command = new Command("show", """
            Show one variant with its lineage and results. That is its file, hash, size, architecture and type; how it
            was made (parents, transformation and its parameters, data fingerprints); the variants made from it; and
            every evaluation and benchmark recorded with the machine it ran on.

            Examples:
              smith show 3f2a9c1b0d4e
              smith show stories-q4_k_m --json

            Exit codes: 0 ok, 1 the variant is unknown or the registry cannot be read.
            """)
        {
            id, json, workspace,
        };
        command.SetAction(parse => Run(parse.GetValue(id)!, parse.GetValue(json), parse.GetValue(workspace)));
        return command;
    }

    private static int Run(string id, bool json, string? workspacePath)
    {
        Workspace workspace = Workspace.Open(workspacePath);
        ModelVariant v = workspace.Get(id);
        List<ModelVariant> parents = v.Parents.Select(workspace.Get).ToList();
        IReadOnlyList<ModelVariant> children = workspace.Children(v.Id);
        IReadOnlyList<EvalResult> evals = workspace.Evals(v.Id);
        IReadOnlyList<BenchResult> benches = workspace.Benches(v.Id);
        if (json)
        {
            RegistryJson.ToStdout(w =>
            {
                w.WriteStartObject();
                RegistryJson.WriteVariant(w, v);
                w.WriteStartArray("parent_variants");
                foreach (ModelVariant p in parents) Reference(w, p);
                w.WriteEndArray();
                w.WriteStartArray("children");
                foreach (ModelVariant c in children) Reference(w, c);
                w.WriteEndArray();
                w.WriteStartArray("evals");
                foreach (EvalResult e in evals) RegistryJson.WriteEval(w, e);
                w.WriteEndArray();
                w.WriteStartArray("benches");
                foreach (BenchResult b in benches) RegistryJson.WriteBench(w, b);
                w.WriteEndArray();
                w.WriteEndObject();
            });
            return Program.Ok;
        }

        var summary = new Table().Border(TableBorder.Rounded).Title(Markup.Escape($"{v.Name} ({v.Id})")).AddColumn("property").AddColumn("value");
        summary.AddRow("kind", v.KindName);
        summary.AddRow("file", Markup.Escape(v.Path) + (v.Status == VariantStatus.Present ? "" : $" [red]({v.Status.ToString().ToLowerInvariant()})[/]"));
        summary.AddRow("sha256", v.Sha256);
        summary.AddRow("size", Units.Bytes(v.Size));
        summary.AddRow("architecture", Markup.Escape($"{v.Architecture ?? "?"}, {Units.Count(v.ParameterCount)} parameters, {v.TypeSummary ?? "?"}"));
        summary.AddRow("registered", v.Created.ToString("yyyy-MM-dd HH:mm:ss 'UTC'", CultureInfo.InvariantCulture));
        summary.AddRow("parents", Markup.Escape(parents.Count == 0 ? "-" : string.Join(", ", parents.Select(p => $"{p.Name} ({p.Id}, {p.KindName})"))));
        summary.AddRow("children", Markup.Escape(children.Count == 0 ? "-" : string.Join(", ", children.Select(c => $"{c.Name} ({c.Id}, {c.KindName})"))));
        summary.AddRow("made by", Markup.Escape(v.Transformation == null ? "-" : $"{v.Transformation} {v.TransformParameters}"));
        if (v.Data.Count > 0)
            summary.AddRow("data", Markup.Escape(string.Join(", ", v.Data.Select(d => $"{d.Name} ({d.Sha256[..12]}, {d.Tokens:N0} tokens)"))));
        AnsiConsole.Write(summary);

        if (evals.Count > 0)
        {
            var table = new Table().Border(TableBorder.Rounded).Title("evaluations")
                .AddColumn("data").AddColumn(new TableColumn("ctx").RightAligned()).AddColumn(new TableColumn("scored").RightAligned())
                .AddColumn(new TableColumn("PPL").RightAligned()).AddColumn(new TableColumn("KLD").RightAligned()).AddColumn(new TableColumn("same top-1").RightAligned())
                .AddColumn(new TableColumn("acc").RightAligned()).AddColumn("machine").AddColumn("when");
            foreach (EvalResult e in evals)
            {
                table.AddRow(
                    Markup.Escape($"{e.Data.Name} ({e.Data.Sha256[..Math.Min(8, e.Data.Sha256.Length)]})"),
                    e.Context.ToString(CultureInfo.InvariantCulture),
                    e.ScoredTokens.ToString("N0", CultureInfo.InvariantCulture),
                    VariantMeasures.Ppl(e),
                    e.MeanKld is { } k ? k.ToString("0.000000", CultureInfo.InvariantCulture) + (e.ReferenceId != null ? $" vs {e.ReferenceId}" : "") : "-",
                    e.SameTop1 is { } t ? (100 * t).ToString("0.00", CultureInfo.InvariantCulture) + " %" : "-",
                    e.Accuracy is { } a ? (100 * a).ToString("0.00", CultureInfo.InvariantCulture) + " %" : "-",
                    Markup.Escape(Machine(e.Machine)),
                    When(e.Recorded));
            }
            AnsiConsole.Write(table);
        }
        if (benches.Count > 0)
        {
            var table = new Table().Border(TableBorder.Rounded).Title("benchmarks")
                .AddColumn(new TableColumn("pp t/s").RightAligned()).AddColumn(new TableColumn("tg t/s").RightAligned())
                .AddColumn(new TableColumn("load").RightAligned()).AddColumn(new TableColumn("peak RSS").RightAligned())
                .AddColumn(new TableColumn("threads").RightAligned()).AddColumn("machine").AddColumn("when");
            foreach (BenchResult b in benches)
            {
                table.AddRow(
                    Speed(b.PromptTokens, b.PrefillTokensPerSecond, b.PrefillStdDev),
                    Speed(b.GeneratedTokens, b.DecodeTokensPerSecond, b.DecodeStdDev),
                    (b.LoadSeconds * 1000).ToString("0.0", CultureInfo.InvariantCulture) + " ms",
                    Units.Bytes(b.PeakResidentBytes),
                    b.Threads.ToString(CultureInfo.InvariantCulture),
                    Markup.Escape(Machine(b.Machine)),
                    When(b.Recorded));
            }
            AnsiConsole.Write(table);
        }
        if (evals.Count == 0 && benches.Count == 0)
            AnsiConsole.MarkupLine(Markup.Escape($"No results yet: 'smith eval {v.Path} --data FILE' and 'smith bench {v.Path}' record them."));
        return Program.Ok;
    }

    private static void Reference(System.Text.Json.Utf8JsonWriter w, ModelVariant v)
    {
        w.WriteStartObject();
        w.WriteString("id", v.Id);
        w.WriteString("name", v.Name);
        w.WriteString("kind", v.KindName);
        w.WriteEndObject();
    }

    private static string Speed(int tokens, double? mean, double? sd) => mean is { } m
        ? string.Create(CultureInfo.InvariantCulture, $"{m:0.00} ± {sd ?? 0:0.00} ({tokens})")
        : "-";

    private static string Machine(MachineInfo? m) => m == null ? "?" : $"{m.Hostname}: {m.Cpu}, {m.Cores} cores";

    private static string When(DateTimeOffset? t) => t?.ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture) ?? "?";
}
