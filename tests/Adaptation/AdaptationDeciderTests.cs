using Adaptive.Core.Adaptation;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Planning;
using Adaptive.Experiments.Manifests;
using Adaptive.Experiments.Replay;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Adaptation;

/// <summary>The decision code the operator and the replay share.</summary>
public sealed class AdaptationDeciderTests
{
    static readonly DateTimeOffset Now = new(2026, 11, 22, 12, 0, 0, TimeSpan.Zero);

    static InferencePipeline Video(double utilization)
    {
        var pipeline = ManifestReader.Parse(File.ReadAllText(RepoPaths.Of("samples", "video-pipeline.yaml")));
        pipeline.Spec.Adaptation.TargetUtilization = utilization;
        return pipeline;
    }

    static int Replicas(IReadOnlyList<StagePlan> plan) => plan.Sum(s => s.Allocations.Sum(a => a.Replicas));

    [Fact]
    public void The_plan_is_made_for_the_prediction_divided_by_the_target_utilization()
    {
        var full = AdaptationDecider.Decide(Video(1), 20, []);
        var half = AdaptationDecider.Decide(Video(0.5), 20, []);
        Assert.Equal(20, full.Problem.ArrivalRate);
        Assert.Equal(40, half.Problem.ArrivalRate);
        var atForty = AdaptationDecider.Decide(Video(1), 40, []);
        Assert.Equal(ReplayRunner.Describe(atForty.Plan), ReplayRunner.Describe(half.Plan));
        Assert.True(Replicas(half.Plan) > Replicas(full.Plan));
        // Nothing is planned for less than the minimum load, so that something always serves.
        Assert.Equal(AdaptationDecider.MinimumLoadRps, AdaptationDecider.Decide(Video(1), 0, []).Problem.ArrivalRate);
    }

    /// <summary>
    /// A plan is made for the forecast, the highest load of the stabilization window (its highest rate, or what
    /// a scale-up in it planned for), or 1.5 × a surge's rate, whichever is highest; the window reads the
    /// history's last points back to its length.
    /// </summary>
    [Fact]
    public void Plans_hold_the_recent_peak_until_it_leaves_the_stabilization_window_and_surges_get_headroom()
    {
        // Five-second steps: 60 rps 200 s before the decision, 5 rps since.
        double[] history = [.. Enumerable.Range(0, 120).Select(i => i == 79 ? 60.0 : 5.0)];
        Assert.Equal(60, PlanningLoad.RecentPeak(history, 5, 300, 30, null, Now));
        Assert.Equal(60, PlanningLoad.RecentPeak(history, 5, 200, 30, null, Now));
        Assert.Equal(5, PlanningLoad.RecentPeak(history, 5, 195, 30, null, Now));
        Assert.Equal(5, PlanningLoad.RecentPeak(history, 5, 0, 30, null, Now));
        Assert.Equal(60, PlanningLoad.RecentPeak(history, 5, 10_000, 30, null, Now));
        // A surge decision at 90 rps planned for 135 rps 100 s ago: its rate held while it is in the window, not after.
        var scaleUp = new ScaleUp(Now - TimeSpan.FromSeconds(100), 90, 135);
        Assert.Equal(90, PlanningLoad.RecentPeak(history, 5, 300, 30, scaleUp, Now));
        Assert.Equal(90, PlanningLoad.RecentPeak(history, 5, 101, 30, scaleUp, Now));
        Assert.Equal(5, PlanningLoad.RecentPeak(history, 5, 100, 30, scaleUp, Now));
        // Its headroom too for two decision intervals, within the window.
        Assert.Equal(135, PlanningLoad.RecentPeak(history, 5, 300, 51, scaleUp, Now));
        Assert.Equal(90, PlanningLoad.RecentPeak(history, 5, 300, 50, scaleUp, Now));
        Assert.Equal(5, PlanningLoad.RecentPeak(history, 5, 100, 51, scaleUp, Now));
        Assert.Equal(100, PlanningLoad.HeadroomHeldSeconds(intervalSeconds: 60, stabilizationSeconds: 100));

        var held = new PlanningLoad(6, 60);
        Assert.Equal(60, held.Rps);
        Assert.True(held.Stabilizing);
        Assert.Contains("held at the recent peak 60.0 rps", held.Describe("learned", 1));
        var rising = new PlanningLoad(30, 12);
        Assert.Equal(30, rising.Rps);
        Assert.False(rising.Stabilizing);
        var surge = held with { SurgeRps = 50 };
        Assert.Equal(PlanningLoad.SurgeHeadroom * 50, surge.Rps);
        Assert.False(surge.Stabilizing); // a surge is a rise, not a fall
        Assert.Equal("predicted 6.0 rps (learned), a surge to 50.0 rps: planned for 75.0 rps", surge.Describe("learned", 1));
        Assert.EndsWith("planned for 75.0 rps, sized for 50.0 rps at target utilization 1.5", surge.Describe("learned", 1.5));
        Assert.Equal(50, surge.HeldAfterScaleUpRps); // its rate, not its headroom
        Assert.Equal(30, rising.HeldAfterScaleUpRps);

        // Held at the peak, the plan keeps what the peak needed.
        var pipeline = Video(1);
        var high = AdaptationDecider.Decide(pipeline, 60, []);
        var running = high.Plan.SelectMany(s => s.Allocations.Select(a => new RunningAllocation(s.Name, a.Variant, a.Hardware, a.Replicas, a.Batch))).ToList();
        Assert.Equal(ReplayRunner.Describe(high.Plan), ReplayRunner.Describe(AdaptationDecider.Decide(pipeline, held.Rps, running).Plan));
        Assert.True(Replicas(AdaptationDecider.Decide(pipeline, held.ForecastRps, running).Plan) < Replicas(high.Plan));
        Assert.True(AdaptationDecider.Decide(pipeline, 120, running).ScalesUp);
    }

