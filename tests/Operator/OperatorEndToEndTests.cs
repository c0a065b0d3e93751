using System.Text.Json.Nodes;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Routing;
using Adaptive.Operator.Reconciliation;
using k8s;

namespace Adaptive.Tests.Operator;

/// <summary>The operator end to end against the API server double: apply, run, break the spec, delete.</summary>
[Collection("serving")]
public sealed class OperatorEndToEndTests
{
    static readonly CancellationToken Cancel = TestContext.Current.CancellationToken;

    static int Replicas(JsonObject deployment) => deployment["spec"]!["replicas"]!.GetValue<int>();

    static string? Env(JsonObject deployment, string name) =>
        deployment["spec"]!["template"]!["spec"]!["containers"]![0]!["env"]!.AsArray().FirstOrDefault(e => e!["name"]!.GetValue<string>() == name)?["value"]?.GetValue<string>();

    [Fact]
    public async Task A_pipeline_gets_its_deployments_services_routes_and_status_and_takes_them_away_when_deleted()
    {
        await using var harness = await OperatorHarness.Start();
        await harness.Create(OperatorHarness.Sample("video-pipeline.yaml"));

        var pipeline = await OperatorHarness.Eventually(() => harness.Pipeline("video"),
            p => p.Status?.Conditions.Any(c => c.Type == PipelineCondition.Ready && c.Status == "True") == true, "the pipeline to be Ready");
        var status = pipeline.Status!;
        Assert.Equal(pipeline.Metadata.Generation, status.ObservedGeneration);
        Assert.Equal(["detect", "classify"], status.Stages.Select(s => s.Name));
        // No Prometheus configured: Degraded says so, and the pipeline is planned for a starting load.
        var degraded = status.Conditions.Single(c => c.Type == PipelineCondition.Degraded);
        Assert.Equal(("True", "MetricsUnavailable"), (degraded.Status, degraded.Reason));
        Assert.Contains("no Prometheus configured", degraded.Message);
        Assert.Equal("True", status.Conditions.Single(c => c.Type == PipelineCondition.SloFeasible).Status);
        Assert.NotNull(status.ExpectedAccuracy);
        Assert.True(status.ExpectedLatencyMs <= pipeline.Spec.SloMs);

        var deployments = harness.Api.List("deployments", OperatorHarness.Namespace);
        var servers = deployments.Where(d => d["metadata"]!["labels"]![Names.Component]!.GetValue<string>() == Names.ModelServer).ToList();
        foreach (var stage in status.Stages)
            foreach (var allocation in stage.Allocations)
            {
                string name = Names.Allocation("video", stage.Name, allocation.Variant, allocation.HardwareClass);
                var deployment = servers.Single(d => d["metadata"]!["name"]!.GetValue<string>() == name);
                Assert.Equal(allocation.Replicas, Replicas(deployment));
                Assert.Equal(allocation.Batch.ToString(System.Globalization.CultureInfo.InvariantCulture), Env(deployment, "ADAPTIVE_MAX_BATCH"));
                Assert.Equal(stage.Name, Env(deployment, "ADAPTIVE_NAME"));
                Assert.Equal(pipeline.Metadata.Uid, deployment["metadata"]!["ownerReferences"]![0]!["uid"]!.GetValue<string>());
            }
        Assert.Equal(status.Stages.Sum(s => s.Allocations.Count), servers.Count);
        Assert.Single(deployments, d => d["metadata"]!["name"]!.GetValue<string>() == "video-router");
        var services = harness.Api.List("services", OperatorHarness.Namespace);
        Assert.Contains("video", services.Select(s => s["metadata"]!["name"]!.GetValue<string>()));
        // Every model server and the router serve REST and gRPC, and their Services expose both.
        Assert.All(deployments, d => Assert.Equal("8081", Env(d, "ADAPTIVE_GRPC_PORT")));
        Assert.All(services, s => Assert.Contains(s["spec"]!["ports"]!.AsArray(), p =>
            (string?)p!["name"] == "grpc" && (int?)p["port"] == 8081 && (string?)p["appProtocol"] == "kubernetes.io/h2c"));
        var routes = RouterConfig.Parse(harness.Api.List("configmaps", OperatorHarness.Namespace).Single()["data"]!["routes.json"]!.GetValue<string>());
        Assert.Equal(["detect", "classify"], routes.Stages.Select(s => s.Name));
        var events = harness.Api.List("events", OperatorHarness.Namespace).Select(e => e["reason"]!.GetValue<string>()).ToList();
        Assert.Contains("Reconfigured", events);
        Assert.Contains("MetricsUnavailable", events);

        // A deleted child is repaired: the operator watches what it owns.
        string victim = servers[0]["metadata"]!["name"]!.GetValue<string>();
        await harness.Client.AppsV1.DeleteNamespacedDeploymentAsync(victim, OperatorHarness.Namespace, cancellationToken: Cancel);
        await OperatorHarness.Eventually(() => Task.FromResult(harness.Api.List("deployments", OperatorHarness.Namespace)),
            list => list.Any(d => d["metadata"]!["name"]!.GetValue<string>() == victim), "the deleted Deployment to come back");

        // Deleting the pipeline deletes its children through the garbage collector, a moment later.
        await harness.Client.CustomObjects.DeleteNamespacedCustomObjectAsync(InferencePipeline.Group, InferencePipeline.Version, OperatorHarness.Namespace, InferencePipeline.Plural, "video", cancellationToken: Cancel);
        await OperatorHarness.Eventually(() => Task.FromResult(new[] { "deployments", "services", "configmaps" }.Sum(kind => harness.Api.List(kind, OperatorHarness.Namespace).Count)),
            count => count == 0, "the pipeline's children to be collected");
    }

