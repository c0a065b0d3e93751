using System.Diagnostics;

namespace Adaptive.Tests.Support;

/// <summary>Runs a program to completion, within a time limit, with what it printed; the test tools' one way to start a process.</summary>
static class ChildProcess
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr)
    {
        public string Output => Stdout + Stderr;
    }

    /// <summary>Runs <paramref name="program"/> with <paramref name="args"/>; past <paramref name="limit"/> it is killed and a TimeoutException says so.</summary>
    public static Result Run(string program, IEnumerable<string> args, TimeSpan limit, string? workingDirectory = null)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = workingDirectory ?? RepoPaths.Root };
        foreach (string arg in args) start.ArgumentList.Add(arg);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(limit))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{Path.GetFileName(program)} {string.Join(' ', start.ArgumentList)} ran over {limit.TotalSeconds:F0} s");
        }
        return new Result(process.ExitCode, stdout.Result, stderr.Result);
    }
}
