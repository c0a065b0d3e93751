using System.Text.Json;
using System.Text.Json.Nodes;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Experiments.Manifests;
using Adaptive.Operator.Hosting;
using Adaptive.Operator.Reconciliation;
using Adaptive.Tests.Kubernetes;
using Adaptive.Tests.Support;
using k8s;
using Microsoft.AspNetCore.Builder;

namespace Adaptive.Tests.Operator;

/// <summary>The operator, in this process, against the API server double, with timings shortened for tests.</summary>
public sealed class OperatorHarness : IAsyncDisposable
{
    public const string Namespace = "ml";
    public ApiServerDouble Api { get; }
    public k8s.Kubernetes Client { get; }
    readonly WebApplication app;

    OperatorHarness(ApiServerDouble api, WebApplication app)
    {
        Api = api;
        this.app = app;
        Client = new k8s.Kubernetes(new KubernetesClientConfiguration { Host = api.Address.ToString() });
    }

    public static async Task<OperatorHarness> Start(TimeSpan? retireAfter = null, Uri? prometheus = null)
    {
        var api = await ApiServerDouble.Start();
        var options = new OperatorOptions("127.0.0.1", 0, null, prometheus, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(3),
            new ReconcilerSettings(new WorkloadSettings("adaptive-server:test", TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(20)),
                retireAfter ?? TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1)),
            Workers: 2, LeaderElection: false, LeaseNamespace: Namespace, Identity: "test");
        Environment.SetEnvironmentVariable("Logging__LogLevel__Default", "Warning");
        var app = OperatorApp.Build(options, new KubernetesClientConfiguration { Host = api.Address.ToString() });
        await app.StartAsync();
        return new OperatorHarness(api, app);
    }

    /// <summary>A sample manifest with its adaptation sped up for tests, as the JSON the API server stores.</summary>
    public static JsonObject Sample(string file, Action<InferencePipeline>? edit = null)
    {
        var pipeline = ManifestReader.Parse(File.ReadAllText(RepoPaths.Of("samples", file)));
        pipeline.Spec.Adaptation.IntervalSeconds = 2;
        pipeline.Spec.Adaptation.ScaleDownCooldownSeconds = 0;
        pipeline.Spec.Adaptation.PlannerTimeLimitSeconds = 2;
        pipeline.Spec.Adaptation.Metrics.HistorySeconds = 10;
        edit?.Invoke(pipeline);
        var json = (JsonObject)JsonSerializer.SerializeToNode(pipeline, new JsonSerializerOptions { DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull })!;
        json["metadata"]!["namespace"] = Namespace;
        return json;
    }

    public Task Create(JsonObject pipeline) =>
        Client.CustomObjects.CreateNamespacedCustomObjectAsync(pipeline, InferencePipeline.Group, InferencePipeline.Version, Namespace, InferencePipeline.Plural);

    public async Task<InferencePipeline> Pipeline(string name) =>
        ((JsonElement)await Client.CustomObjects.GetNamespacedCustomObjectAsync(InferencePipeline.Group, InferencePipeline.Version, Namespace, InferencePipeline.Plural, name))
        .Deserialize<InferencePipeline>()!;

    /// <summary>Polls until <paramref name="condition"/> holds (20 s at most) and returns its last value.</summary>
    public static async Task<T> Eventually<T>(Func<Task<T>> read, Func<T, bool> condition, string what, double seconds = 20)
    {
        T value = await read();
        for (var clock = System.Diagnostics.Stopwatch.StartNew(); !condition(value); value = await read())
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(seconds)) Assert.Fail($"timed out after {seconds} s waiting for {what}; last: {JsonSerializer.Serialize(value)}");
            await Task.Delay(100);
        }
        return value;
    }

    public async ValueTask DisposeAsync()
    {
        await app.StopAsync();
        await app.DisposeAsync();
        Client.Dispose();
        await Api.DisposeAsync();
    }
}
