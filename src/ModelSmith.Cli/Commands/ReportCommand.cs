using System.CommandLine;
using System.Text;
using ModelSmith.Cli.Report;
using ModelSmith.Formats;
using ModelSmith.Registry;
using ModelSmith.Selection;

namespace ModelSmith.Cli.Commands;

/// <summary>`smith report`: the workspace as one self-contained HTML file.</summary>
internal static class ReportCommand
{
    public static Command Create()
    {
        var output = new Option<FileInfo>("--out", "-o") { Description = "The HTML file to write (replaced atomically).", DefaultValueFactory = _ => new FileInfo("report.html") };
        var general = new Option<string?>("--general") { Description = "The data set (file or name) that counts as general text (default: the one most variants were measured on)." };
        var domain = new Option<string?>("--domain") { Description = "The data set (file or name) that counts as domain text (default: the evaluated data a fine-tuned variant was trained on)." };
        var measure = new Option<bool>("--measure-machine") { Description = "Measure this machine's profile (a few seconds, then cached) so unbenchmarked variants get estimated speeds." };
        var workspace = WorkspaceOption.Create();
        var command = new Command("report", """
            Write the workspace as one self-contained HTML report. It needs no external files (plots are inline
            SVG) and shows the lineage graph, every variant with its measurements, perplexity on general and on domain text
            against file size and against decode speed with the Pareto frontiers marked, and the recommended
            variant for a server (lots of memory), a laptop (8 GiB) and an edge device (1 GiB, a speed floor).

            Examples:
              smith report
              smith report --out lab.html --domain legal.txt.gz --workspace ~/lab

            Exit codes: 0 written, 1 the registry cannot be read or the file cannot be written, 2 bad usage.
            """)
        {
            output, general, domain, measure, workspace,
        };
        command.SetAction(parse => Run(parse.GetValue(output)!, parse.GetValue(general), parse.GetValue(domain), parse.GetValue(measure), parse.GetValue(workspace)));
        return command;
    }

    private static int Run(FileInfo output, string? general, string? domain, bool measure, string? workspacePath)
    {
        Workspace workspace = Workspace.Open(workspacePath);
        MachineProfile? machine = measure ? MachineProfile.LoadOrMeasure() : CachedProfile();
        long size = HtmlReport.Write(workspace, new HtmlReport.Options(general, domain, machine), output.FullName);
        Console.WriteLine($"wrote {output.FullName} ({Units.Bytes(size)})");
        return Program.Ok;
    }

    /// <summary>The machine profile `smith estimate` cached for this machine, or null (the report does not measure unless asked).</summary>
    private static MachineProfile? CachedProfile()
    {
        MachineProfile? cached = MachineProfile.TryLoad(MachineProfile.DefaultCachePath());
        return cached != null && cached.Machine == MachineProfile.ThisMachine() ? cached : null;
    }
}
