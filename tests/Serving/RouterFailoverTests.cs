using System.Collections.Concurrent;
using System.Net;
using Adaptive.Core.Routing;
using Adaptive.Experiments.Live;
using Adaptive.ModelServer.Routing;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Serving;

/// <summary>
/// The router under load while a variant hangs (SIGSTOP) and another dies (SIGKILL): requests go to the
/// stage's other variant, the failed one is ejected, and a variant that recovers gets traffic again.
/// </summary>
[Collection("serving")]
public sealed class RouterFailoverTests(TestModels models) : IDisposable
{
    static readonly CancellationToken Cancel = TestContext.Current.CancellationToken;
    readonly string configPath = Path.Combine(Directory.CreateTempSubdirectory("adaptive-failover-").FullName, "routes.json");

    public void Dispose() => Directory.Delete(Path.GetDirectoryName(configPath)!, recursive: true);

    Task<ServerProcess> Variant(string name)
    {
        var environment = models.ServerEnvironment(intraOpThreads: 1);
        environment["ADAPTIVE_VARIANT"] = name;
        environment["ADAPTIVE_REQUEST_TIMEOUT_MS"] = "10000";
        return ServerProcess.Start(["serve"], environment);
    }

    static async Task<double> Successes(ServerProcess server, string variant)
    {
        using var http = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(5) };
        string text = await http.GetStringAsync("/metrics", Cancel);
        string series = $"adaptive_model_requests_total{{model=\"classify\",variant=\"{variant}\",outcome=\"success\"}} ";
        return double.Parse(text.Split('\n').Single(l => l.StartsWith(series, StringComparison.Ordinal))[series.Length..], System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public async Task A_hung_and_a_killed_variant_cost_under_one_percent_and_a_recovered_one_gets_traffic_again()
    {
        using var a = await Variant("a");
        using var b = await Variant("b");
        File.WriteAllText(configPath, new RouterConfig("images", [new StageRoute("classify", [new VariantRoute("a", a.Address!.ToString(), 1), new VariantRoute("b", b.Address!.ToString(), 1)])]).Write());
        await using var router = await RunningServer.StartRouter(new RouterOptions(RunningServer.Http(requestTimeoutMs: 4000), configPath, TimeSpan.FromSeconds(1), 256));
        string body = V2.Request("input", [1, 3, TestModels.Resolution, TestModels.Resolution], models.Images(1, 9));

        var statuses = new ConcurrentQueue<string>();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Cancel);
        async Task Client()
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    using var response = await router.Client.PostAsync("/v2/models/images/infer", V2.Json(body), Cancel);
                    statuses.Enqueue(response.IsSuccessStatusCode ? "200" : $"{(int)response.StatusCode} {await V2.Error(response)}");
                }
                catch (HttpRequestException e)
                {
                    statuses.Enqueue(e.Message);
                }
                await Task.Delay(10, CancellationToken.None);
            }
        }
        var clients = Enumerable.Range(0, 4).Select(_ => Client()).ToList();
        await Task.Delay(1500, Cancel);

        // a hangs: its requests time out at half the deadline and go to b; a is ejected.
        a.Signal("STOP");
        await Task.Delay(3000, Cancel);
        Assert.True(await router.Metric("adaptive_router_ejections_total{pipeline=\"images\",stage=\"classify\",variant=\"a\"}") >= 1, "a hung variant is ejected");
        Assert.Equal(HttpStatusCode.OK, (await router.Client.GetAsync("/v2/health/ready", Cancel)).StatusCode); // b still serves

        // a recovers: once a probe finds it ready, it takes its share again.
        a.Signal("CONT");
        double before = await Successes(a, "a");
        for (int i = 0; i < 150 && await Successes(a, "a") < before + 20; i++) await Task.Delay(100, Cancel);
        Assert.True(await Successes(a, "a") >= before + 20, "traffic returns to the recovered variant");

        // b dies: its requests fail to connect and go to a.
        b.Signal("KILL");
        await Task.Delay(2000, Cancel);
        await stop.CancelAsync();
        await Task.WhenAll(clients);

        var failed = statuses.Where(s => s != "200").ToList();
        Assert.True(statuses.Count > 200, $"only {statuses.Count} requests");
        Assert.True(failed.Count <= statuses.Count / 100, $"{failed.Count} of {statuses.Count} failed: {string.Join("; ", failed.Take(5))}");
        Assert.True(await router.Metric("adaptive_router_retries_total{pipeline=\"images\",stage=\"classify\"}") >= 1);
        Assert.True(await router.Metric("adaptive_router_ejections_total{pipeline=\"images\",stage=\"classify\",variant=\"b\"}") >= 1, "a dead variant is ejected");
        Assert.Equal(HttpStatusCode.OK, (await router.Client.GetAsync("/v2/health/ready", Cancel)).StatusCode);
    }

    /// <summary>When every variant of a stage is ejected the router is not ready, and says which stage has none.</summary>
    [Fact]
    public async Task A_stage_without_a_healthy_variant_makes_the_router_unready()
    {
        var dead = new Uri("http://127.0.0.1:9"); // the discard port: nothing listens
        File.WriteAllText(configPath, new RouterConfig("images", [new StageRoute("classify", [new VariantRoute("gone", dead.ToString(), 1)])]).Write());
        await using var router = await RunningServer.StartRouter(new RouterOptions(RunningServer.Http(requestTimeoutMs: 2000), configPath, TimeSpan.FromSeconds(1), 64));
        string body = V2.Request("input", [1, 3, TestModels.Resolution, TestModels.Resolution], models.Images(1, 9));
        for (int i = 0; i < VariantHealth.FailuresToEject; i++)
            Assert.Equal(HttpStatusCode.BadGateway, (await router.Client.PostAsync("/v2/models/images/infer", V2.Json(body), Cancel)).StatusCode);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await router.Client.GetAsync("/v2/health/ready", Cancel)).StatusCode);
        var refused = await router.Client.PostAsync("/v2/models/images/infer", V2.Json(body), Cancel);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
        Assert.Equal("stage 'classify' has no healthy variant", await V2.Error(refused));
    }
}
