using Adaptive.Core.Planning;
using Adaptive.Core.Routing;

namespace Adaptive.Operator.Reconciliation;

/// <summary>A planned (stage, variant, hardware class) as the router would reach it: its Deployment's name and its route.</summary>
public sealed record PlannedRoute(string Stage, string Name, VariantRoute Route);

/// <summary>The routes the router gets, which old variants they still use, and whether the stages run as planned.</summary>
public sealed record MergedRoutes(IReadOnlyList<(string Stage, VariantRoute Route)> Routes, IReadOnlySet<string> KeptOld, bool Settled);

/// <summary>
/// Make-before-break, as a pure function: a stage's traffic moves to its planned variants only once all of them
/// have ready pods; until then the stage keeps its previous routes (weights unchanged) beside the ready new ones.
/// With no previous routes (the first rollout) or nothing to keep, the planned routes go in at once.
/// </summary>
public static class RouteMerge
{
    /// <param name="ready">Names of the planned variants whose Deployments have ready pods.</param>
    /// <param name="previous">The routes the router has now; null before the first rollout.</param>
    public static MergedRoutes Merge(IReadOnlyList<StagePlan> decision, IReadOnlyList<PlannedRoute> planned, IReadOnlySet<string> ready, RouterConfig? previous)
    {
        var routed = new List<(string Stage, VariantRoute Route)>();
        var keptOld = new HashSet<string>();
        bool settled = true;
        foreach (var stage in decision)
        {
            var mine = planned.Where(p => p.Stage == stage.Name).ToList();
            var readyOnes = mine.Where(p => ready.Contains(p.Name)).ToList();
            if (readyOnes.Count == mine.Count || previous is null)
            {
                routed.AddRange(mine.Select(p => (p.Stage, p.Route)));
                settled &= readyOnes.Count == mine.Count;
                continue;
            }
            settled = false;
            routed.AddRange(readyOnes.Select(p => (p.Stage, p.Route)));
            foreach (var old in previous.Stages.FirstOrDefault(s => s.Name == stage.Name)?.Variants ?? [])
            {
                string oldName = new Uri(old.Endpoint).Host;
                if (mine.Any(p => p.Name == oldName)) continue;
                keptOld.Add(oldName);
                routed.Add((stage.Name, old));
            }
            if (!routed.Any(r => r.Stage == stage.Name)) routed.AddRange(mine.Select(p => (p.Stage, p.Route)));
        }
        return new MergedRoutes(routed, keptOld, settled);
    }
}
