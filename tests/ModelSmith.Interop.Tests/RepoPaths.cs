namespace ModelSmith.Interop.Tests;

/// <summary>Repository-relative files for tests: the root is the first directory above the test
/// binaries that contains ModelSmith.sln.</summary>
internal static class RepoPaths
{
    private static readonly Lazy<string> s_root = new(FindRoot);

    public static string Root => s_root.Value;

    public static string Stories260K => Path.Combine(Root, "models", "stories260K.gguf");

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "ModelSmith.sln")))
            {
                return dir.FullName;
            }
        }
        throw new DirectoryNotFoundException($"No directory above '{AppContext.BaseDirectory}' contains ModelSmith.sln.");
    }
}
