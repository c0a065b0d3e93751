using Adaptive.Core.Adaptation;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Forecasting;
using Adaptive.Core.Planning;
using Adaptive.Core.Simulation;
using Adaptive.Core.Workloads;
using Adaptive.Experiments.Replay;
using Adaptive.Experiments.Replay.Policies;
using Adaptive.Experiments.Workloads;

namespace Adaptive.Tests.Replay;

/// <summary>Each policy on a short window of the Twitter trace, on both sample pipelines.</summary>
public sealed class ReplayPolicyTests
{
    /// <summary>Five minutes of IPA's window that hold its sharp rise (about 6 → 25 rps at 390–420 s into it).</summary>
    static readonly ReplayWorkload Rise = ReplayWorkloads.Create("twitter", TwitterTrace.DefaultPath, WorkloadPatterns.IpaWindowStart + 240, 300, WorkloadPatterns.IpaDamping, seed: 1);

    public static TheoryData<string, string> PoliciesAndPipelines()
    {
        var data = new TheoryData<string, string>();
        foreach (var policy in ReplayPolicies.Names)
            foreach (var pipeline in ReplayPipeline.Samples.Keys)
                data.Add(policy, pipeline);
        return data;
    }

    internal static PolicyRun Replay(string policyName, string pipelineName, ReplayWorkload replay, ScrapeSchedule? scrapes = null)
    {
        var pipeline = ReplayPipeline.Load(pipelineName, podStartSeconds: 5);
        var policy = ReplayPolicies.Create(policyName, pipeline, replay.Workload.Peak, replay.Workload.Mean);
        int decisions = 0;
        var run = ReplayRunner.Run(pipeline, policy, replay.Workload, replay.PriorArrivals, pipeline.SimulationOptions(seed: 2, ReplayPipeline.DefaultHopMs), () => decisions++, scrapes);
        Assert.Equal(ReplayRunner.DecisionCount(policy, replay.Workload.Seconds), decisions);
        Assert.InRange(run.Decisions.Count, 1, decisions); // a check between decisions that finds nothing to decide is not one
        return run;
    }

    static IEnumerable<Allocation> Allocations(PolicyRun run, string stage) =>
        run.Decisions.SelectMany(d => d.Running.Single(s => s.Name == stage).Allocations);

    /// <summary>What each policy must do with a stage over the rising window; every policy has an entry.</summary>
    delegate void StageRule(PolicyRun run, StageSpec stage, IReadOnlyList<Allocation> allocations, IReadOnlyList<int> replicasPerDecision);

    static readonly IReadOnlyDictionary<string, StageRule> Rules = new Dictionary<string, StageRule>
    {
        ["ipa"] = (run, stage, allocations, replicas) =>
        {
            Assert.All(run.Decisions, d => Assert.Single(d.Running.Single(s => s.Name == stage.Name).Allocations));
            Grows(run, stage, replicas);
        },
        ["infadapter"] = (run, stage, allocations, replicas) =>
        {
            Assert.All(run.Decisions, d => Assert.NotEmpty(d.Running.Single(s => s.Name == stage.Name).Allocations));
            Grows(run, stage, replicas);
        },
        ["static"] = (run, _, _, _) => Assert.Equal(0, ReplayReport.Summarize(run).Reconfigurations),
        ["hpa"] = (run, stage, allocations, replicas) =>
        {
            Assert.All(allocations, a => Assert.Equal((ReplayPipeline.FixedVariant(stage).Name, 1), (a.Variant, a.Batch)));
            Grows(run, stage, replicas);
        },
        ["vpa"] = (_, stage, allocations, _) => Assert.All(allocations, a => Assert.Equal((ReplayPipeline.FixedVariant(stage).Name, 1), (a.Variant, a.Batch))),
        ["model-switching"] = (_, _, allocations, replicas) =>
        {
            Assert.Single(replicas.Distinct());
            Assert.All(allocations, a => Assert.Equal(1, a.Batch));
        },
        ["fa2"] = (run, stage, allocations, replicas) =>
        {
            Assert.All(run.Decisions, d => Assert.Single(d.Running.Single(s => s.Name == stage.Name).Allocations));
            Assert.All(allocations, a => Assert.Equal(ReplayPipeline.FixedVariant(stage).Name, a.Variant));
            Grows(run, stage, replicas);
        },
        ["rim"] = (_, _, allocations, replicas) =>
        {
            Assert.Single(replicas.Distinct());
            Assert.All(allocations, a => Assert.Equal(1, a.Batch));
        },
    };