    /// <summary>
    /// No decision makes a plan that the surge rule calls short at once: planned for a forecast below the latest
    /// rate, the plan still holds the latest rate under the rule's threshold, so a scheduled decision cannot take
    /// back a replica that the next check adds again (the flapping of the live run). Without the latest rate in
    /// the plan, some of these loads do make such plans. At any target utilization: the rule reads the rate as the
    /// plan does (a plan for less than predicted, read against the rate itself, flapped 22 times in 20 minutes).
    /// </summary>
    [Theory]
    [InlineData("resnet", 1)]
    [InlineData("video", 1)]
    [InlineData("resnet", 1.5)]
    [InlineData("video", 0.8)]
    public void No_plan_is_one_the_surge_rule_would_call_short_at_once(string sample, double utilization)
    {
        var pipeline = sample == "video" ? Video(utilization) : ResNetSingle();
        pipeline.Spec.Adaptation.TargetUtilization = utilization;
        int shortWithoutLatest = 0;
        for (double latest = 2; latest <= 60; latest += 0.5)
        {
            var load = new PlanningLoad(ForecastRps: 0.95 * latest, RecentPeakRps: 0, LatestRps: latest);
            Assert.True(load.Rps >= latest / SurgeRule.Threshold);
            var plan = AdaptationDecider.Decide(pipeline, load.Rps, []).Plan;
            Assert.False(SurgeRule.Triggers(pipeline, plan, latest, missedShare: 0), $"{latest} rps: {ReplayRunner.Describe(plan)}");
            if (SurgeRule.Triggers(pipeline, AdaptationDecider.Decide(pipeline, load.ForecastRps, []).Plan, latest, missedShare: 0)) shortWithoutLatest++;
        }
        Assert.True(shortWithoutLatest > 0, "every plan for the forecast alone already held the latest rate: the test shows nothing");
        Assert.Contains("the latest rate 50.0 rps", new PlanningLoad(40, 0, LatestRps: 50).Describe("learned", 1));
    }

    static InferencePipeline ResNetSingle()
    {
        var pipeline = ManifestReader.Parse(File.ReadAllText(RepoPaths.Of("samples", "resnet-mixed.yaml")));
        pipeline.Spec.Stages[0].Mode = "single";
        return pipeline;
    }

