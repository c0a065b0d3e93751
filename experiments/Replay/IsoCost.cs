using Adaptive.Core.Simulation;
using Adaptive.Experiments.Replay.Policies;

namespace Adaptive.Experiments.Replay;

/// <summary>
/// "At what I spend on my baseline today, what does Adaptive give me?": an Adaptive policy rerun with its
/// cost weight β tuned until its total cost over the window is within −5 % … +2 % of the baseline's. β is
/// searched by bisection on a log scale (a higher β spends less). Where even β = 0 spends less than the
/// baseline (accuracy is bought, and more replicas buy none), the target utilization is lowered instead,
/// which plans for more load than forecast: headroom. The run named <c>P@B</c> is the one within the band,
/// or the closest found when none is.
/// </summary>
public static class IsoCost
{
    public const double Below = 0.05, Above = 0.02;
    const int Steps = 14;

    public static PolicyRun Match(ReplayPipeline pipeline, string policy, PolicyRun baseline, ReplayWorkload replay, SimulationOptions options)
    {
        double target = baseline.Result.Cost;
        string name = $"{policy}@{baseline.Policy}";
        var adaptation = pipeline.Spec.Spec.Adaptation;
        var tried = new List<PolicyRun>();
        PolicyRun Run(double costWeight, double utilization)
        {
            var tuned = new ReplayPipeline(pipeline.Derive(spec =>
            {
                spec.Objective.Weights.Cost = costWeight;
                spec.Adaptation.TargetUtilization = utilization;
            }), pipeline.PodStartSeconds);
            var run = ReplayRunner.Run(tuned, ReplayPolicies.Create(policy, tuned, replay.Workload.Peak, replay.Workload.Mean),
                replay.Workload, replay.PriorArrivals, options) with { Policy = name };
            tried.Add(run);
            return run;
        }
        // Positive: spends too much; negative: too little; 0: within the band.
        int Compare(PolicyRun run) => run.Result.Cost > target * (1 + Above) ? 1 : run.Result.Cost < target * (1 - Below) ? -1 : 0;

        int free = Compare(Run(0, adaptation.TargetUtilization));
        if (free == 0) return tried[0];
        if (free < 0)
        {
            // Headroom: a lower target utilization spends more.
            double low = 0.05, high = adaptation.TargetUtilization;
            for (int i = 0; i < Steps; i++)
            {
                double middle = (low + high) / 2;
                int side = Compare(Run(0, middle));
                if (side == 0) break;
                if (side > 0) low = middle;
                else high = middle;
            }
        }
        else
        {
            double low = Math.Log(1e-7), high = Math.Log(10);
            if (Compare(Run(Math.Exp(high), adaptation.TargetUtilization)) <= 0)
                for (int i = 0; i < Steps; i++)
                {
                    double middle = (low + high) / 2;
                    int side = Compare(Run(Math.Exp(middle), adaptation.TargetUtilization));
                    if (side == 0) break;
                    if (side > 0) low = middle;
                    else high = middle;
                }
        }
        return tried.FirstOrDefault(r => Compare(r) == 0) ?? tried.MinBy(r => Math.Abs(r.Result.Cost / target - 1))!;
    }
}
