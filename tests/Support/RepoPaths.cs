namespace Adaptive.Tests.Support;

/// <summary>Where the repository and the shared material (<c>../shared</c>) are, seen from a test run.</summary>
static class RepoPaths
{
    public static string Root { get; } = FindRoot();

    public static string Of(params string[] parts) => Path.Combine([Root, .. parts]);

    /// <summary>The shared material beside the repository, or a skip that says it is absent.</summary>
    public static string SharedOrSkip(params string[] parts)
    {
        string path = Path.GetFullPath(Path.Combine([Root, "..", "shared", .. parts]));
        if (!Path.Exists(path))
            Assert.Skip($"needs the shared material at {path}, which is absent here (it sits beside the repository in development and CI)");
        return path;
    }

    static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Adaptive.sln"))) return dir.FullName;
        throw new InvalidOperationException($"no Adaptive.sln above {AppContext.BaseDirectory}");
    }
}
