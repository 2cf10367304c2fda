using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using ModelSmith.Cli.Demo;
using ModelSmith.Cli.Report;
using ModelSmith.Registry;
using ModelSmith.Selection;
using Spectre.Console;

namespace ModelSmith.Cli.Commands;

/// <summary>
/// `smith demo`: the whole lineage on the bundled corpora. Pretrain a base model on general text, fine-tune it on a
/// domain (full and LoRA), quantize base and fine-tuned models, evaluate every variant on held-out general and domain
/// text, bench them, then print the table, three recommendations and the checks, and write the report. Every step is
/// the `smith` command a user would type, run as a child process, so each registers its output in the workspace.
/// </summary>
internal static class DemoCommand
{
    public static Command Create()
    {
        var quick = new Option<bool>("--quick") { Description = "The same lineage with a tiny model and a few hundred steps (about 2 minutes on 2 cores)." };
        var workspace = WorkspaceOption.Create();
        var data = new Option<string?>("--data") { Description = "The folder holding brown/*.txt.gz (default: the repository's data/ folder)." };
        var threads = new Option<int>("--threads", "-t") { Description = "Threads for every step (default: all cores).", DefaultValueFactory = _ => Environment.ProcessorCount };
        var report = new Option<FileInfo?>("--report") { Description = "The HTML report to write (default: report.html in the workspace)." };
        var json = new Option<bool>("--json") { Description = "Print the results as JSON at the end instead of tables." };
        var command = new Command("demo", """
            Run the whole lineage on the bundled corpora, end to end, in under 10 minutes on 2 cores:
              1. split the data: general text (the Brown corpus, 14 genres) and a domain (mailing-list mail from
                 the SpamAssassin corpus), holding out one document in 20 of each for testing;
              2. pretrain a base model on the general text (smith pretrain: 2.1M parameters, 3M tokens);
              3. fine-tune it on the domain, fully and with LoRA (smith finetune);
              4. quantize the base and fine-tuned models to Q8_0, Q4_K_M and Q4_0 (smith quantize);
              5. measure every variant's perplexity on held-out general and domain text (smith eval) and its speed
                 (smith bench);
              6. print the table, the picks for a server, a laptop and an edge device, and write the report.
            Every variant is registered in the workspace, so `smith list`, `smith pick` and `smith report` work on it
            afterwards. A workspace holding an earlier demo run has that run replaced; other variants are kept.

            Examples:
              smith demo
              smith demo --quick --workspace /tmp/demo
              smith pick --memory 50MiB --domain mail-test           (after the demo)

            Exit codes: 0 done, 1 a step failed (the message names the command), 2 bad usage, 130 interrupted.
            """)
        {
            quick, workspace, data, threads, report, json,
        };
        command.SetAction((parse, cancellationToken) => Task.FromResult(Run(
            parse.GetValue(quick) ? DemoPlan.Quick : DemoPlan.Full,
            Workspace.ResolveRoot(parse.GetValue(workspace)), parse.GetValue(data), parse.GetValue(threads),
            parse.GetValue(report), parse.GetValue(json), cancellationToken)));
        return command;
    }

