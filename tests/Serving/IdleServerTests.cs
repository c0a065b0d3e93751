using System.Net;
using Adaptive.Experiments.Live;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Serving;

[Collection("serving")]
public sealed class IdleServerTests(TestModels models)
{
    static readonly CancellationToken Cancel = TestContext.Current.CancellationToken;

    /// <summary>
    /// At low load a replica spends CPU on its requests, not between them. ONNX Runtime's intra-op workers
    /// otherwise spin on for tens of milliseconds after each call, waiting for the next: at one request
    /// every 50 ms this server used three quarters of a core (14 % with them stopped). That core is taken
    /// from the HTTP work of the next request (0.1–0.2 ms of per-request overhead in adaptive bench
    /// server), and in a pod with a CPU limit it spends the quota on waiting.
    /// </summary>
    [Fact]
    public async Task A_server_at_low_load_does_not_keep_a_core_busy_between_requests()
    {
        var environment = models.ServerEnvironment(intraOpThreads: 2);
        // Without profile-guided recompilation, whose background JIT would otherwise still run, and be counted, after the warm-up.
        environment["DOTNET_TieredPGO"] = "0";
        using var server = await ServerProcess.Start(["serve"], environment);
        using var client = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(30) };
        string body = V2.Request("input", [1, 3, TestModels.Resolution, TestModels.Resolution], models.Images(1, 3));
        async Task Infer()
        {
            var response = await client.PostAsync("/v2/models/classify/infer", V2.Json(body), Cancel);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        for (int i = 0; i < 100; i++) await Infer();
        await Task.Delay(500, Cancel);

        var cpuBefore = server.CpuTime;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (int i = 0; i < 40; i++)
        {
            await Infer();
            await Task.Delay(50, Cancel);
        }
        var cpu = server.CpuTime - cpuBefore;
        var wall = clock.Elapsed;

        Assert.True(cpu < wall / 2, $"at one request every 50 ms the server used {cpu.TotalMilliseconds:F0} ms of CPU in {wall.TotalMilliseconds:F0} ms");
    }
}
