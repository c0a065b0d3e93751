using System.Text.Json;
using System.Text.Json.Nodes;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Operator.Reconciliation;
using Adaptive.Tests.Support;
using k8s;
using k8s.Models;

namespace Adaptive.Tests.Operator;

/// <summary>
/// Pipelines that share an InferencePool, through the operator against the API server double, with a real Prometheus
/// reading each pipeline's arrival rate: their replicas on the pool never add up to more than it holds, and the pool's
/// capacity, its members' loads and priorities, and pods the scheduler cannot place all move the joint plan.
/// </summary>
public sealed class PoolEndToEndTests
{
    static readonly CancellationToken Cancel = TestContext.Current.CancellationToken;
    const string Pool = "gpus";

    /// <summary>
    /// The ResNet sample named <paramref name="name"/>, its GPU class (at most 2 replicas) in the pool; without the loading
    /// term, so that what it wants follows its load alone and not also what it runs.
    /// </summary>
    /// <param name="intervalSeconds">Its decisions' interval: long, only what the pool does re-plans it.</param>
    static JsonObject Member(string name, double priority = 1, int intervalSeconds = 2) => OperatorHarness.Sample("resnet-mixed.yaml", p =>
    {
        p.Metadata.Name = name;
        p.Spec.Adaptation.IntervalSeconds = intervalSeconds;
        p.Spec.Adaptation.Forecaster = "last-value"; // the counters' rates as they are: a fresh Prometheus's ramp from 0 is no trend
        p.Spec.Adaptation.Metrics.HistorySeconds = Math.Max(p.Spec.Adaptation.Metrics.HistorySeconds, intervalSeconds); // at least an interval
        p.Spec.Objective.Weights.Loading = 0;
        p.Spec.Objective.Priority = priority;
        p.Spec.HardwareClasses.Single(c => c.Name == "gpu").Pool = Pool;
    });

    static Task CreatePool(OperatorHarness harness, InferencePoolSpec spec) =>
        harness.Client.CustomObjects.CreateClusterCustomObjectAsync(
            JsonSerializer.SerializeToNode(new InferencePool { Metadata = new ObjectMetadata { Name = Pool }, Spec = spec },
                new JsonSerializerOptions { DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull })!,
            InferencePipeline.Group, InferencePipeline.Version, InferencePool.Plural, cancellationToken: Cancel);

    static async Task<InferencePool> ReadPool(OperatorHarness harness) =>
        ((JsonElement)await harness.Client.CustomObjects.GetClusterCustomObjectAsync(InferencePipeline.Group, InferencePipeline.Version, InferencePool.Plural, Pool, Cancel))
        .Deserialize<InferencePool>()!;

    static int Gpus(InferencePipeline p) => p.Status?.Stages.Sum(s => s.Allocations.Where(a => a.HardwareClass == "gpu").Sum(a => a.Replicas)) ?? 0;

    /// <summary>The members' decisions as recorded, once each has one for the load it carries now.</summary>
    static Task<InferencePipeline[]> Planned(OperatorHarness harness, Func<InferencePipeline[], bool> condition, string what) =>
        OperatorHarness.Eventually(async () => new[] { await harness.Pipeline("a"), await harness.Pipeline("b") }, condition, what, seconds: 60);

