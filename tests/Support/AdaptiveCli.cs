namespace Adaptive.Tests.Support;

/// <summary>Runs the built <c>adaptive</c> tool as a user would, in its own process.</summary>
static class AdaptiveCli
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    public static Result Run(params string[] args) => RunIn(RepoPaths.Root, args);

    public static Result RunIn(string workingDirectory, params string[] args)
    {
        var run = ChildProcess.Run("dotnet", [Path.Combine(AppContext.BaseDirectory, "adaptive.dll"), .. args], TimeSpan.FromSeconds(240), workingDirectory);
        return new Result(run.ExitCode, run.Stdout, run.Stderr);
    }
}
