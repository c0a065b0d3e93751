using Adaptive.Core.Adaptation;
using Adaptive.Core.Api.V1Alpha1;

namespace Adaptive.Experiments.Replay.Policies;

/// <summary>
/// Over-provisioned and fixed: planned once, for the window's peak per-second rate (which it is told in
/// advance, a favour no real deployment gets), and never changed.
/// </summary>
public sealed class StaticPolicy(InferencePipeline pipeline, double peakRps) : IReplayPolicy
{
    bool planned;

    public string Name => "static";
    public int IntervalSeconds => pipeline.Spec.Adaptation.IntervalSeconds;

    public PolicyDecision? Decide(PolicyContext context)
    {
        if (planned) return new PolicyDecision(null, peakRps, 0);
        planned = true;
        var decision = AdaptationDecider.Decide(pipeline, peakRps, []);
        return new PolicyDecision(decision.Plan, peakRps, decision.Result.SolveMs);
    }
}