    /// <summary>Capacity, not the replica count, says what a scale-up is: fewer replicas of a faster variant may carry more.</summary>
    [Fact]
    public void A_faster_variant_on_fewer_replicas_adds_capacity()
    {
        var pipeline = ResNetSingle();
        RunningAllocation[] slow = [new("classify", "resnet152", "cpu", 4, 1)]; // 4 × 7.9 requests/s
        var decided = AdaptationDecider.Decide(pipeline, 26, slow);
        var chosen = decided.Plan[0].Allocations[0];
        Assert.True(chosen.Replicas < 4 || chosen.Variant != "resnet152", ReplayRunner.Describe(decided.Plan));
        Assert.True(decided.ScalesUp);
        Assert.False(AdaptationDecider.Decide(pipeline, 3, slow).ScalesUp);
    }

    /// <summary>
    /// Until a surge's added replicas have loaded, the share of its rate that the running configuration cannot serve misses the
    /// SLO: a surge decision weighs each second of load time at least that share over the interval, as accuracy. On the video
    /// sample (whose own loading weight is 0), the rise at 153 s of its five minutes with the rise: where a scheduled decision for
    /// the same load starts yolov5s detectors (8.6 s to load), that surge decision starts yolov5n (3.8 s). A surge that only
    /// nears what runs plans as a scheduled decision.
    /// </summary>
    [Fact]
    public void A_surge_that_outruns_what_runs_adds_capacity_that_loads_sooner()
    {
        var pipeline = Video(1);
        RunningAllocation[] current = [new("detect", "yolov5s", "cpu", 4, 1), new("classify", "resnet101", "cpu", 2, 1)];
        StagePlan[] running = [new("detect", [new Allocation("yolov5s", "cpu", 4, 1, 1)]), new("classify", [new Allocation("resnet101", "cpu", 2, 1, 1)])];
        double sustainable = PlanEvaluator.SustainableRps(PlanningProblemBuilder.Build(pipeline, 10, []), running);
        Assert.InRange(sustainable, 10, 17); // four yolov5s sustain 17 requests/s back to back, less within the SLO
        double excess = SurgeRule.ExcessShare(pipeline, running, new PlanningLoad(10, 0, SurgeRps: 28));
        Assert.Equal(1 - sustainable / 28, excess, 1e-9);
        Assert.Equal(0, SurgeRule.ExcessShare(pipeline, running, new PlanningLoad(10, 0, SurgeRps: 0.95 * sustainable)));
        Assert.Equal(0, SurgeRule.ExcessShare(pipeline, running, new PlanningLoad(28, 0))); // a scheduled decision
        Assert.Equal(0, SurgeRule.ExcessShare(pipeline, null, new PlanningLoad(10, 0, SurgeRps: 28))); // nothing runs yet

        double LoadTime(AdaptationDecision decision, string stage) =>
            pipeline.Spec.Stages.Single(s => s.Name == stage).Variants.Single(v => v.Name == decision.Plan.Single(p => p.Name == stage).Allocations.Single().Variant)
                .Profiles.Single().LoadTimeSeconds;
        var scheduled = AdaptationDecider.Decide(pipeline, 42, current);
        var outrun = AdaptationDecider.Decide(pipeline, 42, current, excess);
        Assert.True(scheduled.ScalesUp && outrun.ScalesUp);
        Assert.Equal(0, scheduled.Problem.Weights.Loading);
        // Each second weighs excess / 30 s, and the loading term counts the slowest model's load (yolov5l, 45.64 s) as 1.
        double weight = excess / pipeline.Spec.Adaptation.IntervalSeconds * 45.64;
        Assert.Equal(weight, outrun.Problem.Weights.Loading, 1e-9);
        Assert.Equal(scheduled.Problem.Weights with { Loading = weight }, outrun.Problem.Weights); // only the loading weight differs
        Assert.Equal(8.6, LoadTime(scheduled, "detect"));
        Assert.Equal(3.8, LoadTime(outrun, "detect"));

        // A pipeline that weighs load time more keeps its weight.
        pipeline.Spec.Objective.Weights.Loading = 2 * weight;
        Assert.Equal(2 * weight, AdaptationDecider.Decide(pipeline, 42, current, excess).Problem.Weights.Loading);
    }