    static Task Patch(OperatorHarness harness, string patch) =>
        harness.Client.CustomObjects.PatchNamespacedCustomObjectAsync(new k8s.Models.V1Patch(patch, k8s.Models.V1Patch.PatchType.MergePatch),
            InferencePipeline.Group, InferencePipeline.Version, OperatorHarness.Namespace, InferencePipeline.Plural, "video", cancellationToken: Cancel);

    [Fact]
    public async Task An_invalid_spec_is_reported_by_field_and_nothing_that_runs_changes()
    {
        await using var harness = await OperatorHarness.Start();
        await harness.Create(OperatorHarness.Sample("video-pipeline.yaml"));
        await OperatorHarness.Eventually(() => harness.Pipeline("video"),
            p => p.Status?.Conditions.Any(c => c.Type == PipelineCondition.Ready && c.Status == "True") == true, "the pipeline to be Ready");
        var before = harness.Api.List("deployments", OperatorHarness.Namespace).Select(d => (d["metadata"]!["name"]!.GetValue<string>(), Replicas(d))).Order().ToList();

        // What the CRD's schema forbids never reaches the operator: the API server refuses it.
        var refused = await Assert.ThrowsAsync<k8s.Autorest.HttpOperationException>(() => Patch(harness, "{\"spec\":{\"stages\":[{\"name\":\"detect\",\"maxReplicas\":0,\"variants\":[]}]}}"));
        Assert.Equal(422, (int)refused.Response.StatusCode);
        Assert.Contains("spec.stages[0].maxReplicas", refused.Response.Content);
        // What only the operator can check (references between fields) is reported: the profiles' classes are gone.
        await Patch(harness, "{\"spec\":{\"hardwareClasses\":[{\"name\":\"tpu\",\"costPerReplica\":1}]}}");
        var pipeline = await OperatorHarness.Eventually(() => harness.Pipeline("video"),
            p => p.Status?.Conditions.Any(c => c.Reason == "InvalidSpec") == true, "InvalidSpec");
        var ready = pipeline.Status!.Conditions.Single(c => c.Type == PipelineCondition.Ready);
        Assert.Equal("False", ready.Status);
        Assert.StartsWith("spec.stages", ready.Message);
        Assert.Equal(pipeline.Metadata.Generation, pipeline.Status.ObservedGeneration);
        await Task.Delay(1000, Cancel);
        var after = harness.Api.List("deployments", OperatorHarness.Namespace).Select(d => (d["metadata"]!["name"]!.GetValue<string>(), Replicas(d))).Order().ToList();
        Assert.Equal(before, after);
        Assert.Contains("InvalidSpec", harness.Api.List("events", OperatorHarness.Namespace).Select(e => e["reason"]!.GetValue<string>()));
    }

    /// <summary>No configuration meets the SLO: the planner's fallback runs, and SLOFeasible says why.</summary>
    [Fact]
    public async Task An_infeasible_slo_runs_the_fallback_and_says_so()
    {
        await using var harness = await OperatorHarness.Start();
        await harness.Create(OperatorHarness.Sample("video-pipeline.yaml", p => p.Spec.SloMs = 20)); // below any detector's latency
        var pipeline = await OperatorHarness.Eventually(() => harness.Pipeline("video"),
            p => p.Status?.Conditions.Any(c => c.Type == PipelineCondition.SloFeasible) == true, "a decision");
        var feasible = pipeline.Status!.Conditions.Single(c => c.Type == PipelineCondition.SloFeasible);
        Assert.Equal(("False", "Infeasible"), (feasible.Status, feasible.Reason));
        Assert.Contains("no configuration meets the 20 ms SLO", feasible.Message);
        Assert.Equal("infeasible", pipeline.Status.PlanStatus);
        Assert.NotEmpty(harness.Api.List("deployments", OperatorHarness.Namespace)); // the fallback runs: something serves
        var warning = harness.Api.List("events", OperatorHarness.Namespace).First(e => e["reason"]!.GetValue<string>() == "Reconfigured");
        Assert.Equal("Warning", warning["type"]!.GetValue<string>());
    }

    /// <summary>
    /// A load no configuration can carry: the plan runs the most capacity the limits allow, SLOFeasible says so, and the
    /// status is written without a latency (the saturated stage's is unbounded, which JSON cannot hold).
    /// </summary>
    [Fact]
    public async Task A_load_beyond_every_configuration_runs_the_most_capacity_and_says_so()
    {
        await using var scene = await LoadScene.Start(("resnet-mixed", 5000));
        var harness = scene.Harness;
        await harness.Create(OperatorHarness.Sample("resnet-mixed.yaml", p =>
        {
            p.Spec.Adaptation.Forecaster = "last-value";
            p.Spec.Stages[0].MaxReplicas = 2;
        }));

        var overloaded = await OperatorHarness.Eventually(() => harness.Pipeline("resnet-mixed"),
            p => p.Status?.Conditions.Any(c => c.Type == PipelineCondition.SloFeasible && c.Status == "False") == true, "the pipeline planned for a load it cannot carry", seconds: 30);
        var status = overloaded.Status!;
        Assert.Equal("infeasible", status.PlanStatus);
        Assert.StartsWith("no configuration meets the 250 ms SLO at ", status.Conditions.Single(c => c.Type == PipelineCondition.SloFeasible).Message);
        Assert.Equal(2, status.Stages.Single().Allocations.Sum(a => a.Replicas));
        Assert.Null(status.ExpectedLatencyMs);
        Assert.True(status.PredictedLoadRps > 4000, $"planned for {status.PredictedLoadRps} rps");
    }
}
