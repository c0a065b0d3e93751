using System.Net;
using Adaptive.Core.Api.V1Alpha1;
using k8s;

namespace Adaptive.Tests.Operator;

/// <summary>Two operator replicas share a Lease: one reconciles, and the other takes over when it goes.</summary>
[Collection("serving")]
public sealed class LeaderElectionTests
{
    static readonly CancellationToken Cancel = TestContext.Current.CancellationToken;

    [Fact]
    public async Task One_replica_leads_and_the_standby_takes_over_when_it_stops()
    {
        await using var harness = await OperatorHarness.Start(leaderElection: true, identity: "first");
        var lease = await OperatorHarness.Eventually(() => harness.Client.CoordinationV1.ReadNamespacedLeaseAsync("adaptive-operator", OperatorHarness.Namespace, cancellationToken: Cancel),
            l => l.Spec?.HolderIdentity == "first", "the first replica to take the lease");
        var second = await harness.StartReplica("second");
        await using var _ = second;

        await harness.Create(OperatorHarness.Sample("video-pipeline.yaml"));
        await OperatorHarness.Eventually(() => harness.Pipeline("video"),
            p => p.Status?.Conditions.Any(c => c.Type == PipelineCondition.Ready && c.Status == "True") == true, "Ready under the first leader");
        Assert.Equal("first", (await harness.Client.CoordinationV1.ReadNamespacedLeaseAsync("adaptive-operator", OperatorHarness.Namespace, cancellationToken: Cancel)).Spec.HolderIdentity);

        // The operator's own endpoints, for probes and Prometheus.
        using var http = new HttpClient { BaseAddress = harness.OperatorAddress };
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/healthz", Cancel)).StatusCode);
        string metrics = await http.GetStringAsync("/metrics", Cancel);
        Assert.Contains("adaptive_operator_reconciles_total{result=\"success\"}", metrics);
        Assert.Contains("adaptive_operator_decisions_total", metrics);
        Assert.Contains("\nprocess_working_set_bytes ", metrics);
        Assert.Contains("\ndotnet_total_memory_bytes ", metrics);

        await harness.StopOperator();
        await OperatorHarness.Eventually(() => harness.Client.CoordinationV1.ReadNamespacedLeaseAsync("adaptive-operator", OperatorHarness.Namespace, cancellationToken: Cancel),
            l => l.Spec?.HolderIdentity == "second", "the standby to take the lease", seconds: 20);
        // The new leader reconciles: a spec change is acted on.
        var pipeline = await harness.Pipeline("video");
        await harness.Client.CustomObjects.PatchNamespacedCustomObjectAsync(new k8s.Models.V1Patch("{\"spec\":{\"sloMs\":2000}}", k8s.Models.V1Patch.PatchType.MergePatch),
            InferencePipeline.Group, InferencePipeline.Version, OperatorHarness.Namespace, InferencePipeline.Plural, "video", cancellationToken: Cancel);
        await OperatorHarness.Eventually(() => harness.Pipeline("video"),
            p => p.Status?.ObservedGeneration == pipeline.Metadata.Generation + 1, "the new leader to reconcile");
        await second.StopAsync(Cancel);
    }
}