    /// <summary>What every decision the API server recorded for the members held of the pool (a deleted member none), by resourceVersion: never more than <paramref name="capacity"/>.</summary>
    static void AssertNeverOverCommitted(OperatorHarness harness, int capacity)
    {
        var held = new Dictionary<string, int>();
        foreach (var (type, pipeline) in harness.Api.Changes("inferencepipelines"))
        {
            var p = pipeline.Deserialize<InferencePipeline>()!;
            held[p.Metadata.Name] = type == "DELETED" ? 0 : Gpus(p);
            long version = long.Parse(p.Metadata.ResourceVersion!, System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(held.Values.Sum() <= capacity, $"at resourceVersion {version} the members' decisions held {string.Join(", ", held.Select(h => $"{h.Key}: {h.Value}"))} of {capacity}");
        }
    }

    [Fact]
    public async Task Two_pipelines_on_a_two_gpu_pool_get_a_joint_plan_that_fits_and_an_unschedulable_pod_shrinks_it()
    {
        await using var scene = await LoadScene.Start(("a", 400), ("b", 400));
        var harness = scene.Harness;
        await CreatePool(harness, new InferencePoolSpec { Replicas = 2 });
        // Decisions ten minutes apart: what re-plans them below is the pool's capacity changing, at once.
        await harness.Create(Member("a", intervalSeconds: 600));
        await harness.Create(Member("b", intervalSeconds: 600));

        // Alone, each would take both GPUs for 400 requests a second; together they get two.
        var members = await Planned(harness, ps => ps.All(p => p.Status?.PredictedLoadRps > 300 && p.Status.Pool?.WantedReplicas == 2
            && p.Status.Conditions.Any(c => c.Type == PipelineCondition.Ready && c.Status == "True")), "both members planned for their load and serving");
        Assert.Equal(2, members.Sum(Gpus));
        Assert.All(members, p => Assert.Equal(Gpus(p), p.Status!.Pool!.Replicas));
        Assert.Contains(members, p => p.Status!.Conditions.Any(c => c.Type == PipelineCondition.PoolConstrained && c.Status == "True"
            && c.Message.StartsWith($"got {p.Status.Pool!.Replicas} of the 2 replicas of InferencePool 'gpus' it would take alone", StringComparison.Ordinal)));
        var pool = await OperatorHarness.Eventually(() => ReadPool(harness), p => p.Status?.Members.Count == 2, "the pool's status (written after its members')");
        Assert.Equal((2, 2), (pool.Status!.CapacityReplicas, pool.Status.AllocatedReplicas));
        Assert.Equal(["a", "b"], pool.Status.Members.Select(m => m.Name));
        Assert.Contains(harness.Api.List("events", OperatorHarness.Namespace), e => e["reason"]!.GetValue<string>() == "PoolConstrained");

        // A GPU pod of one member cannot be scheduled (another workload took its GPU): the pool plans with the one left.
        var gpuServer = harness.Api.List("deployments", OperatorHarness.Namespace).First(d => d["metadata"]!["labels"]!["adaptive.dev/hardware-class"]?.GetValue<string>() == "gpu"
            && d["metadata"]!["annotations"]?[Names.RetiringSince] is null);
        await UnschedulablePod(harness, gpuServer);
        var shrunk = await OperatorHarness.Eventually(() => ReadPool(harness), p => p.Status?.UnschedulableReplicas == 1 && p.Status.AllocatedReplicas <= 1,
            "the pool planned with the replica its members' pods could get", seconds: 30);
        var schedulable = shrunk.Status!.Conditions.Single(c => c.Type == PoolReconciler.Schedulable);
        Assert.Equal(("False", "PodsUnschedulable"), (schedulable.Status, schedulable.Reason));
        Assert.StartsWith("members' pods could not get 1 of the 2 replicas (last seen 1 unschedulable); planning with 1 until ", schedulable.Message);
        await Planned(harness, ps => ps.Sum(Gpus) <= 1, "the members' decisions within the one replica left");
        Assert.Contains(harness.Api.List("events", OperatorHarness.Namespace), e => e["reason"]!.GetValue<string>() == "PoolUnschedulable"
            && e["message"]!.GetValue<string>().StartsWith("1 pods on InferencePool 'gpus' cannot be scheduled: the pool is planned with 1 of its 2 replicas", StringComparison.Ordinal));
        AssertNeverOverCommitted(harness, 2);
    }

    [Fact]
    public async Task A_node_leaving_shrinks_the_pool_and_its_members_are_planned_again()
    {
        await using var scene = await LoadScene.Start(("a", 400), ("b", 400));
        var harness = scene.Harness;
        await Node(harness, "gpu-1", gpus: 1);
        await Node(harness, "gpu-2", gpus: 1);
        await Node(harness, "cpu-1", gpus: 0, pool: "cpu");
        await CreatePool(harness, new InferencePoolSpec
        {
            NodeSelector = new() { ["adaptive.dev/pool"] = "gpu" },
            ReplicaResources = new() { ["nvidia.com/gpu"] = "1" },
        });
        // Decisions ten minutes apart: what re-plans them below is the pool's capacity changing, at once.
        await harness.Create(Member("a", intervalSeconds: 600));
        await harness.Create(Member("b", intervalSeconds: 600));
        await Planned(harness, ps => ps.All(p => p.Status?.PredictedLoadRps > 300 && p.Status.Pool is not null) && ps.Sum(Gpus) == 2, "the two GPUs of the two nodes given out");
        // The pool's own status follows its members' (written first).
        await OperatorHarness.Eventually(() => ReadPool(harness), p => p.Status?.CapacityReplicas == 2 && p.Status.AllocatedReplicas == 2, "the pool's status");

        await harness.Client.CoreV1.DeleteNodeAsync("gpu-2", cancellationToken: Cancel);
        var shrunk = await OperatorHarness.Eventually(() => ReadPool(harness), p => p.Status?.CapacityReplicas == 1 && p.Status.AllocatedReplicas == 1, "the pool shrunk to one GPU and planned with it");
        Assert.Null(shrunk.Status!.UnschedulableReplicas);
        await Planned(harness, ps => ps.Sum(Gpus) == 1, "the members planned again within one GPU");

        // A cordoned node takes no pods: its GPU does not count either.
        await harness.Client.CoreV1.PatchNodeAsync(new V1Patch("{\"spec\":{\"unschedulable\":true}}", V1Patch.PatchType.MergePatch), "gpu-1", cancellationToken: Cancel);
        await OperatorHarness.Eventually(() => ReadPool(harness), p => p.Status?.CapacityReplicas == 0 && p.Status.AllocatedReplicas == 0, "the pool empty with its node cordoned");
        await Planned(harness, ps => ps.Sum(Gpus) == 0, "the members on their CPU class alone");
        AssertNeverOverCommitted(harness, 2);
    }

    [Fact]
    public async Task A_higher_priority_pipeline_takes_the_gpu_from_a_lower_one_when_its_load_rises_and_gives_it_back_when_it_goes()
    {
        await using var scene = await LoadScene.Start(("a", 5), ("b", 400));
        var (load, harness) = (scene.Load, scene.Harness);
        await CreatePool(harness, new InferencePoolSpec { Replicas = 1 });
        await harness.Create(Member("a", priority: 10));
        await harness.Create(Member("b", priority: 1));

        // a's few requests need no GPU: b, at 400 a second, has the pool's one.
        var before = await Planned(harness, ps => ps[0].Status?.Pool is not null && ps[1].Status?.PredictedLoadRps > 300 && Gpus(ps[1]) == 1,
            "b holding the GPU while a is quiet");
        Assert.Equal(0, Gpus(before[0]));

        // Both would take it at 400 a second; priority says who gets it.
        load.SetRate("a", 400);
        var after = await Planned(harness, ps => ps[0].Status?.PredictedLoadRps > 300 && Gpus(ps[0]) == 1 && Gpus(ps[1]) == 0, "a, of priority 10, taking the GPU from b");
        var constrained = after[1].Status!.Conditions.Single(c => c.Type == PipelineCondition.PoolConstrained);
        Assert.Equal(("True", "SharedPool"), (constrained.Status, constrained.Reason));
        Assert.Equal("got 0 of the 1 replicas of InferencePool 'gpus' it would take alone; 1 replicas are shared with ml/a (priority 10)", constrained.Message);
        Assert.Equal("False", after[0].Status!.Conditions.Single(c => c.Type == PipelineCondition.PoolConstrained).Status);

        // a goes: the pool's other member is planned again, and gets the GPU back.
        await harness.Client.CustomObjects.DeleteNamespacedCustomObjectAsync(InferencePipeline.Group, InferencePipeline.Version, OperatorHarness.Namespace,
            InferencePipeline.Plural, "a", cancellationToken: Cancel);
        await OperatorHarness.Eventually(() => harness.Pipeline("b"), p => Gpus(p) == 1
            && p.Status!.Conditions.Any(c => c.Type == PipelineCondition.PoolConstrained && c.Status == "False"), "b with the GPU again once a is gone", seconds: 30);
        await OperatorHarness.Eventually(() => ReadPool(harness), p => p.Status?.Members.Select(m => m.Name).SequenceEqual(["b"]) == true, "the pool with b alone");
        AssertNeverOverCommitted(harness, 1);
    }

    /// <summary>
    /// A pipeline that names a pool nobody created keeps what it runs and says so; the pool, once created, plans it; a
    /// pool whose spec the operator cannot use says which field. No Prometheus here: decisions plan for the least load.
    /// </summary>
    [Fact]
    public async Task A_pipeline_waits_for_its_pool_and_a_pool_names_what_is_wrong_with_it()
    {
        await using var harness = await OperatorHarness.Start();
        await harness.Create(Member("a"));
        var waiting = await OperatorHarness.Eventually(() => harness.Pipeline("a"),
            p => Conditions.Is(p.Status?.Conditions, PipelineCondition.Adapting, "PoolNotFound"), "the pipeline saying its pool does not exist");
        Assert.Equal("InferencePool 'gpus' (spec.hardwareClasses[1].pool) does not exist; create it, or remove the field to plan this pipeline alone. The running configuration stays",
            waiting.Status!.Conditions.Single(c => c.Type == PipelineCondition.Adapting).Message);
        Assert.Empty(waiting.Status.Stages);
        Assert.Contains(harness.Api.List("events", OperatorHarness.Namespace), e => e["reason"]!.GetValue<string>() == "PoolNotFound");

        await CreatePool(harness, new InferencePoolSpec { NodeSelector = new() { ["adaptive.dev/pool"] = "gpu" } });
        var invalid = await OperatorHarness.Eventually(() => ReadPool(harness), p => p.Status?.Conditions.Any(c => c.Type == PoolReconciler.Planned) == true, "the pool's verdict");
        var planned = invalid.Status!.Conditions.Single(c => c.Type == PoolReconciler.Planned);
        Assert.Equal(("False", "InvalidSpec"), (planned.Status, planned.Reason));
        Assert.Equal("spec.replicaResources: is required without spec.replicas: it says what one replica takes of a Node", planned.Message);

        await harness.Client.CustomObjects.PatchClusterCustomObjectAsync(new V1Patch("{\"spec\":{\"replicas\":1}}", V1Patch.PatchType.MergePatch),
            InferencePipeline.Group, InferencePipeline.Version, InferencePool.Plural, Pool, cancellationToken: Cancel);
        var serving = await OperatorHarness.Eventually(() => harness.Pipeline("a"),
            p => p.Status?.Pool?.Name == Pool && p.Status.Conditions.Any(c => c.Type == PipelineCondition.Ready && c.Status == "True"), "the pipeline planned by its pool and serving");
        Assert.True(Gpus(serving) <= 1);
        var pool = await OperatorHarness.Eventually(() => ReadPool(harness), p => p.Status?.Members.Count == 1, "the pool's status (written after its members')");
        Assert.Equal(("True", "JointPlan"), (pool.Status!.Conditions.Single(c => c.Type == PoolReconciler.Planned).Status, pool.Status.Conditions.Single(c => c.Type == PoolReconciler.Planned).Reason));
        Assert.Equal(["a"], pool.Status.Members.Select(m => m.Name));
    }

    /// <summary>A Node as a kubelet registers it: labels, and allocatable CPU, memory and GPUs in its status.</summary>
    static async Task Node(OperatorHarness harness, string name, int gpus, string pool = "gpu")
    {
        await harness.Client.CoreV1.CreateNodeAsync(new V1Node { Metadata = new V1ObjectMeta { Name = name, Labels = new Dictionary<string, string> { ["adaptive.dev/pool"] = pool } } },
            cancellationToken: Cancel);
        var allocatable = new Dictionary<string, ResourceQuantity> { ["cpu"] = new("8"), ["memory"] = new("32Gi") };
        if (gpus > 0) allocatable["nvidia.com/gpu"] = new(gpus.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var status = new { status = new V1NodeStatus { Allocatable = allocatable, Conditions = [new V1NodeCondition { Type = "Ready", Status = "True" }] } };
        await harness.Client.CoreV1.PatchNodeStatusAsync(new V1Patch(KubernetesJson.Serialize(status), V1Patch.PatchType.MergePatch), name, cancellationToken: Cancel);
    }

    /// <summary>A pod of <paramref name="deployment"/> that the scheduler could not place.</summary>
    static async Task UnschedulablePod(OperatorHarness harness, JsonNode deployment)
    {
        var labels = deployment["spec"]!["selector"]!["matchLabels"]!.AsObject().ToDictionary(l => l.Key, l => l.Value!.GetValue<string>());
        string name = $"{deployment["metadata"]!["name"]}-pending";
        var spec = new V1PodSpec { Containers = [new V1Container { Name = "adaptive-server", Image = "adaptive-server:test" }] };
        await harness.Client.CoreV1.CreateNamespacedPodAsync(new V1Pod { Metadata = new V1ObjectMeta { Name = name, Labels = labels }, Spec = spec },
            OperatorHarness.Namespace, cancellationToken: Cancel);
        var status = new
        {
            status = new V1PodStatus
            {
                Phase = "Pending",
                Conditions = [new V1PodCondition { Type = "PodScheduled", Status = "False", Reason = "Unschedulable", Message = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu." }],
            },
        };
        await harness.Client.CoreV1.PatchNamespacedPodStatusAsync(new V1Patch(KubernetesJson.Serialize(status), V1Patch.PatchType.MergePatch), name, OperatorHarness.Namespace,
            cancellationToken: Cancel);
    }
}
