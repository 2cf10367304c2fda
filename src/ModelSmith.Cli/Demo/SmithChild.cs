using System.Diagnostics;
using System.Text;

namespace ModelSmith.Cli.Demo;

/// <summary>
/// Runs one `smith` command as a child process, exactly as a user would type it: each step of the demo is a real
/// command that registers its output, and each child's peak memory is its own (what `smith bench` measures).
/// </summary>
internal static class SmithChild
{
    /// <summary>
    /// The program and leading arguments that start this smith: the apphost itself, or <c>dotnet smith.dll</c> when
    /// running under the dotnet host.
    /// </summary>
    private static (string FileName, string[] Prefix) Self()
    {
        string process = Environment.ProcessPath ?? "dotnet";
        string name = Path.GetFileNameWithoutExtension(process);
        if (string.Equals(name, "dotnet", StringComparison.OrdinalIgnoreCase))
            return (process, [typeof(SmithChild).Assembly.Location]);
        return (process, []);
    }

    /// <summary>The command line as a user would type it (for the demo's narration and for errors).</summary>
    public static string Display(IReadOnlyList<string> args)
    {
        var text = new StringBuilder("smith");
        foreach (string a in args)
        {
            text.Append(' ');
            text.Append(a.Contains(' ', StringComparison.Ordinal) ? $"\"{a}\"" : a);
        }
        return text.ToString();
    }

    /// <summary>
    /// Runs <c>smith <paramref name="args"/></c>, passing each line of its output to <paramref name="onLine"/>
    /// (standard output and error alike), and returns its standard output. A non-zero exit throws
    /// <see cref="IOException"/> with the command and the end of its error output.
    /// </summary>
    public static string Run(IReadOnlyList<string> args, Action<string>? onLine, CancellationToken cancellationToken)
    {
        (string fileName, string[] prefix) = Self();
        var info = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
        };
        foreach (string p in prefix) info.ArgumentList.Add(p);
        foreach (string a in args) info.ArgumentList.Add(a);
        info.Environment["NO_COLOR"] = "1";

        using var process = new Process { StartInfo = info };
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        var gate = new object();
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data == null) return;
            lock (gate)
            {
                stdout.Append(e.Data).Append('\n');
                onLine?.Invoke(e.Data);
            }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data == null) return;
            lock (gate)
            {
                stderr.Append(e.Data).Append('\n');
                onLine?.Invoke(e.Data);
            }
        };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using (cancellationToken.Register(() =>
        {
            try
            {
                if (!process.HasExited) process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // It exited between the check and the kill.
            }
        }))
        {
            process.WaitForExit();
        }
        cancellationToken.ThrowIfCancellationRequested();
        if (process.ExitCode != 0)
        {
            string tail = stderr.ToString().Trim();
            if (tail.Length > 2000) tail = tail[^2000..];
            throw new IOException($"'{Display(args)}' failed with exit code {process.ExitCode}: {tail}");
        }
        return stdout.ToString();
    }
}
