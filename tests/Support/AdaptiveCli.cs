using System.Diagnostics;

namespace Adaptive.Tests.Support;

/// <summary>Runs the built <c>adaptive</c> tool as a user would, in its own process.</summary>
static class AdaptiveCli
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    public static Result Run(params string[] args) => RunIn(RepoPaths.Root, args);

    public static Result RunIn(string workingDirectory, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = workingDirectory,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "adaptive.dll"));
        foreach (string arg in args) start.ArgumentList.Add(arg);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(240)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"adaptive {string.Join(' ', args)} ran over 240 s");
        }
        return new Result(process.ExitCode, stdout.Result, stderr.Result);
    }
}
