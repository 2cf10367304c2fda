using System.CommandLine;
using ModelSmith.Registry;

namespace ModelSmith.Cli.Commands;

/// <summary>The --workspace option every registry-aware command takes, and the recording the measuring commands do.</summary>
internal static class WorkspaceOption
{
    public static Option<string?> Create() => new("--workspace")
    {
        Description = $"The workspace folder holding the registry (default: ${Workspace.EnvironmentVariable}, else ./{Workspace.DefaultFolder}).",
    };

    /// <summary>The registered variant for a model file, registering it as a base model when it is not known.</summary>
    public static ModelVariant VariantOf(Workspace workspace, string path) =>
        workspace.Find(Path.GetFullPath(path)) ?? workspace.Register(new ModelRegistration { Path = path });

    /// <summary>
    /// Runs a recording step after the command's real work succeeded: a registry that cannot be written is a
    /// warning, not a failure of the work. Returns null when recording failed.
    /// </summary>
    public static T? Record<T>(Func<T> record) where T : class
    {
        try
        {
            return record();
        }
        catch (IOException e)
        {
            Console.Error.WriteLine($"warning: not recorded in the registry: {e.Message}");
            return null;
        }
        catch (UnauthorizedAccessException e)
        {
            Console.Error.WriteLine($"warning: not recorded in the registry: {e.Message}");
            return null;
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"warning: not recorded in the registry: {e.Message}");
            return null;
        }
    }
}