    /// <summary>The stage sustains more at the end of the rise than at its start: more replicas, or faster variants or batches.</summary>
    static void Grows(PolicyRun run, StageSpec stage, IReadOnlyList<int> replicas)
    {
        double first = Capacity(run.Decisions[0], stage), last = Capacity(run.Decisions[^1], stage);
        Assert.True(last > first, $"{run.Policy}'s {stage.Name} sustained {first:F1} requests/s at first ({replicas[0]} replicas), {last:F1} at the end ({replicas[^1]}), as the load rose");
    }

    /// <summary>What the stage's replicas sustain after <paramref name="decision"/>, at their profiled throughput.</summary>
    static double Capacity(DecisionRecord decision, StageSpec stage) => decision.Running.Single(s => s.Name == stage.Name).Allocations.Sum(a =>
        a.Replicas * stage.Variants.Single(v => v.Name == a.Variant).Profiles.Single(p => p.HardwareClass == a.Hardware).Batches.Single(b => b.Batch == a.Batch).ThroughputRps);

    [Fact]
    public void Every_policy_has_its_own_rules() => Assert.Equal(ReplayPolicies.Names.Order(), Rules.Keys.Order());

    [Theory]
    [MemberData(nameof(PoliciesAndPipelines))]
    public void Each_policy_replays_a_window_within_its_own_rules(string policyName, string pipelineName)
    {
        var run = Replay(policyName, pipelineName, Rise);
        var result = run.Result;
        Assert.InRange(result.Arrived, 3000, 8000);
        var summary = ReplayReport.Summarize(run);
        Assert.True(summary.Cost > 0 && summary.Accuracy > 0, $"cost {summary.Cost}, accuracy {summary.Accuracy}");

        foreach (var stage in ReplayPipeline.Load(pipelineName, 5).Spec.Spec.Stages)
        {
            var replicasPerDecision = run.Decisions.Select(d => d.Running.Single(s => s.Name == stage.Name).Allocations.Sum(a => a.Replicas)).ToList();
            Rules[policyName](run, stage, [.. Allocations(run, stage.Name)], replicasPerDecision);
        }
    }

    /// <summary>
    /// The rise from 6 to 27 requests/s comes 10 s after a scheduled decision (at 150 s into this window):
    /// the surge rule adds capacity before the next one, and only then.
    /// </summary>
    [Fact]
    public void A_surge_gets_capacity_before_the_next_scheduled_decision()
    {
        var run = Replay("ipa", "resnet", Rise);
        var spec = ReplayPipeline.Load("resnet", 5).Spec.Spec;
        int interval = spec.Adaptation.IntervalSeconds;
        var early = run.Decisions.Where(d => d.Second % interval != 0).ToList();
        Assert.NotEmpty(early);
        Assert.All(early, d => Assert.InRange(d.Second, 150, 240));
        var before = run.Decisions.Last(d => d.Second < early[0].Second);
        Assert.True(Capacity(early[0], spec.Stages[0]) > Capacity(before, spec.Stages[0]), $"at {early[0].Second} s: {early[0].Configuration} after {before.Configuration}");
        // It comes a second after the scrape that showed the rise (the scrapes are 2 s past every 5 s of the window).
        Assert.Equal(ScrapeSchedule.Default.PhaseSeconds + SurgeRule.CheckLagSeconds, early[0].Second % ScrapeSchedule.Default.IntervalSeconds);
    }

