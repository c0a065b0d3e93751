using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Forecasting;

namespace Adaptive.Experiments.Replay.Policies;

/// <summary>
/// Kubernetes' HorizontalPodAutoscaler (autoscaling/v2, default behavior) on one fixed variant, scaling on
/// utilization = the observed arrival rate over what the running replicas sustain. Every 15 s (its sync
/// period), from the same Prometheus rate every policy sees:
/// <list type="bullet">
/// <item>desired = ⌈replicas × utilization / target⌉, unless utilization / target is within 10 % of 1 (its tolerance);</item>
/// <item>scale-up at once, but by at most max(4 pods, 100 %) per 15 s (its default scale-up policies);</item>
/// <item>scale-down only to the highest recommendation of the last 300 s (its default stabilization window).</item>
/// </list>
/// Reactive: no forecast.
/// </summary>
public sealed class HpaPolicy(InferencePipeline pipeline, double targetUtilization = HpaPolicy.DefaultTarget) : IReplayPolicy
{
    public const double DefaultTarget = 0.7;
    const double Tolerance = 0.1;
    const int StabilizationSeconds = 300;
    const int ScaleUpPods = 4;
    const double ScaleUpFactor = 2;

    readonly FixedVariantScaling scaling = new(pipeline);
    readonly List<(int Time, int[] Replicas)> recommendations = [];

    public string Name => "hpa";
    public int IntervalSeconds => 15;

    public PolicyDecision? Decide(PolicyContext context)
    {
        int window = context.Load.RateSpanSeconds;
        double observed = context.Load.Rates(window, window, window)[^1];
        var running = context.Running is null ? null : scaling.RunningReplicas(context.Running);
        var wanted = scaling.ReplicasFor(observed, targetUtilization);
        if (running is not null)
            for (int i = 0; i < wanted.Length; i++)
            {
                double ratio = observed / (running[i] * scaling.CapacityRps(i)) / targetUtilization;
                if (Math.Abs(ratio - 1) <= Tolerance) wanted[i] = running[i];
            }
        recommendations.Add((context.NowSeconds, wanted));
        recommendations.RemoveAll(r => r.Time < context.NowSeconds - StabilizationSeconds);
        var replicas = Enumerable.Range(0, scaling.Stages).Select(i =>
        {
            if (running is null) return wanted[i];
            if (wanted[i] > running[i]) return Math.Min(wanted[i], Math.Max(running[i] + ScaleUpPods, (int)(running[i] * ScaleUpFactor)));
            return Math.Min(running[i], recommendations.Max(r => r.Replicas[i])); // down no further than the window's highest
        }).ToArray();
        return new PolicyDecision(scaling.Plan(replicas, observed), observed, 0);
    }
}