    private static int Run(DemoPlan plan, string workspaceRoot, string? dataOption, int threads, FileInfo? reportFile, bool json, CancellationToken cancellationToken)
    {
        if (threads < 1) throw new UsageException($"--threads {threads} must be at least 1.");
        string dataDirectory = DemoCorpus.FindDataDirectory(dataOption)
            ?? throw new UsageException(dataOption != null
                ? $"--data '{dataOption}' holds no brown/ folder; give the repository's data/ folder."
                : "the bundled corpus (data/brown/*.txt.gz) was not found above the current folder; run from the repository or give --data DIR.");

        using var interrupt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true;
            interrupt.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        try
        {
            var demo = new DemoRun(plan, workspaceRoot, dataDirectory, threads, json, interrupt.Token);
            DemoResult result = demo.Execute();
            string reportPath = reportFile?.FullName ?? Path.Combine(workspaceRoot, "report.html");
            demo.WriteReport(reportPath);
            if (json) WriteJson(result, reportPath, demo.Elapsed);
            else Print(result, reportPath, demo.Elapsed, workspaceRoot);
            return result.Checks.TrueForAll(c => c.Passed) ? Program.Ok : Program.Failed;
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("interrupted: the steps finished so far are registered in the workspace; run `smith demo` again to start over.");
            return 130;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    private static void Print(DemoResult result, string reportPath, TimeSpan elapsed, string workspaceRoot)
    {
        AnsiConsole.WriteLine();
        var table = new Table().Border(TableBorder.Rounded).Title("[bold]Variants[/]: perplexity on held-out text (lower is better), speed, memory");
        table.AddColumn("variant");
        table.AddColumn("type");
        table.AddColumn(new TableColumn("size").RightAligned());
        table.AddColumn(new TableColumn("ppl gen").RightAligned());
        table.AddColumn(new TableColumn("ppl dom").RightAligned());
        table.AddColumn(new TableColumn("vs base").RightAligned());
        table.AddColumn(new TableColumn("tok/s").RightAligned());
        table.AddColumn(new TableColumn("memory").RightAligned());
        double? baseDomain = result.Variants.Find(v => v.Role == "base")?.DomainPerplexity;
        foreach (DemoVariant v in result.Variants)
        {
            table.AddRow(
                Markup.Escape(v.Name), Markup.Escape(v.Type), Units.Bytes(v.FileBytes),
                Number(v.GeneralPerplexity, "0.0"), Number(v.DomainPerplexity, "0.0"),
                baseDomain is double b && v.DomainPerplexity is double d ? (d / b - 1).ToString("+0.0%;-0.0%", CultureInfo.InvariantCulture) : "",
                Number(v.DecodeTokensPerSecond, "0"), Units.Bytes(v.EstimatedMemoryBytes));
        }
        AnsiConsole.MarkupLine("[grey]ppl gen / ppl dom: general (Brown) and domain (mail) text; vs base: domain perplexity against the base;[/]");
        AnsiConsole.MarkupLine("[grey]tok/s: decode, measured by smith bench; memory: estimated peak at the model's context (smith estimate).[/]");
        AnsiConsole.Write(table);

        AnsiConsole.WriteLine();
        AnsiConsole.MarkupLine("[bold]Recommendations[/]");
        foreach (DemoPick p in result.Picks)
        {
            AnsiConsole.MarkupLine($"[bold]{Markup.Escape(p.Profile)}[/] ({Markup.Escape(p.Description)}): [green]{Markup.Escape(p.Choice ?? "nothing fits")}[/]");
            foreach (string line in p.Explanation) AnsiConsole.WriteLine("  " + line);
            foreach (string line in p.Suggestions) AnsiConsole.WriteLine("  • " + line);
        }

        AnsiConsole.WriteLine();
        AnsiConsole.MarkupLine("[bold]Checks[/]");
        foreach (DemoCheck c in result.Checks)
            AnsiConsole.MarkupLine($"  {(c.Passed ? "[green]✓[/]" : "[red]✗[/]")} {Markup.Escape(c.Text)}");
        AnsiConsole.WriteLine();
        AnsiConsole.WriteLine($"Report: {reportPath}");
        AnsiConsole.WriteLine($"Done in {elapsed.TotalMinutes:0.0} min. Next, on the same workspace ({workspaceRoot}):");
        string ws = string.Equals(workspaceRoot, Workspace.ResolveRoot(null), StringComparison.Ordinal) ? "" : $" --workspace {workspaceRoot}";
        AnsiConsole.WriteLine($"  ./smith list{ws}");
        AnsiConsole.WriteLine($"  ./smith lineage{ws}");
        AnsiConsole.WriteLine($"  ./smith pick --memory {Units.Bytes(result.EdgeMemoryBytes).Replace(" ", "", StringComparison.Ordinal)} --domain mail-test{ws}");
        AnsiConsole.WriteLine($"  ./smith report{ws}");
    }

    private static string Number(double? value, string format) => value is double v ? v.ToString(format, CultureInfo.InvariantCulture) : "–";

    private static void WriteJson(DemoResult result, string reportPath, TimeSpan elapsed)
    {
        var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("plan", result.Plan);
            w.WriteString("workspace", result.Workspace);
            w.WriteString("report", reportPath);
            w.WriteNumber("elapsed_s", Math.Round(elapsed.TotalSeconds, 1));
            w.WriteStartArray("variants");
            foreach (DemoVariant v in result.Variants)
            {
                w.WriteStartObject();
                w.WriteString("id", v.Id);
                w.WriteString("name", v.Name);
                w.WriteString("role", v.Role);
                w.WriteString("kind", v.Kind);
                w.WriteString("type", v.Type);
                w.WriteString("parent", v.Parent);
                w.WriteNumber("file_bytes", v.FileBytes);
                WriteNumber(w, "ppl_general", v.GeneralPerplexity);
                WriteNumber(w, "ppl_domain", v.DomainPerplexity);
                WriteNumber(w, "decode_tps", v.DecodeTokensPerSecond);
                WriteNumber(w, "prefill_tps", v.PrefillTokensPerSecond);
                w.WriteNumber("estimated_memory_bytes", v.EstimatedMemoryBytes);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("picks");
            foreach (DemoPick p in result.Picks)
            {
                w.WriteStartObject();
                w.WriteString("profile", p.Profile);
                w.WriteString("description", p.Description);
                w.WriteNumber("memory_bytes", p.MemoryBytes);
                w.WriteNumber("min_tps", p.MinTokensPerSecond);
                w.WriteString("dataset", p.Dataset);
                w.WriteString("choice", p.Choice);
                w.WriteString("choice_id", p.ChoiceId);
                WriteNumber(w, "choice_memory_bytes", p.ChoiceMemoryBytes);
                WriteNumber(w, "choice_tps", p.ChoiceTokensPerSecond);
                w.WriteStartArray("explanation");
                foreach (string line in p.Explanation) w.WriteStringValue(line);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("checks");
            foreach (DemoCheck c in result.Checks)
            {
                w.WriteStartObject();
                w.WriteString("check", c.Text);
                w.WriteBoolean("passed", c.Passed);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        Console.Out.Write(Encoding.UTF8.GetString(buffer.ToArray()));
        Console.Out.WriteLine();
    }

    private static void WriteNumber(Utf8JsonWriter w, string name, double? value)
    {
        if (value is double v && double.IsFinite(v)) w.WriteNumber(name, Math.Round(v, 4));
        else w.WriteNull(name);
    }

    private static void WriteNumber(Utf8JsonWriter w, string name, long? value)
    {
        if (value is long v) w.WriteNumber(name, v);
        else w.WriteNull(name);
    }
}
