using Adaptive.Core.Planning;
using Adaptive.Core.Routing;
using k8s.Models;

namespace Adaptive.Operator.Reconciliation;

/// <summary>A planned (stage, variant, hardware class) as the router would reach it: its Deployment's name and its route.</summary>
public sealed record PlannedRoute(string Stage, string Name, VariantRoute Route);

/// <summary>The routes the router gets, which old variants they still use, and whether the stages run as planned.</summary>
public sealed record MergedRoutes(IReadOnlyList<(string Stage, VariantRoute Route)> Routes, IReadOnlySet<string> KeptOld, bool Settled);

/// <summary>
/// Make-before-break, as a pure function: a stage's traffic moves to its planned variants only once all their pods
/// are ready; until then the stage keeps its previous routes (weights unchanged) beside the ready new ones. A planned
/// variant that is also routed now keeps its old route until it is ready: switching from four replicas of one variant to
/// six of another that runs one already would otherwise send the whole stage to that one replica while five start.
/// With no previous routes (the first rollout) or nothing to keep, the planned routes go in at once.
/// </summary>
public static class RouteMerge
{
    /// <param name="ready">Names of the planned variants whose Deployments have all their pods ready.</param>
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
                if (readyOnes.Any(p => p.Name == oldName)) continue;
                if (mine.All(p => p.Name != oldName)) keptOld.Add(oldName);
                routed.Add((stage.Name, old));
            }
            if (!routed.Any(r => r.Stage == stage.Name)) routed.AddRange(mine.Select(p => (p.Stage, p.Route)));
        }
        return new MergedRoutes(routed, keptOld, settled);
    }

    /// <summary>
    /// Make-before-break for a shrink too: a planned variant that runs more replicas than planned keeps them while its stage's
    /// traffic has not moved, that is, until every planned variant of the stage has all its pods ready. Going from six replicas
    /// of one variant to five of another and one of the first would otherwise leave one replica with the stage's whole load
    /// while the five start. Nothing is held in a stage whose planned pods the scheduler cannot place: the room may be what they need.
    /// Returns, by Deployment name, the replicas to keep.
    /// </summary>
    /// <param name="planned">Each planned variant: its stage, its Deployment's name, and its planned replicas.</param>
    /// <param name="running">The pipeline's Deployments as they are now.</param>
    /// <param name="unplaceable">Stages with a planned variant whose pods the scheduler cannot place.</param>
    public static IReadOnlyDictionary<string, int> HeldReplicas(IEnumerable<(string Stage, string Name, int Replicas)> planned, IReadOnlyList<V1Deployment> running,
        IReadOnlySet<string> unplaceable)
    {
        var held = new Dictionary<string, int>();
        foreach (var stage in planned.GroupBy(p => p.Stage).Where(s => !unplaceable.Contains(s.Key)))
        {
            V1Deployment? Running(string name) => running.FirstOrDefault(d => d.Metadata.Name == name);
            if (stage.All(p => Running(p.Name)?.Status?.ReadyReplicas >= p.Replicas)) continue; // the traffic moves now
            foreach (var (_, name, replicas) in stage)
                if (Running(name)?.Spec?.Replicas is int runs && runs > replicas) held[name] = runs;
        }
        return held;
    }
}
