using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Adaptive.Experiments.Live;

/// <summary>
/// <c>adaptive-server</c> in its own process, as a pod runs it: a replica of <c>adaptive replay --live</c>, or a
/// server the tests send SIGTERM. Reads the port it bound from its log line, and kills it on dispose if it still runs.
/// </summary>
public sealed partial class ServerProcess : IDisposable
{
    readonly Process process;
    readonly List<string> output = [];

    public Uri? Address { get; private set; }
    public bool HasExited => process.HasExited;
    /// <summary>The process's resident memory now, from /proc (Linux).</summary>
    public long ResidentBytes => long.Parse(File.ReadAllLines($"/proc/{process.Id}/status").Single(l => l.StartsWith("VmRSS:", StringComparison.Ordinal))
        .Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;
    /// <summary>The CPU time the process has used so far, on all its threads.</summary>
    public TimeSpan CpuTime
    {
        get
        {
            process.Refresh();
            return process.TotalProcessorTime;
        }
    }
    public string Output { get { lock (output) return string.Join('\n', output); } }

    ServerProcess(Process process) => this.process = process;

    public static ProcessStartInfo StartInfo(IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "adaptive-server.dll"));
        foreach (var arg in args) start.ArgumentList.Add(arg);
        // The port is read from the host's "Now listening on" line; a parent that quiets its own logs through
        // the environment would otherwise pass that on.
        start.Environment["Logging__LogLevel__Default"] = "Information";
        // Several servers share this machine: gRPC on any free port unless the caller says otherwise.
        start.Environment["ADAPTIVE_GRPC_PORT"] = "0";
        foreach (var (key, value) in environment ?? new Dictionary<string, string>()) start.Environment[key] = value;
        return start;
    }

    /// <summary>Starts the server and waits until it listens.</summary>
    public static async Task<ServerProcess> Start(IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null)
    {
        var server = new ServerProcess(Process.Start(StartInfo(args, environment))!);
        var listening = new TaskCompletionSource<Uri>(TaskCreationOptions.RunContinuationsAsynchronously);
        void Collect(string? line)
        {
            if (line is null) return;
            lock (server.output) server.output.Add(line);
            // REST is the first address the host reports (gRPC, when it has one, the second).
            if (ListeningLine().Match(line) is { Success: true } match) listening.TrySetResult(new Uri(match.Groups[1].Value));
        }
        server.process.OutputDataReceived += (_, e) => Collect(e.Data);
        server.process.ErrorDataReceived += (_, e) => Collect(e.Data);
        server.process.BeginOutputReadLine();
        server.process.BeginErrorReadLine();
        var started = await Task.WhenAny(listening.Task, server.process.WaitForExitAsync(), Task.Delay(TimeSpan.FromSeconds(60)));
        if (started != listening.Task) throw new InvalidOperationException($"adaptive-server did not start:\n{server.Output}");
        server.Address = listening.Task.Result;
        return server;
    }

    /// <summary>Runs <c>adaptive-server</c> to completion (for its errors): exit code and everything it printed.</summary>
    public static (int ExitCode, string Output) Run(IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null)
    {
        using var process = Process.Start(StartInfo(args, environment))!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException("adaptive-server ran over 60 s");
        }
        return (process.ExitCode, stdout.Result + stderr.Result);
    }

    /// <summary>What Kubernetes sends a pod it removes.</summary>
    public void Terminate() => Signal("TERM");

    /// <summary>Sends the process a signal by name (TERM, KILL, STOP, CONT), as kill(1) does.</summary>
    public void Signal(string name) => Process.Start("kill", [$"-{name}", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!.WaitForExit();

    public async Task<int> WaitForExit(TimeSpan timeout)
    {
        using var cancel = new CancellationTokenSource(timeout);
        await process.WaitForExitAsync(cancel.Token);
        return process.ExitCode;
    }

    public void Dispose()
    {
        if (!process.HasExited) process.Kill(entireProcessTree: true);
        process.Dispose();
    }

    [GeneratedRegex(@"Now listening on: (http://\S+)")]
    private static partial Regex ListeningLine();
}
