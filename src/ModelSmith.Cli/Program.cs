using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using ModelSmith.Cli.Commands;
using ModelSmith.Formats;
using Spectre.Console;

namespace ModelSmith.Cli;

/// <summary>
/// The `smith` command. Exit codes: 0 success, 1 the work failed (bad file, I/O error), 2 bad usage.
/// </summary>
internal static class Program
{
    public const int Ok = 0;
    public const int Failed = 1;
    public const int BadUsage = 2;

    private static int Main(string[] args)
    {
        var root = new RootCommand("ModelSmith: make, measure and choose language-model variants (base, fine-tuned, quantized) in managed .NET.")
        {
            InfoCommand.Create(),
            GenerateCommand.Create(),
            PretrainCommand.Create(),
            FinetuneCommand.Create(),
            MergeCommand.Create(),
            QuantizeCommand.Create(),
            ImatrixCommand.Create(),
            EvalCommand.Create(),
            BenchCommand.Create(),
            AddCommand.Create(),
            ListCommand.Create(),
            ShowCommand.Create(),
            LineageCommand.Create(),
            EstimateCommand.Create(),
            PickCommand.Create(),
            ReportCommand.Create(),
            DemoCommand.Create(),
        };

        HelpOption help = root.Options.OfType<HelpOption>().Single();
        help.Action = new RootHelpAction(root, help.Action!);

        ParseResult parse = root.Parse(args);
        if (parse.Errors.Count > 0 && parse.Action is not RootHelpAction)
        {
            foreach (var error in parse.Errors)
                Console.Error.WriteLine($"error: {error.Message}");
            Console.Error.WriteLine("Run 'smith --help' or 'smith <command> --help' for usage and examples.");
            return BadUsage;
        }
        try
        {
            return parse.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (ModelFormatException e)
        {
            return Fail(e.Message);
        }
        catch (UsageException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return BadUsage;
        }
        catch (FileNotFoundException e)
        {
            return Fail(e.Message);
        }
        catch (IOException e)
        {
            return Fail(e.Message);
        }
        catch (UnauthorizedAccessException e)
        {
            return Fail(e.Message);
        }
    }

    /// <summary>Prints `error: MESSAGE` on stderr after whatever stdout holds, and returns the failure exit code.</summary>
    internal static int Fail(string message)
    {
        AnsiConsole.Console.Profile.Out.Writer.Flush();
        Console.Out.Flush();
        Console.Error.WriteLine($"error: {message}");
        return Failed;
    }
}

/// <summary>An option value that is well-formed but impossible (exit code 2).</summary>
internal sealed class UsageException : Exception
{
    public UsageException(string message) : base(message) { }

    public UsageException() { }

    public UsageException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>
/// `smith --help` lists each command with the first line of its description; `smith COMMAND --help`
/// shows the command's full description with its examples (System.CommandLine's own help).
/// </summary>
internal sealed class RootHelpAction(RootCommand root, CommandLineAction commandHelp) : SynchronousCommandLineAction
{
    public override int Invoke(ParseResult parseResult)
    {
        if (parseResult.CommandResult.Command != root)
            return commandHelp is SynchronousCommandLineAction sync ? sync.Invoke(parseResult) : Program.Ok;
        Console.WriteLine(root.Description);
        Console.WriteLine();
        Console.WriteLine("Usage: smith <command> [options]      smith <command> --help   shows a command's options and examples");
        Console.WriteLine();
        Console.WriteLine("Commands:");
        int width = root.Subcommands.Max(c => c.Name.Length);
        foreach (Command command in root.Subcommands)
        {
            Console.WriteLine($"  {command.Name.PadRight(width)}  {Summary(command.Description)}");
        }
        Console.WriteLine();
        Console.WriteLine("Exit codes: 0 ok, 1 failed (bad file, I/O), 2 bad usage.");
        return Program.Ok;
    }

    /// <summary>The first sentence of a description's first paragraph, on one line.</summary>
    private static string Summary(string? description)
    {
        string paragraph = (description ?? "").Replace("\r", "", StringComparison.Ordinal).Split("\n\n")[0];
        string line = string.Join(' ', paragraph.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries));
        // The first clause is enough for a listing: cut at the first sentence or clause break past 20 characters.
        int end = line.Length;
        foreach (string stop in new[] { ". ", ": ", ", ", " (" })
        {
            int at = line.IndexOf(stop, 20, StringComparison.Ordinal);
            if (at >= 0 && at < end) end = at;
        }
        return line[..end].TrimEnd('.');
    }
}
