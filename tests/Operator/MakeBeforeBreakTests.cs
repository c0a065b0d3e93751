using System.Text.Json;
using System.Text.Json.Nodes;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Routing;
using Adaptive.Operator.Reconciliation;
using Adaptive.Tests.Kubernetes;
using k8s;
using k8s.Models;

namespace Adaptive.Tests.Operator;

/// <summary>
/// The reconciler moving a stage from six replicas of resnet152 to five of resnet101 and one of resnet152, against the
/// API server double: what the Deployments and the router's routes hold while resnet101's pods start, and after.
/// </summary>
public sealed class MakeBeforeBreakTests
{
    static readonly CancellationToken Cancel = TestContext.Current.CancellationToken;
    const string Pipeline = "resnet-mixed";

    static readonly string Resnet152 = Names.Allocation(Pipeline, "classify", "resnet152", "cpu");
    static readonly string Resnet101 = Names.Allocation(Pipeline, "classify", "resnet101", "cpu");

    [Fact]
    public async Task A_variant_planned_smaller_keeps_its_replicas_and_the_traffic_until_the_new_one_is_ready()
    {
        await using var scene = await Scene.Start();
        await scene.Decide(("resnet101", 5, 25), ("resnet152", 1, 5));
        Assert.Equal(5, scene.Replicas(Resnet101));
        Assert.Equal(6, scene.Replicas(Resnet152)); // not one replica with the stage's whole load
        Assert.Equal([Resnet152], scene.Routes().Select(r => r.Host));
        Assert.Equal("Progressing", (await scene.Status()).Conditions.Single(c => c.Type == PipelineCondition.Ready).Reason);

        // Four of resnet101's five pods are ready: not yet.
        await scene.Ready(Resnet101, 4);
        await scene.Reconcile();
        Assert.Equal(6, scene.Replicas(Resnet152));
        Assert.Equal([Resnet152], scene.Routes().Select(r => r.Host));

        // All five: the traffic moves, and resnet152 shrinks with it.
        await scene.Ready(Resnet101, 5);
        await scene.Reconcile();
        Assert.Equal(1, scene.Replicas(Resnet152));
        Assert.Equal([Resnet101, Resnet152], scene.Routes().Select(r => r.Host));
        Assert.Equal(5, scene.Routes().First().Weight / scene.Routes().Last().Weight, 3);
    }

    [Fact]
    public async Task A_variant_planned_smaller_gives_its_room_up_when_the_new_pods_cannot_be_placed()
    {
        await using var scene = await Scene.Start();
        await scene.Decide(("resnet101", 5, 25), ("resnet152", 1, 5));
        Assert.Equal(6, scene.Replicas(Resnet152));

        await OperatorFaultTests.Pod(scene.Client, scene.Deployment(Resnet101), "pending", new V1PodStatus
        {
            Phase = "Pending",
            Conditions = [new V1PodCondition { Type = "PodScheduled", Status = "False", Reason = "Unschedulable", Message = "0/3 nodes are available: 3 Insufficient cpu." }],
        });
        await scene.Reconcile();
        Assert.Equal(1, scene.Replicas(Resnet152));
        Assert.Equal([Resnet152], scene.Routes().Select(r => r.Host)); // the traffic stays until resnet101 serves
        Assert.Contains("Unschedulable", (await scene.Status()).Conditions.Single(c => c.Type == PipelineCondition.Ready).Message);
    }

    /// <summary>The pipeline, its reconciler with no Prometheus (it decides nothing of its own: decisions are written into its status), and six ready replicas of resnet152.</summary>
    sealed class Scene(ApiServerDouble api, k8s.Kubernetes client, PipelineReconciler reconciler, long generation) : IAsyncDisposable
    {
        public k8s.Kubernetes Client => client;

