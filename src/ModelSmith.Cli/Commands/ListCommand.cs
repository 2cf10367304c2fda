using System.CommandLine;
using ModelSmith.Registry;
using Spectre.Console;

namespace ModelSmith.Cli.Commands;

/// <summary>`smith list`: every registered variant with its headline measurements.</summary>
internal static class ListCommand
{
    public static Command Create()
    {
        var json = new Option<bool>("--json") { Description = "Print the variants and their best results as JSON." };
        var workspace = WorkspaceOption.Create();
        var command = new Command("list", """
            List the registered variants: id, name, kind, storage type, size, parameters, the best perplexity
            on the data set most variants were measured on, the latest decode speed, and whether the file is still there.

            Examples:
              smith list
              smith list --json --workspace ~/lab

            Exit codes: 0 ok, 1 the registry cannot be read.
            """)
        {
            json, workspace,
        };
        command.SetAction(parse => Run(parse.GetValue(json), parse.GetValue(workspace)));
        return command;
    }

    private static int Run(bool json, string? workspacePath)
    {
        Workspace workspace = Workspace.Open(workspacePath);
        List<VariantMeasures> all = VariantMeasures.Load(workspace);
        if (json)
        {
            RegistryJson.ToStdout(w =>
            {
                w.WriteStartObject();
                w.WriteString("workspace", workspace.Root);
                w.WriteStartArray("variants");
                foreach (VariantMeasures m in all)
                {
                    w.WriteStartObject();
                    RegistryJson.WriteVariant(w, m.Variant);
                    w.WritePropertyName("best_perplexity");
                    if (m.BestPerplexity is { } best) RegistryJson.WriteEval(w, best);
                    else w.WriteNullValue();
                    w.WritePropertyName("latest_decode");
                    if (m.LatestDecode is { } bench) RegistryJson.WriteBench(w, bench);
                    else w.WriteNullValue();
                    w.WriteNumber("evals", m.Evals.Count);
                    w.WriteNumber("benches", m.Benches.Count);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            });
            return Program.Ok;
        }
        if (all.Count == 0)
        {
            AnsiConsole.MarkupLine(Markup.Escape($"No variants registered in {workspace.Root}; 'smith add FILE' registers one."));
            return Program.Ok;
        }
        string? common = VariantMeasures.CommonDataset(all);
        // Redirected output has no width to detect; a table of ids and numbers reads better unwrapped than at 80 columns.
        if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = Math.Max(AnsiConsole.Profile.Width, 140);
        var table = new Table().Border(TableBorder.Rounded).Title(Markup.Escape(workspace.Root))
            .AddColumn(new TableColumn("id").NoWrap()).AddColumn(new TableColumn("name").NoWrap()).AddColumn(new TableColumn("kind").NoWrap()).AddColumn(new TableColumn("type").NoWrap())
            .AddColumn(new TableColumn("size").RightAligned().NoWrap()).AddColumn(new TableColumn("params").RightAligned().NoWrap())
            .AddColumn(new TableColumn(Markup.Escape(common == null ? "ppl" : $"ppl {common}")).RightAligned()).AddColumn(new TableColumn("decode t/s").RightAligned()).AddColumn("status");
        foreach (VariantMeasures m in all)
        {
            ModelVariant v = m.Variant;
            EvalResult? best = common == null ? null : m.BestPerplexityOn(common);
            string status = v.Status switch
            {
                VariantStatus.Missing => "[red]missing[/]",
                VariantStatus.Changed => "[yellow]changed[/]",
                _ => "ok",
            };
            table.AddRow(
                v.Id,
                Markup.Escape(v.Name),
                v.KindName,
                Markup.Escape(v.TypeSummary ?? "?"),
                Units.Bytes(v.Size),
                v.ParameterCount > 0 ? Units.Count(v.ParameterCount) : "-",
                VariantMeasures.Tps(best?.Perplexity),
                VariantMeasures.Tps(m.LatestDecode?.DecodeTokensPerSecond),
                status);
        }
        AnsiConsole.Write(table);
        return Program.Ok;
    }
}
