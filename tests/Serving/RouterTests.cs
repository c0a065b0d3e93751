using Adaptive.Core.Routing;
using System.Net;
using Adaptive.ModelServer.Backend;
using Adaptive.ModelServer.Hosting;
using Adaptive.ModelServer.Protocol;
using Adaptive.ModelServer.Routing;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Serving;

[Collection("serving")]
public sealed class RouterTests(TestModels models) : IDisposable
{
    static readonly CancellationToken Cancel = TestContext.Current.CancellationToken;
    readonly string configPath = Path.Combine(Directory.CreateTempSubdirectory("adaptive-router-").FullName, "routes.json");

    string ImageRequest(int seed) => V2.Request("input", [1, 3, TestModels.Resolution, TestModels.Resolution], models.Images(1, seed));

    static string Success(string variant, string model = "classify") =>
        $"adaptive_model_requests_total{{model=\"{model}\",variant=\"{variant}\",outcome=\"success\"}}";

    void WriteConfig(string pipeline, params (string Stage, (string Name, Uri Endpoint, double Weight)[] Variants)[] stages) =>
        File.WriteAllText(configPath, new RouterConfig(pipeline,
            [.. stages.Select(s => new StageRoute(s.Stage, [.. s.Variants.Select(v => new VariantRoute(v.Name, v.Endpoint.ToString(), v.Weight))]))]).Write());

    Task<RunningServer> StartRouter(int maxInFlight = 64, HttpOptions? http = null) =>
        RunningServer.StartRouter(new RouterOptions(http ?? RunningServer.Http(), configPath, TimeSpan.FromMilliseconds(50), maxInFlight));

    static async Task WaitFor(Func<Task<bool>> condition, string what)
    {
        for (int i = 0; i < 200; i++)
        {
            if (await condition()) return;
            await Task.Delay(25, Cancel);
        }
        Assert.Fail($"timed out waiting for {what}");
    }

