using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Forecasting;
using Adaptive.Experiments.Bench;

namespace Adaptive.Experiments.Replay.Policies;

/// <summary>
/// Kubernetes' VerticalPodAutoscaler on one fixed variant, as InfAdapter compares with it: one pod per stage
/// whose size (in replicas' worth of the hardware class, serving like that many replicas) follows the
/// recommender — the 90th percentile of the load (30 s rates) over the last 10 minutes plus a 15 % margin — and is
/// changed only when the running size leaves the recommender's bounds (the 50th and 95th percentiles, with
/// the margin). A change recreates the pod, as VPA's updater evicts it: the stage serves nothing while the
/// new pod starts.
/// </summary>
public sealed class VpaPolicy(InferencePipeline pipeline) : IReplayPolicy
{
    const double SafetyMargin = 1.15;
    const int HistorySeconds = 600;

    readonly FixedVariantScaling scaling = new(pipeline);

    public string Name => "vpa";
    public int IntervalSeconds => 60;

    public PolicyDecision? Decide(PolicyContext context)
    {
        var recent = context.Load.Rates(HistorySeconds, ArrivalHistory.OperatorStepSeconds, context.Load.RateSpanSeconds).Order().ToList();
        double Percentile(double q) => Percentiles.Of(recent, q);
        var target = scaling.ReplicasFor(SafetyMargin * Percentile(0.9), 1);
        var lower = scaling.ReplicasFor(SafetyMargin * Percentile(0.5), 1);
        var upper = scaling.ReplicasFor(SafetyMargin * Percentile(0.95), 1);
        double load = Percentile(0.9);
        if (context.Running is null) return new PolicyDecision(scaling.Plan(target, load), load, 0);
        var running = context.Running.Select(s => s.Allocations.Sum(a => a.Replicas)).ToArray();
        bool outOfBounds = running.Select((r, i) => r < lower[i] || r > upper[i]).Any(x => x);
        return outOfBounds ? new PolicyDecision(scaling.Plan(target, load), load, 0, Recreate: true) : new PolicyDecision(null, load, 0);
    }
}
