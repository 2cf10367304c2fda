using System.Diagnostics;

namespace ModelSmith.Tests.Cli;

/// <summary>Runs the built `smith` CLI as a child process, as a user would.</summary>
internal static class SmithProcess
{
    public sealed record Result(int ExitCode, string Output, string Error);

    /// <summary>
    /// The registry workspace commands use unless a test passes --workspace: a temp folder for this test run, so
    /// that eval, bench and quantize (which record into the registry) never write into the repository.
    /// </summary>
    public static string DefaultWorkspace { get; } = CreateWorkspace();

    private static string CreateWorkspace()
    {
        string directory = Path.Combine(Path.GetTempPath(), "smith-cli-workspace-" + Guid.NewGuid().ToString("N"));
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try { Directory.Delete(directory, recursive: true); } catch (IOException) { }
        };
        return directory;
    }

    public static Result Run(params string[] args)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = RepoPaths.Root,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "smith.dll"));
        foreach (string a in args) start.ArgumentList.Add(a);
        start.Environment["NO_COLOR"] = "1";
        start.Environment["SMITH_WORKSPACE"] = DefaultWorkspace;
        using Process process = Process.Start(start)!;
        Task<string> output = process.StandardOutput.ReadToEndAsync();
        Task<string> error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(120_000))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"smith {string.Join(' ', args)} did not finish within 2 minutes.");
        }
        return new Result(process.ExitCode, output.Result, error.Result);
    }
}
