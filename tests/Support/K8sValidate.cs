namespace Adaptive.Tests.Support;

/// <summary>
/// The shared manifest validator (../shared/tools/k8s-validate). The test command installs it under
/// .tools/ (the shared folder is read-only); without the shared folder the tests that need it are skipped.
/// </summary>
static class K8sValidate
{
    public sealed record Result(int ExitCode, string Output);

    public static Result Run(params string[] paths)
    {
        RepoPaths.SharedOrSkip("tools", "k8s-validate");
        string script = RepoPaths.Of(".tools", "k8s-validate", "validate.mjs");
        if (!File.Exists(Path.Combine(Path.GetDirectoryName(script)!, "node_modules", "yaml", "package.json")))
            Assert.Skip($"k8s-validate is not installed at {Path.GetDirectoryName(script)}: run ./test.sh, which installs it");
        var run = ChildProcess.Run("node", [script, .. paths], TimeSpan.FromSeconds(60));
        return new Result(run.ExitCode, run.Output);
    }
}
