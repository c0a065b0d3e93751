using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Forecasting;

namespace Adaptive.Experiments.Replay.Policies;

/// <summary>
/// Kubernetes' HorizontalPodAutoscaler on one fixed variant: every 15 s, replicas = ⌈observed load /
/// (70 % target utilization × one replica's capacity)⌉; scale-up at once, scale-down only to the highest
/// recommendation of the last 300 s (its default stabilization window). Reactive: no forecast.
/// </summary>
public sealed class HpaPolicy(InferencePipeline pipeline) : IReplayPolicy
{
    const double TargetUtilization = 0.7;
    const int StabilizationSeconds = 300;

    readonly FixedVariantScaling scaling = new(pipeline);
    readonly List<(int Time, int[] Replicas)> recommendations = [];

    public string Name => "hpa";
    public int IntervalSeconds => 15;

    public PolicyDecision Decide(PolicyContext context)
    {
        int window = ArrivalHistory.OperatorWindowSeconds;
        double observed = context.Load.Rates(window, window, window)[^1];
        recommendations.Add((context.NowSeconds, scaling.ReplicasFor(observed, TargetUtilization)));
        recommendations.RemoveAll(r => r.Time < context.NowSeconds - StabilizationSeconds);
        var replicas = Enumerable.Range(0, scaling.Stages).Select(i => recommendations.Max(r => r.Replicas[i])).ToArray();
        return new PolicyDecision(scaling.Plan(replicas, observed), observed, 0);
    }
}
