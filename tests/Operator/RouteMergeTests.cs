using Adaptive.Core.Planning;
using Adaptive.Core.Routing;
using Adaptive.Operator.Reconciliation;

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
    public void The_first_rollout_routes_the_plan_at_once_and_nothing_ready_with_nothing_old_too()
    {
        var first = RouteMerge.Merge(Decision, Plan, new HashSet<string>(), previous: null);
        Assert.False(first.Settled);
        Assert.Equal(Plan.Select(p => (p.Stage, p.Route)), first.Routes);

        // The old classify routes pointed at a variant that is planned again (same Deployment): nothing else to keep.
        var noOld = new RouterConfig("p", [Previous.Stages[0], new StageRoute("classify", [new VariantRoute("r50", "http://p-classify-r50-cpu:8080", 1)])]);
        var merged = RouteMerge.Merge(Decision, Plan, new HashSet<string>(), noOld);
        Assert.False(merged.Settled);
        Assert.Empty(merged.KeptOld);
        Assert.Equal(["p-classify-r50-cpu", "p-classify-r18-cpu"], Hosts(merged, "classify"));
    }
}
