using Adaptive.Core.Adaptation;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Experiments.Replay.Policies;

namespace Adaptive.Experiments.Replay.SharedPool;

/// <summary>How several pipelines that share a GPU pool are adapted: one decision per member at every call.</summary>
public interface IPoolPolicy
{
    string Name { get; }

    /// <summary>Seconds between calls to <see cref="Decide"/>.</summary>
    int IntervalSeconds { get; }

    /// <summary>Each member's decision at this call, in the members' order; null where a member keeps what it runs (never at the first call).</summary>
    IReadOnlyList<PolicyDecision?> Decide(IReadOnlyList<PolicyContext> contexts);
}

/// <summary>
/// The operator's joint planning: every member runs the operator's loop (<see cref="PlannerPolicy"/>: its forecast, interval,
/// stabilization and surge rule), and whenever one is due a decision, all are planned together (<see cref="JointDecider"/>) within the
/// pool, each member not due at the load it last planned for (its menu kept from the round before), as the operator's pool reconciler does.
/// A round that only surges called is kept only where it adds capacity to a surging member.
/// </summary>
public sealed class JointPoolPolicy(IReadOnlyList<InferencePipeline> members, string pool, int capacity) : IPoolPolicy
{
    readonly PlannerPolicy[] loops = [.. members.Select(m => new PlannerPolicy("joint", m))];
    readonly JointMenus kept = new();
    readonly TimeSpan limit = TimeSpan.FromSeconds(members.Max(m => m.Spec.Adaptation.PlannerTimeLimitSeconds));

    public string Name => "joint";
    public int IntervalSeconds => loops[0].IntervalSeconds;

    public IReadOnlyList<PolicyDecision?> Decide(IReadOnlyList<PolicyContext> contexts)
    {
        var due = loops.Select((loop, i) => loop.Due(contexts[i])).ToList();
        if (due.All(d => d is null)) return new PolicyDecision?[members.Count];
        var joint = JointDecider.Decide(new Dictionary<string, int> { [pool] = capacity },
            [.. members.Select((m, i) => new PoolMember(m, due[i]?.Load.Rps ?? loops[i].LastPlannedRps, PlannerPolicy.Running(contexts[i].Running),
                due[i] is { } load ? SurgeRule.ExcessShare(m, contexts[i].Running, load.Load) : 0))], limit, kept);
        bool scheduled = due.Any(d => d is { Scheduled: true });
        if (!scheduled && !joint.Members.Where((_, i) => due[i] is not null).Any(m => m.Decision.ScalesUp)) return new PolicyDecision?[members.Count];
        // Every member takes the round's plan, as the operator records it in every member's status: one that surged without its plan
        // adding capacity takes it as a plan the others' changed (else it could keep replicas the round gave to another).
        return [.. loops.Select((loop, i) =>
        {
            var decision = joint.Members[i].Decision;
            return loop.Take(contexts[i], due[i] is { Scheduled: false } && !decision.ScalesUp ? null : due[i], decision);
        })];
    }
}

/// <summary>
/// Each member adapted on its own, by its own policy: per-pipeline planning within a static GPU quota (the way a cluster is
/// split today), or an autoscaler baseline.
/// </summary>
public sealed class SeparatePolicies(string name, IReadOnlyList<IReplayPolicy> members) : IPoolPolicy
{
    public string Name => name;
    public int IntervalSeconds => members[0].IntervalSeconds;

    public IReadOnlyList<PolicyDecision?> Decide(IReadOnlyList<PolicyContext> contexts) => [.. members.Select((m, i) => m.Decide(contexts[i]))];
}
