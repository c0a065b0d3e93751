using Adaptive.Core.Adaptation;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Planning;
using Adaptive.Experiments.Manifests;
using Adaptive.Experiments.Replay;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Adaptation;

/// <summary>
/// Pipelines that share an InferencePool are planned as one problem: their replicas on the pool never add up to
/// more than its capacity, and where it is short, priority says who gets it.
/// </summary>
public sealed class JointDeciderTests
{
    static readonly TimeSpan Limit = TimeSpan.FromSeconds(20);

    /// <summary>The ResNet sample, named <paramref name="name"/>, its GPU class in the pool "gpus".</summary>
    static InferencePipeline Member(string name, double priority = 1)
    {
        var pipeline = ManifestReader.Parse(File.ReadAllText(RepoPaths.Of("samples", "resnet-mixed.yaml")));
        pipeline.Metadata.Name = name;
        pipeline.Spec.Objective.Priority = priority;
        pipeline.Spec.HardwareClasses.Single(c => c.Name == "gpu").Pool = "gpus";
        return pipeline;
    }

    static int Gpus(IReadOnlyList<StagePlan> plan) => plan.Sum(s => s.Allocations.Where(a => a.Hardware == "gpu").Sum(a => a.Replicas));

    [Fact]
    public void Two_pipelines_that_each_want_the_pool_share_it_within_its_capacity()
    {
        const double Load = 400;
        var alone = AdaptationDecider.Decide(Member("a"), Load, []);
        Assert.True(Gpus(alone.Plan) == 2, $"alone, each would take both GPUs: {ReplayRunner.Describe(alone.Plan)}");

        var joint = JointDecider.Decide("gpus", 2, [new PoolMember(Member("a"), Load, []), new PoolMember(Member("b"), Load, [])], Limit);

        Assert.Equal(PlanStatus.Optimal, joint.Status);
        Assert.True(joint.Members.Sum(m => m.PoolReplicas) <= 2, string.Join("; ", joint.Members.Select(m => ReplayRunner.Describe(m.Decision.Plan))));
        Assert.Equal(joint.Members.Select(m => Gpus(m.Decision.Plan)), joint.Members.Select(m => m.PoolReplicas));
        Assert.Contains(joint.Members, m => m.ConstrainedByOthers);
        // Each plan still carries its pipeline's load within its SLO, on its own classes' names.
        foreach (var member in joint.Members)
        {
            var metrics = PlanEvaluator.Evaluate(member.Decision.Problem, member.Decision.Plan);
            Assert.True(metrics.LatencyMs <= member.Decision.Problem.SloMs, ReplayRunner.Describe(member.Decision.Plan));
            Assert.All(member.Decision.Plan.SelectMany(s => s.Allocations), a => Assert.Contains(a.Hardware, new[] { "cpu", "gpu" }));
        }
    }

    [Theory]
    [InlineData(10, 1)]
    [InlineData(1, 10)]
    public void The_higher_priority_keeps_more_of_the_pool_when_it_is_short(double priorityA, double priorityB)
    {
        const double Load = 400;
        // One GPU for two pipelines that would each take two.
        var joint = JointDecider.Decide("gpus", 1, [new PoolMember(Member("a", priorityA), Load, []), new PoolMember(Member("b", priorityB), Load, [])], Limit);

        // Priority weighs each objective: the pool goes where priority × objective gains most, so the higher
        // priority keeps more of the pool and gives up less of what it would have alone.
        var (high, low) = priorityA > priorityB ? (joint.Members[0], joint.Members[1]) : (joint.Members[1], joint.Members[0]);
        Assert.True(high.PoolReplicas > low.PoolReplicas, $"{high.PoolReplicas} against {low.PoolReplicas}");
        Assert.True(low.ConstrainedByOthers);
        double Loss(MemberDecision m) => m.AloneObjective!.Value - m.Objective!.Value;
        Assert.True(Loss(high) < Loss(low), $"the higher priority lost {Loss(high)}, the lower {Loss(low)}");
    }

    [Fact]
    public void A_pool_with_room_for_everyone_changes_nothing()
    {
        const double Load = 40;
        var joint = JointDecider.Decide("gpus", 8, [new PoolMember(Member("a"), Load, []), new PoolMember(Member("b"), Load, [])], Limit);
        var alone = AdaptationDecider.Decide(Member("a"), Load, []);
        Assert.All(joint.Members, m => Assert.False(m.ConstrainedByOthers));
        Assert.All(joint.Members, m => Assert.Equal(ReplayRunner.Describe(alone.Plan), ReplayRunner.Describe(m.Decision.Plan)));
    }

    [Fact]
    public void A_member_without_the_pool_or_with_two_classes_in_it_is_refused_by_name()
    {
        var outside = Member("c");
        outside.Spec.HardwareClasses.Single(c => c.Name == "gpu").Pool = null;
        var refused = Assert.Throws<PlanningInputException>(() => JointDecider.Decide("gpus", 2, [new PoolMember(outside, 10, [])], Limit));
        Assert.Contains("no class names the pool 'gpus'", refused.Message);

        var twice = Member("d");
        twice.Spec.HardwareClasses.Single(c => c.Name == "cpu").Pool = "gpus";
        Assert.Contains("cpu, gpu all name the pool 'gpus'", Assert.Throws<PlanningInputException>(() => JointDecider.Decide("gpus", 2, [new PoolMember(twice, 10, [])], Limit)).Message);
    }
}
