using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using Adaptive.Experiments.Live;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Serving;

[Collection("serving")]
public sealed class DrainTests(TestModels models)
{
    static readonly CancellationToken Cancel = TestContext.Current.CancellationToken;

    /// <summary>
    /// A server under load gets SIGTERM. Its readiness turns false at once; the clients, like a Service
    /// whose endpoints follow readiness, stop sending when they see it. Every request sent, before and
    /// after the signal, is answered 200, and the process exits 0 after the last one.
    /// </summary>
    [Fact]
    public async Task Sigterm_under_load_loses_no_request()
    {
        var environment = models.ServerEnvironment(intraOpThreads: 1);
        environment["ADAPTIVE_MAX_BATCH"] = "8";
        environment["ADAPTIVE_MAX_QUEUE_DELAY_MS"] = "50";
        environment["ADAPTIVE_REQUEST_TIMEOUT_MS"] = "10000";
        environment["ADAPTIVE_DRAIN_DELAY_MS"] = "1500";
        using var server = await ServerProcess.Start(["serve"], environment);
        using var client = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(30) };
        string body = V2.Request("input", [1, 3, TestModels.Resolution, TestModels.Resolution], models.Images(1, 5));

        var stopSending = new CancellationTokenSource();
        var statuses = new ConcurrentBag<(HttpStatusCode? Status, string? Failure, long SentAt)>();
        long terminatedAt = long.MaxValue;
        async Task Client()
        {
            while (!stopSending.IsCancellationRequested)
            {
                long sentAt = Stopwatch.GetTimestamp();
                try
                {
                    var response = await client.PostAsync("/v2/models/classify/infer", V2.Json(body), Cancel);
                    statuses.Add((response.StatusCode, null, sentAt));
                }
                catch (HttpRequestException e)
                {
                    statuses.Add((null, e.Message, sentAt));
                }
            }
        }
        async Task ReadinessWatcher()
        {
            while (true)
            {
                var ready = await client.GetAsync("/v2/health/ready", Cancel);
                if (ready.StatusCode == HttpStatusCode.ServiceUnavailable) break;
                await Task.Delay(20, Cancel);
            }
            stopSending.Cancel();
        }

        var clients = Enumerable.Range(0, 6).Select(_ => Client()).ToList();
        var watcher = ReadinessWatcher();
        await Task.Delay(1000, Cancel);
        terminatedAt = Stopwatch.GetTimestamp();
        server.Terminate();
        await watcher;
        await Task.WhenAll(clients);
        int exitCode = await server.WaitForExit(TimeSpan.FromSeconds(30));

        Assert.Equal(0, exitCode);
        Assert.Empty(statuses.Where(s => s.Status != HttpStatusCode.OK).Select(s => $"{s.Status} {s.Failure}"));
        Assert.True(statuses.Count(s => s.SentAt < terminatedAt) > 5, $"{statuses.Count} requests in all");
        Assert.Contains("Draining: not ready", server.Output);
    }

    /// <summary>
    /// A keep-alive client's connection is not left idle for the shutdown to close under it: once the server
    /// drains, its answers say <c>Connection: close</c>, and the client's next request opens a new connection.
    /// </summary>
    [Fact]
    public async Task Draining_answers_close_keep_alive_connections()
    {
        var server = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18, http: RunningServer.Http(drainDelayMs: 3000)));
        await using var _ = server;
        using var keepAlive = new HttpClient(new SocketsHttpHandler { PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5) }) { BaseAddress = server.Address };
        string body = V2.Request("input", [1, 3, TestModels.Resolution, TestModels.Resolution], models.Images(1, 5));
        var before = await keepAlive.PostAsync("/v2/models/classify/infer", V2.Json(body), Cancel);
        Assert.Equal(HttpStatusCode.OK, before.StatusCode);
        Assert.NotEqual(true, before.Headers.ConnectionClose);

        var stopping = server.StopAsync();
        for (int i = 0; i < 100 && (await keepAlive.GetAsync("/v2/health/ready", Cancel)).StatusCode != HttpStatusCode.ServiceUnavailable; i++) await Task.Delay(20, Cancel);
        var during = await keepAlive.PostAsync("/v2/models/classify/infer", V2.Json(body), Cancel);
        Assert.Equal(HttpStatusCode.OK, during.StatusCode);
        Assert.True(during.Headers.ConnectionClose, "a draining server's answer keeps the connection open");
        var next = await keepAlive.PostAsync("/v2/models/classify/infer", V2.Json(body), Cancel); // on a new connection
        Assert.Equal(HttpStatusCode.OK, next.StatusCode);
        await stopping;
    }

    [Fact]
    public void Bad_settings_exit_2_naming_the_flag_or_variable()
    {
        var missing = ServerProcess.Run(["serve", "--name", "classify"]);
        Assert.Equal(2, missing.ExitCode);
        Assert.Contains("--model (or ADAPTIVE_MODEL) is required", missing.Output);

        var malformed = ServerProcess.Run(["serve", "--name", "classify", "--model", models.ResNet18], new Dictionary<string, string> { ["ADAPTIVE_MAX_BATCH"] = "eight" });
        Assert.Equal(2, malformed.ExitCode);
        Assert.Contains("ADAPTIVE_MAX_BATCH=eight is not a valid value for --max-batch", malformed.Output);

        var noFile = ServerProcess.Run(["serve", "--name", "classify", "--model", "/nonexistent/model.onnx"]);
        Assert.Equal(2, noFile.ExitCode);
        Assert.Contains("model file /nonexistent/model.onnx does not exist", noFile.Output);

        var notOnnx = ServerProcess.Run(["serve", "--name", "classify", "--model", typeof(DrainTests).Assembly.Location]);
        Assert.Equal(2, notOnnx.ExitCode);
        Assert.Contains("is not a model ONNX Runtime can load", notOnnx.Output);

        var zeroBatch = ServerProcess.Run(["serve", "--name", "classify", "--model", models.ResNet18, "--max-batch", "0"]);
        Assert.Equal(2, zeroBatch.ExitCode);
        Assert.Contains("--max-batch must be at least 1", zeroBatch.Output);

        // This build's ONNX Runtime has no CUDA: a GPU class's server (ADAPTIVE_DEVICE=cuda, as the operator sets it)
        // exits in one line rather than serve at CPU speed.
        var noCuda = ServerProcess.Run(["serve", "--name", "classify", "--model", models.ResNet18], new Dictionary<string, string> { ["ADAPTIVE_DEVICE"] = "cuda" });
        Assert.Equal(2, noCuda.ExitCode);
        Assert.StartsWith("adaptive-server: --device cuda: no usable CUDA execution provider (", noCuda.Output);
        Assert.Single(noCuda.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }
}
