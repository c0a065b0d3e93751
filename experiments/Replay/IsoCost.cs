using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Simulation;
using Adaptive.Experiments.Replay.Policies;

namespace Adaptive.Experiments.Replay;

/// <summary>
/// "At what I spend on my baseline today, what does Adaptive give me?": an Adaptive policy P rerun with its
/// cost weight β tuned until its total cost over the window is within −5 % … +2 % of the baseline B's.
/// The search goes step by step, each step only where the ones before found no run it needs:
/// <list type="number">
/// <item>β by bisection on a log scale (a higher β spends less), a few steps on toward the band's upper edge once in it
/// (cost comes in whole replicas held for minutes, so the first run in the band may sit just below a jump in accuracy),
/// for the pipeline's scale-down stabilization window and for shorter ones down to 60 s: capacity a peak needed leaves
/// sooner, which the surge rule makes safe, so that the same spend buys more accurate variants.</item>
/// <item>Headroom, where even β = 0 spends too little (accuracy is bought, and more replicas buy none) or every run in the
/// band bought its accuracy with more violations than B's: a lower target utilization, step by step, each with its own
/// bisection, until a run in the band keeps its violations.</item>
/// <item>The last resort, planning for less than the forecast (a target utilization above 1), where the runs that keep their
/// violations are all less accurate than a B that keeps its own within <see cref="BaselineKeepsTheSlo"/>, or where no run
/// keeps them within the band at all (even the highest β spends too much). The forecast peak and the planner's 99th
/// percentile are cautious, and B may buy its accuracy with violations, which P may spend too: on 896,400 hpa runs two
/// resnet50 replicas past the SLO at times, where ipa, planning for the forecast peak, ran resnet34 at hpa's spend.</item>
/// </list>
/// The run named <c>P@B</c> is, of the runs within the band, the most accurate that keeps its violations within
/// max(1 %, B's) (of equally accurate ones, the one with the fewest violations); else the first within the band; else
/// the closest found. Its settings are in <see cref="PolicyRun.Tuning"/>.
/// </summary>
public static class IsoCost
{
    public const double Below = 0.05, Above = 0.02;

    /// <summary>The violations of a baseline that P may match to buy its accuracy (issue #20's bar: a baseline that keeps its SLO).</summary>
    public const double BaselineKeepsTheSlo = 0.05;
    const int Steps = 14, StepsInBand = 4;
    static readonly int[] ShorterStabilizationSeconds = [180, 120, 60];
    static readonly double[] Headroom = [0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5];
    static readonly double[] LessThanForecast = [1.25, 1.5, 2];

    public static PolicyRun Match(ReplayPipeline pipeline, string policy, PolicyRun baseline, ReplayWorkload replay, SimulationOptions options, ScrapeSchedule scrapes)
    {
        double target = baseline.Result.Cost;
        string name = $"{policy}@{baseline.Policy}";
        var adaptation = pipeline.Spec.Spec.Adaptation;
        var tried = new List<PolicyRun>();
        // Positive: spends too much; negative: too little; 0: within the band.
        int Compare(PolicyRun run) => run.Result.Cost > target * (1 + Above) ? 1 : run.Result.Cost < target * (1 - Below) ? -1 : 0;
        int Run(double costWeight, int stabilizationSeconds, double targetUtilization)
        {
            targetUtilization = Math.Min(targetUtilization, InferencePipelineValidator.MaxTargetUtilization);
            var tuned = new ReplayPipeline(pipeline.Derive(spec =>
            {
                spec.Objective.Weights.Cost = costWeight;
                spec.Adaptation.ScaleDownStabilizationSeconds = stabilizationSeconds;
                spec.Adaptation.TargetUtilization = targetUtilization;
            }), pipeline.PodStartSeconds);
            var run = ReplayRunner.Run(tuned, ReplayPolicies.Create(policy, tuned, replay.Workload.Peak, replay.Workload.Mean),
                replay.Workload, replay.PriorArrivals, options, scrapes: scrapes) with
            {
                Policy = name,
                Tuning = FormattableString.Invariant($"cost weight {costWeight:G3}, scale-down stabilization {stabilizationSeconds} s, target utilization {targetUtilization:0.###}"),
            };
            tried.Add(run);
            return Compare(run);
        }

        // The cost weight that spends within the band at these settings, by bisection.
        void Bisect(int window, double utilization)
        {
            if (Run(0, window, utilization) <= 0 || Run(10, window, utilization) > 0) return;
            double spendsLess = Math.Log(10), spendsMore = Math.Log(1e-7);
            // Once in the band, a few more steps toward its upper edge: cost comes in whole replicas held for
            // minutes, so the first run in the band may be the cheaper side of a jump in accuracy.
            for (int i = 0, runsInBand = 0; i < Steps && runsInBand <= StepsInBand; i++)
            {
                double middle = (spendsLess + spendsMore) / 2;
                int side = Run(Math.Exp(middle), window, utilization);
                if (side == 0) runsInBand++;
                if (side > 0) spendsMore = middle;
                else spendsLess = middle;
            }
        }

        double allowed = Math.Max(0.01, baseline.Result.ViolationRate), baselineAccuracy = ReplayReport.Summarize(baseline).Accuracy;
        var accuracies = new Dictionary<PolicyRun, double>(ReferenceEqualityComparer.Instance);
        double Accuracy(PolicyRun run) => accuracies.TryGetValue(run, out double a) ? a : accuracies[run] = ReplayReport.Summarize(run).Accuracy;
        bool Kept(PolicyRun run) => Compare(run) == 0 && run.Result.ViolationRate <= allowed;
        var windows = ShorterStabilizationSeconds.Where(w => w < adaptation.ScaleDownStabilizationSeconds).Prepend(adaptation.ScaleDownStabilizationSeconds).ToList();
        foreach (int window in windows)
        {
            // Headroom is tried when this window has no run yet that both spends in the band and keeps the
            // violations: when even β = 0 spends too little, or when the band bought accuracy with violations.
            foreach (double headroom in Headroom.Prepend(1))
            {
                int before = tried.Count;
                Bisect(window, headroom * adaptation.TargetUtilization);
                if (tried.Skip(before).Any(Kept)) break;
            }
        }
        // The last resort, a step at a time: planning for less than forecast, until a run is as accurate as a baseline that keeps
        // the SLO, or, against one that does not, until a run keeps the violations within the band at all (even the highest cost
        // weight may spend too much, when surges add capacity or switch variants more often than the baseline resizes).
        bool Found() => baseline.Result.ViolationRate <= BaselineKeepsTheSlo ? tried.Any(r => Kept(r) && Accuracy(r) >= baselineAccuracy) : tried.Any(Kept);
        foreach (var (less, window) in LessThanForecast.SelectMany(less => windows.Select(window => (less, window))))
        {
            if (Found()) break;
            Bisect(window, less * adaptation.TargetUtilization);
        }
        var inBand = tried.Where(r => Compare(r) == 0).ToList();
        return inBand.Where(r => r.Result.ViolationRate <= allowed).OrderByDescending(Accuracy).ThenBy(r => r.Result.ViolationRate).FirstOrDefault()
            ?? inBand.FirstOrDefault()
            ?? tried.MinBy(r => Math.Abs(r.Result.Cost / target - 1))!;
    }
}
