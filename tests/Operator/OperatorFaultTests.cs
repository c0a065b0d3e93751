using System.Text.Json.Nodes;
using Adaptive.Core.Api.V1Alpha1;
using k8s;
using k8s.Models;

namespace Adaptive.Tests.Operator;

/// <summary>Faults of the cluster and of the operator itself; nothing that runs is lost or disturbed.</summary>
[Collection("serving")]
public sealed class OperatorFaultTests
{
    static readonly CancellationToken Cancel = TestContext.Current.CancellationToken;

    static Task<InferencePipeline> Ready(OperatorHarness harness, long? generation = null) =>
        OperatorHarness.Eventually(() => harness.Pipeline("video"),
            p => p.Status?.Conditions.Any(c => c.Type == PipelineCondition.Ready && c.Status == "True") == true
                 && (generation is null || p.Status.ObservedGeneration == generation),
            "the pipeline to be Ready");

    static List<string> Snapshot(OperatorHarness harness) =>
        [.. harness.Api.List("deployments", OperatorHarness.Namespace).Select(d => $"{d["metadata"]!["name"]} {d["metadata"]!["resourceVersion"]} {d["spec"]!["replicas"]}").Order()];

    static Task Edit(OperatorHarness harness, string patch) =>
        harness.Client.CustomObjects.PatchNamespacedCustomObjectAsync(new V1Patch(patch, V1Patch.PatchType.MergePatch),
            InferencePipeline.Group, InferencePipeline.Version, OperatorHarness.Namespace, InferencePipeline.Plural, "video", cancellationToken: Cancel);

    /// <summary>A restarted operator reads the running configuration back from the cluster and leaves the pods alone.</summary>
    [Fact]
    public async Task A_restarted_operator_picks_up_the_running_state_without_touching_it()
    {
        await using var harness = await OperatorHarness.Start();
        await harness.Create(OperatorHarness.Sample("video-pipeline.yaml"));
        await Ready(harness);
        await Task.Delay(500, Cancel);
        var before = Snapshot(harness);
        int reconfigurations = harness.Api.List("events", OperatorHarness.Namespace).Count(e => e["reason"]!.GetValue<string>() == "Reconfigured");

        await harness.StopOperator();
        await harness.StartOperator();
        await Task.Delay(TimeSpan.FromSeconds(5), Cancel); // two adaptation intervals

        Assert.Equal(before, Snapshot(harness)); // same objects, same resourceVersions: not even rewritten
        Assert.Equal(reconfigurations, harness.Api.List("events", OperatorHarness.Namespace).Count(e => e["reason"]!.GetValue<string>() == "Reconfigured"));
        // And it is at work: a spec change is acted on.
        var pipeline = await harness.Pipeline("video");
        await Edit(harness, "{\"spec\":{\"sloMs\":2000}}");
        await Ready(harness, pipeline.Metadata.Generation + 1);
    }

    /// <summary>
    /// Failing requests, dropped watches and a compacted history (410 Gone on resume): the operator retries,
    /// relists, and still acts on a spec change made meanwhile.
    /// </summary>
    [Fact]
    public async Task Api_server_failures_dropped_watches_and_gone_versions_delay_but_do_not_lose_a_change()
    {
        await using var harness = await OperatorHarness.Start();
        await harness.Create(OperatorHarness.Sample("video-pipeline.yaml"));
        var first = await Ready(harness);

        harness.Api.DropWatches();
        harness.Api.Compact();
        await Edit(harness, "{\"spec\":{\"sloMs\":2000}}");
        harness.Api.FailNext(8);
        var edited = await Ready(harness, first.Metadata.Generation + 1);
        Assert.Equal(2000, edited.Spec.SloMs);
        Assert.True(edited.Status!.ExpectedLatencyMs <= 2000);

        // 409 Conflicts (another writer got there first): the operator reads again and retries.
        await Edit(harness, "{\"spec\":{\"sloMs\":1800}}");
        harness.Api.FailNext(4, 409);
        await Ready(harness, first.Metadata.Generation + 2);

        // A slow API server: answers take 100 ms each, and the operator still converges.
        harness.Api.Latency = TimeSpan.FromMilliseconds(100);
        await Edit(harness, "{\"spec\":{\"sloMs\":1500}}");
        await Ready(harness, first.Metadata.Generation + 3);
    }
}
