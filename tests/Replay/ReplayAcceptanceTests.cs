using Adaptive.Core.Workloads;
using Adaptive.Experiments.Replay;
using Adaptive.Experiments.Replay.Policies;
using Adaptive.Experiments.Workloads;

namespace Adaptive.Tests.Replay;

/// <summary>
/// Issue #20's bar for the policies themselves, as <c>adaptive replay</c> runs them (same seeds and defaults): on
/// each window, Adaptive's policies miss the SLO no more than max(1 %, the best baseline's), and no baseline
/// dominates them (no worse on violations, accuracy and cost at once, and better on one).
/// </summary>
public sealed class ReplayAcceptanceTests
{
    static readonly string[] Adaptive = ["ipa", "infadapter"];

    /// <summary>
    /// Pipeline, first second of the trace, length, damping, the Adaptive policies checked, and the seed: IPA's window (the
    /// README's default) and its five minutes with the sharp rise, on both samples; on the video sample for ipa
    /// (infadapter plans the video sample's two mixed stages in about 2 s a decision: two minutes a window). The video
    /// sample's rise at seed 2 too: it missed 1.28 % while a scheduled decision took back, seconds after, the detector a
    /// surge decision had added (PlanningLoad.HeadroomHeldSeconds).
    /// </summary>
    public static TheoryData<string, int, int, double, string, int> Windows => new()
    {
        { "resnet", WorkloadPatterns.IpaWindowStart, WorkloadPatterns.IpaWindowSeconds, WorkloadPatterns.IpaDamping, "ipa,infadapter", 1 },
        { "resnet", WorkloadPatterns.IpaWindowStart + 240, 300, WorkloadPatterns.IpaDamping, "ipa,infadapter", 1 },
        { "video", WorkloadPatterns.IpaWindowStart, WorkloadPatterns.IpaWindowSeconds, WorkloadPatterns.IpaDamping, "ipa", 1 },
        { "video", WorkloadPatterns.IpaWindowStart + 240, 300, WorkloadPatterns.IpaDamping, "ipa", 1 },
        { "video", WorkloadPatterns.IpaWindowStart + 240, 300, WorkloadPatterns.IpaDamping, "ipa", 2 },
    };

    [Theory]
    [MemberData(nameof(Windows))]
    public void Adaptive_misses_the_slo_no_more_than_the_best_baseline_and_no_baseline_dominates_it(string pipelineName, int start, int seconds, double damping, string checkedPolicies,
        int seed)
    {
        var replay = ReplayWorkloads.Create("twitter", TwitterTrace.DefaultPath, start, seconds, damping, seed);
        var pipeline = ReplayPipeline.Load(pipelineName, podStartSeconds: 5);
        var options = pipeline.SimulationOptions(seed, ReplayPipeline.DefaultHopMs);
        var names = ReplayPolicies.Names.Where(name => !Adaptive.Contains(name) || checkedPolicies.Split(',').Contains(name)).ToList();
        var summaries = new PolicySummary[names.Count];
        Parallel.For(0, names.Count, i =>
        {
            var policy = ReplayPolicies.Create(names[i], pipeline, replay.Workload.Peak, replay.Workload.Mean);
            summaries[i] = ReplayReport.Summarize(ReplayRunner.Run(pipeline, policy, replay.Workload, replay.PriorArrivals, options));
        });
        var baselines = summaries.Where(s => !Adaptive.Contains(s.Policy)).ToList();
        var bestBaseline = baselines.MinBy(b => b.ViolationRate)!;
        string table = string.Join("; ", summaries.Select(s => $"{s.Policy} {s.ViolationRate:P2} / {s.Accuracy:F4} / {s.Cost:F0}"));

        Assert.Contains(summaries, s => Adaptive.Contains(s.Policy));
        foreach (var adaptive in summaries.Where(s => Adaptive.Contains(s.Policy)))
        {
            Assert.True(adaptive.ViolationRate <= Math.Max(0.01, bestBaseline.ViolationRate),
                $"{adaptive.Policy} misses {adaptive.ViolationRate:P2}, the best baseline ({bestBaseline.Policy}) {bestBaseline.ViolationRate:P2}: {table}");
            Assert.All(baselines, baseline => Assert.False(Dominates(baseline, adaptive), $"{baseline.Policy} dominates {adaptive.Policy}: {table}"));
        }
    }

    static bool Dominates(PolicySummary a, PolicySummary b) =>
        a.ViolationRate <= b.ViolationRate && a.Accuracy >= b.Accuracy && a.Cost <= b.Cost
        && (a.ViolationRate < b.ViolationRate || a.Accuracy > b.Accuracy || a.Cost < b.Cost);
}
