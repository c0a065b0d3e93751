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
        var full = AdaptationDecider.Decide(Video(1), 20, [], null, Now);
        var half = AdaptationDecider.Decide(Video(0.5), 20, [], null, Now);
        Assert.Equal(20, full.Problem.ArrivalRate);
        Assert.Equal(40, half.Problem.ArrivalRate);
        var atForty = AdaptationDecider.Decide(Video(1), 40, [], null, Now);
        Assert.Equal(ReplayRunner.Describe(atForty.Plan!), ReplayRunner.Describe(half.Plan!));
        Assert.True(Replicas(half.Plan!) > Replicas(full.Plan!));
        // Nothing is planned for less than the minimum load, so that something always serves.
        Assert.Equal(AdaptationDecider.MinimumLoadRps, AdaptationDecider.Decide(Video(1), 0, [], null, Now).Problem.ArrivalRate);
    }

    [Fact]
    public void Scaling_down_waits_for_the_cooldown_after_the_last_scale_up_and_scaling_up_never_does()
    {
        var pipeline = Video(1);
        var high = AdaptationDecider.Decide(pipeline, 60, [], null, Now).Plan!;
        var running = high.SelectMany(s => s.Allocations.Select(a => new RunningAllocation(s.Name, a.Variant, a.Hardware, a.Replicas, a.Batch))).ToList();
        var cooldown = TimeSpan.FromSeconds(pipeline.Spec.Adaptation.ScaleDownCooldownSeconds);

        var held = AdaptationDecider.Decide(pipeline, 5, running, Now - cooldown / 2, Now);
        Assert.True(held.HeldByCooldown);
        Assert.True(held.PlannedReplicas < held.RunningReplicas);

        Assert.False(AdaptationDecider.Decide(pipeline, 5, running, Now - cooldown, Now).HeldByCooldown);
        Assert.False(AdaptationDecider.Decide(pipeline, 5, running, null, Now).HeldByCooldown);
        var up = AdaptationDecider.Decide(pipeline, 120, running, Now, Now);
        Assert.True(up.ScalesUp);
    }

    static InferencePipeline ResNetSingle()
    {
        var pipeline = ManifestReader.Parse(File.ReadAllText(RepoPaths.Of("samples", "resnet-mixed.yaml")));
        pipeline.Spec.Stages[0].Mode = "single";
        return pipeline;
    }

    /// <summary>Capacity, not the replica count, says what a scale-down is: fewer replicas of a faster variant may carry more.</summary>
    [Fact]
    public void A_faster_variant_on_fewer_replicas_is_not_held_by_the_cooldown()
    {
        var pipeline = ResNetSingle();
        RunningAllocation[] slow = [new("classify", "resnet152", "cpu", 4, 1)]; // 4 × 7.9 requests/s
        var decided = AdaptationDecider.Decide(pipeline, 26, slow, Now, Now);
        Assert.False(decided.HeldByCooldown, ReplayRunner.Describe(decided.Plan ?? []));
        Assert.True(decided.PlannedReplicas < decided.RunningReplicas || decided.Plan![0].Allocations[0].Variant != "resnet152", ReplayRunner.Describe(decided.Plan!));
        Assert.True(decided.ScalesUp);
        // Less load within the cooldown: the plan would remove capacity, and waits.
        Assert.True(AdaptationDecider.Decide(pipeline, 3, slow, Now, Now).HeldByCooldown);
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

        Assert.False(SurgeRule.Triggers(pipeline, running, 0.85 * sustainable));
        Assert.True(SurgeRule.Triggers(pipeline, running, 0.95 * sustainable));
        var settled = TimeSpan.FromSeconds(SurgeRule.MinimumSecondsBetween);
        Assert.True(SurgeRule.MayDecide(Now - settled, Now - 2 * settled, Now));
        Assert.False(SurgeRule.MayDecide(Now - 2 * settled, Now - settled + TimeSpan.FromSeconds(1), Now)); // too soon after the last added capacity
        Assert.False(SurgeRule.MayDecide(Now - settled + TimeSpan.FromSeconds(1), null, Now)); // too soon after the last decision
    }
}