    /// <summary>
    /// Weights 3:1 send exactly 30 and 10 of 40 requests; a rewritten file moves all traffic within a poll;
    /// a broken file is refused and the last good configuration keeps serving.
    /// </summary>
    [Fact]
    public async Task Splits_by_weight_and_reloads_the_file_when_it_changes()
    {
        await using var a = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18, variant: "a"));
        await using var b = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18, variant: "b"));
        WriteConfig("images", ("classify", [("a", a.Address, 3), ("b", b.Address, 1)]));
        await using var router = await StartRouter();

        for (int i = 0; i < 40; i++)
        {
            var response = await router.Client.PostAsync("/v2/models/images/infer", V2.Json(ImageRequest(i)), Cancel);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(1000, (await V2.Output(response, "logits")).Length);
        }
        Assert.Equal(30, await a.Metric(Success("a")));
        Assert.Equal(10, await b.Metric(Success("b")));
        Assert.Equal(40, await router.Metric("adaptive_pipeline_requests_total{pipeline=\"images\",outcome=\"success\"}"));
        Assert.Equal(30, await router.Metric("adaptive_pipeline_stage_requests_total{pipeline=\"images\",stage=\"classify\",variant=\"a\",code=\"2xx\"}"));
        Assert.Equal(40, await router.Metric("adaptive_pipeline_request_duration_seconds_count{pipeline=\"images\"}"));
        Assert.True(await router.Metric("process_working_set_bytes") > 0);
        Assert.True(await router.Metric("dotnet_total_memory_bytes") > 0);

        WriteConfig("images", ("classify", [("a", a.Address, 0), ("b", b.Address, 2.5)]));
        await WaitFor(async () => await router.Metric("adaptive_router_config_generation") == 2, "the new configuration");
        for (int i = 0; i < 10; i++)
            Assert.Equal(HttpStatusCode.OK, (await router.Client.PostAsync("/v2/models/images/infer", V2.Json(ImageRequest(i)), Cancel)).StatusCode);
        Assert.Equal(30, await a.Metric(Success("a")));
        Assert.Equal(20, await b.Metric(Success("b")));

        File.WriteAllText(configPath, "{\"pipeline\":\"images\",\"stages\":[]}");
        await WaitFor(async () => await router.Metric("adaptive_router_config_reloads_total{result=\"failure\"}") >= 1, "the broken file to be refused");
        Assert.Equal(2, await router.Metric("adaptive_router_config_generation"));
        Assert.Equal(HttpStatusCode.OK, (await router.Client.PostAsync("/v2/models/images/infer", V2.Json(ImageRequest(0)), Cancel)).StatusCode);
        Assert.Equal(21, await b.Metric(Success("b")));
    }

    /// <summary>Two stages: the classifier's logits become the head's input, and the answer is what the two models give in sequence.</summary>
    [Fact]
    public async Task Chains_stages_feeding_each_stage_the_previous_outputs()
    {
        await using var classify = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18, variant: "resnet18"));
        await using var head = await RunningServer.StartModel(RunningServer.ModelOptions(models.Head, name: "head", variant: "linear"));
        WriteConfig("two-stage", ("classify", [("resnet18", classify.Address, 1)]), ("head", [("linear", head.Address, 1)]));
        await using var router = await StartRouter();

        var response = await router.Client.PostAsync("/v2/models/two-stage/infer", V2.Json(ImageRequest(9)), Cancel);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var probabilities = await V2.Output(response, "probabilities");

        var runtime = new RuntimeOptions(1, 1, Device.Cpu);
        using var resnet = OnnxModel.Load(models.ResNet18, runtime, _ => { });
        using var linear = OnnxModel.Load(models.Head, runtime, _ => { });
        var logits = resnet.Run([new InferRequest(null, [new Tensor("input", TensorDataType.Fp32, [1, 3, 32, 32], models.Images(1, 9))], null)])[0][0];
        var expected = (float[])linear.Run([new InferRequest(null, [logits with { Name = "features" }], null)])[0][0].Data;
        Assert.Equal(TestModels.HeadClasses, probabilities.Length);
        for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[i], probabilities[i], 4);
        Assert.Equal(1, probabilities.Sum(), 3);
    }

    [Fact]
    public async Task Stage_errors_come_back_naming_the_stage_and_variant()
    {
        await using var classify = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18, variant: "resnet18"));
        var closedPort = new Uri("http://127.0.0.1:9/");
        WriteConfig("images", ("classify", [("resnet18", classify.Address, 1)]), ("head", [("linear", closedPort, 1)]));
        await using var router = await StartRouter();

        var unreachable = await router.Client.PostAsync("/v2/models/images/infer", V2.Json(ImageRequest(1)), Cancel);
        Assert.Equal(HttpStatusCode.BadGateway, unreachable.StatusCode);
        Assert.Contains("stage 'head'", await V2.Error(unreachable));

        var bad = await router.Client.PostAsync("/v2/models/images/infer", V2.Json("{\"inputs\":[{\"name\":\"image\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]}]}"), Cancel);
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Equal("stage 'classify' (variant 'resnet18'): unknown input 'image'; the model's inputs are input", await V2.Error(bad));

        var unknown = await router.Client.PostAsync("/v2/models/other/infer", V2.Json(ImageRequest(1)), Cancel);
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        Assert.Equal("unknown pipeline 'other'; this router serves 'images'", await V2.Error(unknown));
        Assert.Equal(1, await router.Metric("adaptive_pipeline_requests_total{pipeline=\"images\",outcome=\"error\"}"));
        Assert.Equal(1, await router.Metric("adaptive_pipeline_requests_total{pipeline=\"images\",outcome=\"bad_request\"}"));
    }

    [Fact]
    public async Task Refuses_requests_beyond_its_in_flight_limit_and_answers_late_ones_with_504()
    {
        await using var slow = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18, maxBatch: 64, maxQueueDelayMs: 300));
        WriteConfig("images", ("classify", [("resnet18", slow.Address, 1)]));
        await using (var router = await StartRouter(maxInFlight: 4))
        {
            var responses = await Task.WhenAll(Enumerable.Range(0, 12).Select(i => router.Client.PostAsync("/v2/models/images/infer", V2.Json(ImageRequest(i)), Cancel)));
            Assert.Equal(4, responses.Count(r => r.StatusCode == HttpStatusCode.OK));
            var refused = responses.Where(r => r.StatusCode == HttpStatusCode.TooManyRequests).ToList();
            Assert.Equal(8, refused.Count);
            Assert.Equal("the router has 4 requests in progress", await V2.Error(refused[0]));
            Assert.NotNull(refused[0].Headers.RetryAfter);
        }
        await using (var router = await StartRouter(http: RunningServer.Http(requestTimeoutMs: 100)))
        {
            // The stage is told the 100 ms it has: having measured its batches, it refuses at once what would be late.
            var refused = await router.Client.PostAsync("/v2/models/images/infer", V2.Json(ImageRequest(0)), Cancel);
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            Assert.Contains("deadline", await V2.Error(refused));
        }
        // A server that has measured nothing yet admits the request and cannot answer it in time: the router answers 504.
        await using var fresh = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18, maxBatch: 64, maxQueueDelayMs: 300));
        WriteConfig("images", ("classify", [("resnet18", fresh.Address, 1)]));
        await using (var router = await StartRouter(http: RunningServer.Http(requestTimeoutMs: 100)))
        {
            var late = await router.Client.PostAsync("/v2/models/images/infer", V2.Json(ImageRequest(0)), Cancel);
            Assert.Equal(HttpStatusCode.GatewayTimeout, late.StatusCode);
            Assert.Equal("the pipeline did not answer within 100 ms", await V2.Error(late));
        }
    }

    /// <summary>
    /// With the pipeline's SLO in its configuration, the router gives a stage only what is left of it: a stage that
    /// needs 300 ms (its fill delay) answers a 1 s SLO, and refuses at once under a 100 ms one, which the router counts
    /// as a miss of the SLO; without the SLO nothing is counted.
    /// </summary>
    [Fact]
    public async Task With_the_slo_stages_get_what_is_left_of_it_and_misses_are_counted()
    {
        await using var slow = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18, maxBatch: 64, maxQueueDelayMs: 300));
        void Configure(double? sloMs) => File.WriteAllText(configPath,
            new RouterConfig("images", [new StageRoute("classify", [new VariantRoute("resnet18", slow.Address.ToString(), 1)])], sloMs).Write());
        const string misses = "adaptive_pipeline_slo_misses_total{pipeline=\"images\"}";
        Configure(null);
        await using var router = await StartRouter();
        Assert.Equal(HttpStatusCode.OK, (await router.Client.PostAsync("/v2/models/images/infer", V2.Json(ImageRequest(1)), Cancel)).StatusCode);

        Configure(1000);
        await WaitFor(async () => await router.Metric("adaptive_router_config_generation") == 2, "the configuration with a 1 s SLO");
        Assert.Equal(HttpStatusCode.OK, (await router.Client.PostAsync("/v2/models/images/infer", V2.Json(ImageRequest(2)), Cancel)).StatusCode);
        Assert.Equal(0, await router.Metric(misses));

        Configure(100);
        await WaitFor(async () => await router.Metric("adaptive_router_config_generation") == 3, "the configuration with a 100 ms SLO");
        var refused = await router.Client.PostAsync("/v2/models/images/infer", V2.Json(ImageRequest(3)), Cancel);
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        Assert.Matches(@"^stage 'classify' \(variant 'resnet18'\): the request would wait about \d+ ms and miss its \d+ ms deadline$", await V2.Error(refused));
        Assert.Equal(1, await router.Metric(misses));
        Assert.Equal(1, await router.Metric("adaptive_pipeline_requests_total{pipeline=\"images\",outcome=\"queue_full\"}"));
    }

    /// <summary>The router drains as the server does: not ready at once, still routing during the drain delay.</summary>
    [Fact]
    public async Task On_stop_the_router_turns_unready_and_keeps_routing_through_the_drain_delay()
    {
        await using var classify = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18));
        WriteConfig("images", ("classify", [("resnet18", classify.Address, 1)]));
        await using var router = await StartRouter(http: RunningServer.Http(drainDelayMs: 1500));
        Assert.Equal(HttpStatusCode.OK, (await router.Client.GetAsync("/v2/health/ready", Cancel)).StatusCode);

        var stopping = router.StopAsync();
        await WaitFor(async () => (await router.Client.GetAsync("/v2/health/ready", Cancel)).StatusCode == HttpStatusCode.ServiceUnavailable, "readiness to turn false");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await router.Client.GetAsync("/v2/models/images/ready", Cancel)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await router.Client.PostAsync("/v2/models/images/infer", V2.Json(ImageRequest(3)), Cancel)).StatusCode);
        Assert.False(stopping.IsCompleted, "the router should still be in its drain delay");
        await stopping;
    }

    public static TheoryData<string, string> BadConfigs => new()
    {
        { "[]", "not a router configuration" },
        { "{\"pipeline\":\"p\",\"stages\":[],\"extra\":1}", "not a router configuration: $.extra" },
        { "{\"pipeline\":\"\",\"stages\":[]}", "pipeline: a name is required" },
        { "{\"pipeline\":\"p\",\"stages\":[]}", "stages: at least one stage is required" },
        { "{\"pipeline\":\"p\",\"sloMs\":0,\"stages\":[{\"name\":\"s\",\"variants\":[{\"name\":\"v\",\"endpoint\":\"http://v\",\"weight\":1}]}]}", "sloMs: must be a positive number of milliseconds, got 0" },
        { "{\"pipeline\":\"p\",\"stages\":[{\"name\":\"s\",\"variants\":[]}]}", "stages[0].variants: at least one variant is required" },
        { "{\"pipeline\":\"p\",\"stages\":[{\"name\":\"s\",\"variants\":[{\"name\":\"v\",\"endpoint\":\"svc:80\",\"weight\":1}]}]}", "stages[0].variants[0].endpoint: 'svc:80' is not an absolute http(s) URL" },
        { "{\"pipeline\":\"p\",\"stages\":[{\"name\":\"s\",\"variants\":[{\"name\":\"v\",\"endpoint\":\"http://v\",\"weight\":-1}]}]}", "stages[0].variants[0].weight: must be a non-negative number, got -1" },
        { "{\"pipeline\":\"p\",\"stages\":[{\"name\":\"s\",\"variants\":[{\"name\":\"v\",\"endpoint\":\"http://v\",\"weight\":0}]}]}", "stages[0].variants: the weights must not all be zero" },
        { "{\"pipeline\":\"p\",\"stages\":[{\"name\":\"s\",\"variants\":[{\"name\":\"v\",\"endpoint\":\"http://v\",\"weight\":1,\"transport\":\"http3\"}]}]}", "not a router configuration: $.stages[0].variants[0].transport" },
        { "{\"pipeline\":\"p\",\"stages\":[{\"name\":\"s\",\"variants\":[{\"name\":\"v\",\"endpoint\":\"http://v\",\"weight\":1}]},{\"name\":\"s\",\"variants\":[{\"name\":\"v\",\"endpoint\":\"http://v\",\"weight\":1}]}]}", "stages[1].name: stage 's' appears twice" },
    };

    [Theory]
    [MemberData(nameof(BadConfigs))]
    public void A_bad_configuration_is_refused_naming_the_field(string text, string message) =>
        Assert.Contains(message, Assert.Throws<RouterConfigException>(() => RouterConfig.Parse(text)).Message);

    public void Dispose() => Directory.Delete(Path.GetDirectoryName(configPath)!, recursive: true);
}
