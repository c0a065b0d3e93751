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

    /// <summary>
    /// A planned variant whose pods do not start: its model fails its digest (the init container's one line), its
    /// server finds no CUDA on a GPU class (the server's one line), or no node can take it. The pipeline's Ready
    /// condition and a Warning event name the variant and what its pods report, and follow when that changes.
    /// </summary>
    [Fact]
    public async Task A_variant_whose_pods_do_not_start_says_why_on_the_pipeline()
    {
        await using var harness = await OperatorHarness.Start();
        harness.Api.PodsReadyAfter = null; // no pod ever turns ready
        await harness.Create(OperatorHarness.Sample("video-pipeline.yaml"));
        var deployments = await OperatorHarness.Eventually(() => Task.FromResult(harness.Api.List("deployments", OperatorHarness.Namespace)),
            list => list.Count(d => d["metadata"]!["labels"]!["adaptive.dev/component"]!.GetValue<string>() == "model-server") == 2, "the model servers' Deployments");
        var servers = deployments.Where(d => d["metadata"]!["labels"]!["adaptive.dev/component"]!.GetValue<string>() == "model-server").ToList();
        string Variant(JsonNode deployment) =>
            $"{deployment["metadata"]!["labels"]!["adaptive.dev/stage"]}/{deployment["metadata"]!["labels"]!["adaptive.dev/variant"]} on {deployment["metadata"]!["labels"]!["adaptive.dev/hardware-class"]}";
        static V1ContainerStatus Crashing(string name, string line) => new()
        {
            Name = name, Image = "adaptive-server:test", ImageID = "", Ready = false, RestartCount = 3,
            State = new V1ContainerState { Waiting = new V1ContainerStateWaiting { Reason = "CrashLoopBackOff", Message = "back-off 40s restarting failed container" } },
            LastState = new V1ContainerState { Terminated = new V1ContainerStateTerminated { ExitCode = line.Contains("fetch-model") ? 1 : 2, Reason = "Error", Message = line + "\n" } },
        };
        Task<InferencePipeline> Says(string text) => OperatorHarness.Eventually(() => harness.Pipeline("video"),
            p => p.Status?.Conditions.Any(c => c.Type == PipelineCondition.Ready && c.Status == "False" && c.Reason == "VariantNotStarting" && c.Message.Contains(text)) == true,
            $"the Ready condition to say '{text}'");
        Task Warned(string text) => OperatorHarness.Eventually(() => Task.FromResult(harness.Api.List("events", OperatorHarness.Namespace)),
            events => events.Any(e => e["reason"]!.GetValue<string>() == "VariantNotStarting" && e["type"]!.GetValue<string>() == "Warning"
                && e["message"]!.GetValue<string>().Contains(text)), $"a Warning event saying '{text}'");

        const string digest = "adaptive-server: fetch-model: https://models.example.com/yolo.onnx: its sha256 is 0a1b, not the expected 9f8e";
        await Pod(harness.Client, servers[0], "fetching", new V1PodStatus
        {
            Phase = "Pending",
            InitContainerStatuses = [Crashing("fetch-model", digest)],
            ContainerStatuses = [new V1ContainerStatus { Name = "adaptive-server", Image = "adaptive-server:test", ImageID = "", Ready = false, RestartCount = 0,
                State = new V1ContainerState { Waiting = new V1ContainerStateWaiting { Reason = "PodInitializing" } } }],
        });
        await Pod(harness.Client, servers[1], "pending", new V1PodStatus
        {
            Phase = "Pending",
            Conditions = [new V1PodCondition { Type = "PodScheduled", Status = "False", Reason = "Unschedulable", Message = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu." }],
        });
        string unschedulable = $"{Variant(servers[1])}: Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu.";
        var failing = await Says(unschedulable);
        Assert.Contains($"{Variant(servers[0])}: init container fetch-model CrashLoopBackOff, last exit 1: {digest}", failing.Status!.Conditions.Single(c => c.Type == PipelineCondition.Ready).Message);
        await Warned(digest);

        // The model is fixed; now the server itself cannot start.
        await harness.Client.CoreV1.DeleteNamespacedPodAsync($"{servers[0]["metadata"]!["name"]}-fetching", OperatorHarness.Namespace, cancellationToken: Cancel);
        const string noCuda = "adaptive-server: --device cuda: no usable CUDA execution provider (Failed to load shared library)";
        await Pod(harness.Client, servers[0], "crashing", new V1PodStatus { Phase = "Running", ContainerStatuses = [Crashing("adaptive-server", noCuda)] });
        var crashing = await Says($"{Variant(servers[0])}: CrashLoopBackOff, last exit 2: {noCuda}");
        Assert.Contains(unschedulable, crashing.Status!.Conditions.Single(c => c.Type == PipelineCondition.Ready).Message);
        await Warned(noCuda);
    }

    /// <summary>
    /// A running variant's model moved behind https:// with a wrong digest: the Deployment rolls, its new pod's init
    /// container fails, and the pipeline says so while the old pods keep serving, routed as before.
    /// </summary>
    [Fact]
    public async Task A_model_that_fails_its_digest_is_reported_while_the_old_pods_serve()
    {
        await using var harness = await OperatorHarness.Start();
        await harness.Create(OperatorHarness.Sample("video-pipeline.yaml"));
        var serving = await Ready(harness);
        string Routes() => harness.Api.List("configmaps", OperatorHarness.Namespace).Single()["data"]!["routes.json"]!.GetValue<string>();
        string routesBefore = Routes();
        var stage = serving.Status!.Stages[0];
        var running = stage.Allocations.First();
        harness.Api.PodsReadyAfter = null; // the new pods never turn ready

        var pipeline = await harness.Pipeline("video");
        var variant = pipeline.Spec.Stages.Single(s => s.Name == stage.Name).Variants.Single(v => v.Name == running.Variant);
        (variant.ModelUri, variant.Sha256) = ("https://models.example.com/" + variant.Name + ".onnx", new string('0', 64));
        await harness.Client.CustomObjects.ReplaceNamespacedCustomObjectAsync(pipeline, InferencePipeline.Group, InferencePipeline.Version,
            OperatorHarness.Namespace, InferencePipeline.Plural, "video", cancellationToken: Cancel);
        var rolling = await OperatorHarness.Eventually(() => Task.FromResult(harness.Api.List("deployments", OperatorHarness.Namespace)),
            list => list.Any(d => d["spec"]!["template"]!["spec"]!["initContainers"] is not null), "the Deployment rolling to a pod that fetches its model");
        var deployment = rolling.Single(d => d["spec"]!["template"]!["spec"]!["initContainers"] is not null);
        const string digest = "adaptive-server: fetch-model: https://models.example.com/x.onnx: its sha256 is 1a2b, not the expected 0000";
        await Pod(harness.Client, deployment, "new", new V1PodStatus
        {
            Phase = "Pending",
            InitContainerStatuses = [new V1ContainerStatus
            {
                Name = "fetch-model", Image = "adaptive-server:test", ImageID = "", Ready = false, RestartCount = 2,
                State = new V1ContainerState { Waiting = new V1ContainerStateWaiting { Reason = "CrashLoopBackOff" } },
                LastState = new V1ContainerState { Terminated = new V1ContainerStateTerminated { ExitCode = 1, Reason = "Error", Message = digest } },
            }],
        });

        var failing = await OperatorHarness.Eventually(() => harness.Pipeline("video"),
            p => p.Status?.Conditions.Any(c => c.Type == PipelineCondition.Ready && c.Reason == "VariantNotStarting" && c.Message.Contains(digest)) == true,
            "the digest failure on the pipeline");
        Assert.Contains($"{stage.Name}/{running.Variant} on {running.HardwareClass}: init container fetch-model CrashLoopBackOff, last exit 1: {digest}",
            failing.Status!.Conditions.Single(c => c.Type == PipelineCondition.Ready).Message);
        // What serves is left alone: the same routes, the Deployment still there with its ready pods.
        Assert.Equal(routesBefore, Routes());
        var still = harness.Api.List("deployments", OperatorHarness.Namespace).Single(d => d["metadata"]!["name"]!.GetValue<string>() == deployment["metadata"]!["name"]!.GetValue<string>());
        Assert.True(still["status"]!["readyReplicas"]!.GetValue<long>() >= 1);
    }

    /// <summary>A pod of <paramref name="deployment"/> (its selector's labels) with <paramref name="status"/>, as the kubelet would report it.</summary>
    internal static async Task Pod(k8s.Kubernetes client, JsonNode deployment, string suffix, V1PodStatus status)
    {
        var labels = deployment["spec"]!["selector"]!["matchLabels"]!.AsObject().ToDictionary(l => l.Key, l => l.Value!.GetValue<string>());
        string name = $"{deployment["metadata"]!["name"]}-{suffix}";
        await client.CoreV1.CreateNamespacedPodAsync(new V1Pod
        {
            Metadata = new V1ObjectMeta { Name = name, Labels = labels },
            Spec = new V1PodSpec { Containers = [new V1Container { Name = "adaptive-server", Image = "adaptive-server:test" }] },
        }, OperatorHarness.Namespace, cancellationToken: Cancel);
        await client.CoreV1.ReplaceNamespacedPodStatusAsync(new V1Pod
        {
            Metadata = new V1ObjectMeta { Name = name, NamespaceProperty = OperatorHarness.Namespace, Labels = labels,
                ResourceVersion = (await client.CoreV1.ReadNamespacedPodAsync(name, OperatorHarness.Namespace, cancellationToken: Cancel)).Metadata.ResourceVersion },
            Spec = new V1PodSpec { Containers = [new V1Container { Name = "adaptive-server", Image = "adaptive-server:test" }] },
            Status = status,
        }, name, OperatorHarness.Namespace, cancellationToken: Cancel);
    }

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
