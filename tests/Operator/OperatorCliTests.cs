using System.Diagnostics;

namespace Adaptive.Tests.Operator;

public sealed class OperatorCliTests
{
    [Theory]
    [InlineData("--kubeconfig /nonexistent/kubeconfig", "--kubeconfig: /nonexistent/kubeconfig does not exist")]
    [InlineData("--prometheus-url ftp://x", "--prometheus-url must be an http(s) URL, got 'ftp://x'")]
    [InlineData("--workers 0", "--workers must be at least 1")]
    [InlineData("--scrape-interval-seconds 0", "--scrape-interval-seconds must be greater than 0")]
    [InlineData("--no-such-flag", "Unrecognized command or argument '--no-such-flag'")]
    public void Bad_flags_exit_2_naming_the_flag(string arguments, string message)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "adaptive-operator.dll"));
        foreach (var argument in arguments.Split(' ')) start.ArgumentList.Add(argument);
        using var process = Process.Start(start)!;
        string error = process.StandardError.ReadToEnd();
        Assert.True(process.WaitForExit(TimeSpan.FromSeconds(30)));
        Assert.Equal(2, process.ExitCode);
        Assert.Contains(message, error);
    }
}