        public static async Task<Scene> Start()
        {
            var api = await ApiServerDouble.Start();
            var client = new k8s.Kubernetes(api.ClientConfiguration());
            var created = (JsonElement)await client.CustomObjects.CreateNamespacedCustomObjectAsync(OperatorHarness.Sample("resnet-mixed.yaml"),
                InferencePipeline.Group, InferencePipeline.Version, OperatorHarness.Namespace, InferencePipeline.Plural, cancellationToken: Cancel);
            // No Prometheus: a surge check that cannot read metrics decides nothing, so only the recorded decisions run.
            var reconciler = OperatorHarness.Reconciler(client, prometheus: null, TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(15));
            var scene = new Scene(api, client, reconciler, created.GetProperty("metadata").GetProperty("generation").GetInt64());
            await scene.Decide(("resnet152", 6, 30));
            await OperatorHarness.Eventually(() => Task.FromResult(scene.Deployment(Resnet152)), d => d["status"]?["readyReplicas"]?.GetValue<long>() == 6, "resnet152's six pods ready");
            await scene.Reconcile();
            Assert.Equal([Resnet152], scene.Routes().Select(r => r.Host));
            api.PodsReadyAfter = null; // from now on, pods turn ready only when a test says so
            return scene;
        }

        public Task Reconcile() => reconciler.Reconcile(OperatorHarness.Namespace, Pipeline, Cancel);

        /// <summary>Records a decision for the classify stage in the status, as the operator does, and reconciles.</summary>
        public async Task Decide(params (string Variant, int Replicas, double ShareRps)[] allocations)
        {
            var status = new JsonObject
            {
                ["observedGeneration"] = generation,
                ["lastDecisionTime"] = DateTimeOffset.UtcNow.ToString("O"),
                ["stages"] = new JsonArray(new JsonObject
                {
                    ["name"] = "classify",
                    ["allocations"] = new JsonArray([.. allocations.Select(a => (JsonNode)new JsonObject
                        { ["variant"] = a.Variant, ["hardwareClass"] = "cpu", ["replicas"] = a.Replicas, ["batch"] = 1, ["shareRps"] = a.ShareRps })]),
                }),
            };
            await client.CustomObjects.PatchNamespacedCustomObjectStatusAsync(new V1Patch(new JsonObject { ["status"] = status }.ToJsonString(), V1Patch.PatchType.MergePatch),
                InferencePipeline.Group, InferencePipeline.Version, OperatorHarness.Namespace, InferencePipeline.Plural, Pipeline, cancellationToken: Cancel);
            await Reconcile();
        }

        public Task Ready(string deployment, int pods) => client.AppsV1.PatchNamespacedDeploymentStatusAsync(new V1Patch(
            $"{{\"status\":{{\"replicas\":{Replicas(deployment)},\"readyReplicas\":{pods},\"availableReplicas\":{pods},\"updatedReplicas\":{Replicas(deployment)}}}}}", V1Patch.PatchType.MergePatch),
            deployment, OperatorHarness.Namespace, cancellationToken: Cancel);

        public JsonObject Deployment(string name) => api.List("deployments", OperatorHarness.Namespace).Single(d => d["metadata"]!["name"]!.GetValue<string>() == name);

        public long Replicas(string name) => Deployment(name)["spec"]!["replicas"]!.GetValue<long>();

        /// <summary>The classify stage's routes as the router gets them: each Deployment's host and weight, by host.</summary>
        public List<(string Host, double Weight)> Routes() =>
            [.. RouterConfig.Parse(api.List("configmaps", OperatorHarness.Namespace).Single()["data"]!["routes.json"]!.GetValue<string>())
                .Stages.Single(s => s.Name == "classify").Variants.Select(v => (new Uri(v.Endpoint).Host, v.Weight)).OrderBy(r => r.Host)];

        public async Task<InferencePipelineStatus> Status() =>
            JsonSerializer.Deserialize<InferencePipeline>((JsonElement)await client.CustomObjects.GetNamespacedCustomObjectAsync(
                InferencePipeline.Group, InferencePipeline.Version, OperatorHarness.Namespace, InferencePipeline.Plural, Pipeline, cancellationToken: Cancel))!.Status!;

        public async ValueTask DisposeAsync()
        {
            client.Dispose();
            await api.DisposeAsync();
        }
    }
}