    /// <summary>
    /// The scheduled decisions within two intervals of a surge decision plan for at least what it planned, its headroom
    /// included (<see cref="PlanningLoad.HeadroomHeldSeconds"/>): the next one comes seconds later and would otherwise take
    /// back what the surge is starting.
    /// </summary>
    [Fact]
    public void The_scheduled_decisions_after_a_surge_keep_its_headroom_for_two_intervals()
    {
        var run = Replay("ipa", "resnet", Rise);
        var adaptation = ReplayPipeline.Load("resnet", 5).Spec.Spec.Adaptation;
        int interval = adaptation.IntervalSeconds, held = PlanningLoad.HeadroomHeldSeconds(interval, adaptation.ScaleDownStabilizationSeconds);
        var surge = run.Decisions.First(d => d.Second % interval != 0);
        var after = run.Decisions.Where(d => d.Second % interval == 0 && d.Second > surge.Second && d.Second - surge.Second < held).ToList();
        Assert.NotEmpty(after);
        Assert.All(after, d => Assert.True(d.PredictedRps >= surge.PredictedRps - 1e-9,
            $"at {d.Second} s planned for {d.PredictedRps:F1} rps, {d.Second - surge.Second} s after a surge decision planned for {surge.PredictedRps:F1}"));
    }

    /// <summary>With the router scraped every 5 s (the default) rather than 15 (<c>replay --scrape-seconds 15</c>), the rise shows sooner and its surge decision comes sooner.</summary>
    [Fact]
    public void Faster_scrapes_show_a_surge_sooner()
    {
        int interval = ReplayPipeline.Load("resnet", 5).Spec.Spec.Adaptation.IntervalSeconds;
        int FirstSurge(ScrapeSchedule scrapes) => Replay("ipa", "resnet", Rise, scrapes).Decisions.First(d => d.Second % interval != 0).Second;
        int slow = FirstSurge(ScrapeSchedule.Every(15)), fast = FirstSurge(ScrapeSchedule.Default);
        Assert.True(fast < slow, $"the surge decision at {fast} s with 5 s scrapes, {slow} s with 15 s ones");
    }

    [Fact]
    public void Vertical_scaling_recreates_the_pod_and_loses_requests_while_it_starts()
    {
        // VPA follows the 50th–95th percentiles of ten minutes: only IPA's whole window, with its sustained rise, moves it.
        var rise = ReplayWorkloads.Create("twitter", TwitterTrace.DefaultPath, WorkloadPatterns.IpaWindowStart, WorkloadPatterns.IpaWindowSeconds, WorkloadPatterns.IpaDamping, seed: 1);
        var vpa = Replay("vpa", "resnet", rise);
        var resize = vpa.Decisions.First(d => d.Reconfigured);
        Assert.Contains(vpa.Result.Requests, r => r.Outcome == RequestOutcome.Rejected && r.ArrivalSeconds >= resize.Second && r.ArrivalSeconds < resize.Second + 6);
        // The horizontal autoscaler adds replicas beside the running one: nothing is refused for want of a replica.
        var hpa = Replay("hpa", "resnet", rise);
        Assert.Contains(hpa.Decisions, d => d.Reconfigured);
        Assert.True(vpa.Result.Rejected > hpa.Result.Rejected, $"vpa rejected {vpa.Result.Rejected}, hpa {hpa.Result.Rejected}");
    }

    [Fact]
    public void The_horizontal_autoscaler_scales_down_only_after_its_stabilization_window()
    {
        var spike = ReplayWorkloads.Create("spike", TwitterTrace.DefaultPath, 0, 900, WorkloadPatterns.IpaDamping, seed: 1); // 40 rps at 300–345 s
        var hpa = Replay("hpa", "resnet", spike);
        int Replicas(int second) => hpa.Decisions.Last(d => d.Second <= second).Running.Sum(s => s.Allocations.Sum(a => a.Replicas));
        Assert.True(Replicas(360) > Replicas(290));
        Assert.Equal(Replicas(360), Replicas(600)); // within 300 s of the last high recommendation
        Assert.True(Replicas(720) < Replicas(600));
    }
}
