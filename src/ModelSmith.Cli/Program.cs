using System.CommandLine;
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
            QuantizeCommand.Create(),
            ImatrixCommand.Create(),
        };

        ParseResult parse = root.Parse(args);
        if (parse.Errors.Count > 0)
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

    private static int Fail(string message)
    {
        AnsiConsole.Console.Profile.Out.Writer.Flush();
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
