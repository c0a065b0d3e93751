using Adaptive.Core.Simulation;
using Adaptive.Experiments.Replay.Policies;

namespace Adaptive.Experiments.Replay;

/// <summary>
/// "At what I spend on my baseline today, what does Adaptive give me?": an Adaptive policy rerun with its
/// cost weight β tuned until its total cost over the window is within −5 % … +2 % of the baseline's. β is
/// searched by bisection on a log scale (a higher β spends less). Cost moves in whole replicas, so β can
/// jump over the band, and even β = 0 may spend less than the baseline (accuracy is bought, and more
/// replicas buy none): then the closest run below the band gets headroom, a lower target utilization (which
/// plans for more load than forecast), searched by bisection. The run named <c>P@B</c> is the one within the
/// band, or the closest found when none is.
/// </summary>
public static class IsoCost
{
    public const double Below = 0.05, Above = 0.02;
    const int Steps = 14;

    public static PolicyRun Match(ReplayPipeline pipeline, string policy, PolicyRun baseline, ReplayWorkload replay, SimulationOptions options)
    {
        double target = baseline.Result.Cost;
        string name = $"{policy}@{baseline.Policy}";
        double utilization = pipeline.Spec.Spec.Adaptation.TargetUtilization;
        var tried = new List<(PolicyRun Run, double CostWeight)>();
        // Positive: spends too much; negative: too little; 0: within the band.
        int Compare(PolicyRun run) => run.Result.Cost > target * (1 + Above) ? 1 : run.Result.Cost < target * (1 - Below) ? -1 : 0;
        int Run(double costWeight, double targetUtilization)
        {
            var tuned = new ReplayPipeline(pipeline.Derive(spec =>
            {
                spec.Objective.Weights.Cost = costWeight;
                spec.Adaptation.TargetUtilization = targetUtilization;
            }), pipeline.PodStartSeconds);
            var run = ReplayRunner.Run(tuned, ReplayPolicies.Create(policy, tuned, replay.Workload.Peak, replay.Workload.Mean),
                replay.Workload, replay.PriorArrivals, options) with { Policy = name };
            tried.Add((run, costWeight));
            return Compare(run);
        }
        /// <summary>Bisection of <paramref name="side"/> (1: too much, −1: too little, 0: in the band) between two values of a knob.</summary>
        static void Bisect(double spendsLess, double spendsMore, Func<double, int> side)
        {
            for (int i = 0; i < Steps; i++)
            {
                double middle = (spendsLess + spendsMore) / 2;
                switch (side(middle))
                {
                    case 0: return;
                    case > 0: spendsMore = middle; break;
                    default: spendsLess = middle; break;
                }
            }
        }

        if (Run(0, utilization) > 0 && Run(10, utilization) <= 0)
            Bisect(Math.Log(10), Math.Log(1e-7), logWeight => Run(Math.Exp(logWeight), utilization));
        var below = tried.Where(t => Compare(t.Run) < 0).ToList();
        if (!tried.Any(t => Compare(t.Run) == 0) && below.Count > 0)
        {
            double costWeight = below.MaxBy(t => t.Run.Result.Cost).CostWeight;
            Bisect(utilization, 0.05, targetUtilization => Run(costWeight, targetUtilization));
        }
        var runs = tried.Select(t => t.Run).ToList();
        return runs.FirstOrDefault(r => Compare(r) == 0) ?? runs.MinBy(r => Math.Abs(r.Result.Cost / target - 1))!;
    }
}