    /// <summary>
    /// What a running configuration sustains is the rate at which its planned latency reaches the SLO: for one
    /// allocation with queueing, the model's capacity of its replicas within the whole SLO.
    /// </summary>
    [Fact]
    public void A_surge_is_a_rate_near_what_the_running_configuration_sustains()
    {
        var pipeline = ResNetSingle();
        var problem = PlanningProblemBuilder.Build(pipeline, 10, []);
        var point = problem.Stages[0].Variants.Single(v => v.Name == "resnet152").Hardware.Single(h => h.Class == "cpu").At(1)!;
        StagePlan[] running = [new("classify", [new Allocation("resnet152", "cpu", 3, 1, 10)])];
        double sustainable = PlanEvaluator.SustainableRps(problem, running);
        Assert.Equal(AllocationLatency.CapacityRps(problem, problem.Stages[0], point, 3, pipeline.Spec.SloMs), sustainable, sustainable * 1e-4);

        Assert.False(SurgeRule.Triggers(pipeline, running, 0.85 * sustainable, missedShare: 0));
        Assert.True(SurgeRule.Triggers(pipeline, running, 0.95 * sustainable, missedShare: 0));
        // The observed p99 past the SLO (more than 1 % of the latest requests missed it) calls for a decision at any rate.
        Assert.True(SurgeRule.Triggers(pipeline, running, 0.5 * sustainable, missedShare: 0.02));
        Assert.False(SurgeRule.Triggers(pipeline, running, 0.5 * sustainable, missedShare: 0.005));
        // A surge plans for its rate carried on by its last rise: 6 → 13 rps over a scrape interval plans for 20.
        Assert.Equal(20, SurgeRule.SurgeRps(previousRps: 6, latestRps: 13));
        Assert.Equal(13, SurgeRule.SurgeRps(previousRps: 20, latestRps: 13)); // a fall is not carried on

        var settled = TimeSpan.FromSeconds(SurgeRule.MinimumSecondsBetween);
        Assert.True(SurgeRule.MayDecide(null, Now));
        Assert.True(SurgeRule.MayDecide(Now - settled, Now));
        Assert.False(SurgeRule.MayDecide(Now - settled + TimeSpan.FromSeconds(1), Now)); // too soon after the last added capacity
    }

    /// <summary>
    /// The load is checked a second after each scrape, when what it scraped can be read, rather than at a fixed period that
    /// would read it up to that period late; while a surge decision may not come, the check waits for the moment it may.
    /// </summary>
    [Fact]
    public void The_load_is_checked_just_after_each_scrape()
    {
        static TimeSpan S(double seconds) => TimeSpan.FromSeconds(seconds);
        var longest = S(SurgeRule.CheckSeconds);
        Assert.Equal(S(3 + SurgeRule.CheckLagSeconds), SurgeRule.UntilNextCheck(Now + S(3), lastScaleUp: null, Now));
        Assert.Equal(S(0.5), SurgeRule.UntilNextCheck(Now + S(0.5 - SurgeRule.CheckLagSeconds), lastScaleUp: null, Now));
        // Never longer than the fixed period, so that a scrape interval other than the one assumed is read no later than before.
        Assert.Equal(longest, SurgeRule.UntilNextCheck(Now + S(10), lastScaleUp: null, Now));
        Assert.Equal(longest, SurgeRule.UntilNextCheck(Now - S(3), lastScaleUp: null, Now)); // a scrape overdue
        Assert.Equal(longest, SurgeRule.UntilNextCheck(nextScrape: null, lastScaleUp: null, Now)); // no scrape known
        // Too soon after added capacity: the moment a surge decision may come, whenever the next scrape is.
        Assert.Equal(S(3), SurgeRule.UntilNextCheck(Now + S(1), lastScaleUp: Now - S(SurgeRule.MinimumSecondsBetween - 3), Now));
        Assert.Equal(longest, SurgeRule.UntilNextCheck(null, lastScaleUp: Now - S(1), Now));
    }
}
