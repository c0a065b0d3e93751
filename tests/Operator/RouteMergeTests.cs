using Adaptive.Core.Planning;
using Adaptive.Core.Routing;
using Adaptive.Operator.Reconciliation;
using k8s.Models;

namespace Adaptive.Tests.Operator;

/// <summary>Make-before-break: what the router gets while a decision rolls out.</summary>
public sealed class RouteMergeTests
{
    static readonly IReadOnlyList<StagePlan> Decision =
        [new StagePlan("detect", [new Allocation("yolo-s", "gpu", 1, 1, 10)]), new StagePlan("classify", [new Allocation("r50", "cpu", 2, 1, 10), new Allocation("r18", "cpu", 1, 1, 10)])];

    static PlannedRoute Planned(string stage, string name, double weight = 1) => new(stage, name, new VariantRoute(name, $"http://{name}:8080", weight));

    static readonly IReadOnlyList<PlannedRoute> Plan = [Planned("detect", "p-detect-yolo-s-gpu"), Planned("classify", "p-classify-r50-cpu", 2), Planned("classify", "p-classify-r18-cpu")];

    /// <summary>What runs now: yolo-s already (same Deployment), and r34 in classify, being replaced.</summary>
    static readonly RouterConfig Previous = new("p",
        [new StageRoute("detect", [new VariantRoute("yolo-s", "http://p-detect-yolo-s-gpu:8080", 1)]), new StageRoute("classify", [new VariantRoute("r34", "http://p-classify-r34-cpu:8080", 1)])]);

    static IEnumerable<string> Hosts(MergedRoutes merged, string stage) => merged.Routes.Where(r => r.Stage == stage).Select(r => new Uri(r.Route.Endpoint).Host);

    [Fact]
    public void Everything_ready_routes_the_plan_and_keeps_nothing_old()
    {
        var merged = RouteMerge.Merge(Decision, Plan, Plan.Select(p => p.Name).ToHashSet(), Previous);
        Assert.True(merged.Settled);
        Assert.Empty(merged.KeptOld);
        Assert.Equal(Plan.Select(p => (p.Stage, p.Route)), merged.Routes);
    }

    [Fact]
    public void A_stage_whose_new_variants_are_not_all_ready_keeps_its_old_routes_beside_the_ready_ones()
    {
        var merged = RouteMerge.Merge(Decision, Plan, new HashSet<string> { "p-detect-yolo-s-gpu", "p-classify-r50-cpu" }, Previous);
        Assert.False(merged.Settled);
        Assert.Equal(["p-detect-yolo-s-gpu"], Hosts(merged, "detect")); // ready: as planned
        Assert.Equal(["p-classify-r50-cpu", "p-classify-r34-cpu"], Hosts(merged, "classify")); // r18 not ready: r34 stays, with its weight
        Assert.Equal(1, merged.Routes.Single(r => r.Route.Name == "r34").Route.Weight);
        Assert.Equal(["p-classify-r34-cpu"], merged.KeptOld);
    }

    [Fact]
    public void The_first_rollout_routes_the_plan_at_once()
    {
        var first = RouteMerge.Merge(Decision, Plan, new HashSet<string>(), previous: null);
        Assert.False(first.Settled);
        Assert.Equal(Plan.Select(p => (p.Stage, p.Route)), first.Routes);
    }

    [Fact]
    public void A_planned_variant_routed_now_keeps_its_old_route_and_weight_until_all_its_pods_are_ready()
    {
        // classify runs r101 (80 %) and one replica of r152 (20 %); the plan is six of r152, one ready, five starting.
        IReadOnlyList<StagePlan> decision = [Decision[0], new StagePlan("classify", [new Allocation("r152", "cpu", 6, 1, 10)])];
        IReadOnlyList<PlannedRoute> plan = [Plan[0], Planned("classify", "p-classify-r152-cpu")];
        var previous = new RouterConfig("p", [Previous.Stages[0], new StageRoute("classify",
            [new VariantRoute("r101", "http://p-classify-r101-cpu:8080", 0.8), new VariantRoute("r152", "http://p-classify-r152-cpu:8080", 0.2)])]);

        var starting = RouteMerge.Merge(decision, plan, new HashSet<string> { "p-detect-yolo-s-gpu" }, previous);
        Assert.False(starting.Settled);
        Assert.Equal(previous.Stages[1].Variants, starting.Routes.Where(r => r.Stage == "classify").Select(r => r.Route)); // not all of it on the one ready replica
        Assert.Equal(["p-classify-r101-cpu"], starting.KeptOld);

        var ready = RouteMerge.Merge(decision, plan, plan.Select(p => p.Name).ToHashSet(), previous);
        Assert.True(ready.Settled);
        Assert.Empty(ready.KeptOld);
        Assert.Equal(plan.Select(p => (p.Stage, p.Route)), ready.Routes);
    }

    static V1Deployment Deployment(string name, int replicas, int ready) =>
        new() { Metadata = new V1ObjectMeta { Name = name }, Spec = new V1DeploymentSpec { Replicas = replicas }, Status = new V1DeploymentStatus { ReadyReplicas = ready } };

    [Fact]
    public void A_shrinking_variant_keeps_its_replicas_until_its_stage_s_traffic_moves()
    {
        // classify runs six of r152; the plan is one of r152 and five of r101, which has none yet. detect shrinks alone.
        (string, string, int)[] plan = [("classify", "p-classify-r152-cpu", 1), ("classify", "p-classify-r101-cpu", 5), ("detect", "p-detect-yolo-s-gpu", 1)];
        List<V1Deployment> running = [Deployment("p-classify-r152-cpu", 6, 6), Deployment("p-detect-yolo-s-gpu", 2, 2)];
        Assert.Equal(new Dictionary<string, int> { ["p-classify-r152-cpu"] = 6 }, RouteMerge.HeldReplicas(plan, running, NoneUnplaceable));

        running.Add(Deployment("p-classify-r101-cpu", 5, 4)); // one still starting
        Assert.Equal(new Dictionary<string, int> { ["p-classify-r152-cpu"] = 6 }, RouteMerge.HeldReplicas(plan, running, NoneUnplaceable));

        // r101's pods cannot be placed: the room r152's surplus holds may be what they need.
        Assert.Empty(RouteMerge.HeldReplicas(plan, running, new HashSet<string> { "classify" }));

        running[^1] = Deployment("p-classify-r101-cpu", 5, 5); // all ready: the traffic moves, and r152 shrinks with it
        Assert.Empty(RouteMerge.HeldReplicas(plan, running, NoneUnplaceable));
    }

    static readonly IReadOnlySet<string> NoneUnplaceable = new HashSet<string>();
}
