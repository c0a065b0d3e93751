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

    static Dictionary<string, int> Pool(int gpus) => new() { ["gpus"] = gpus };

    static int Gpus(IReadOnlyList<StagePlan> plan) => plan.Sum(s => s.Allocations.Where(a => a.Hardware == "gpu").Sum(a => a.Replicas));

    [Fact]
    public void Two_pipelines_that_each_want_the_pool_share_it_within_its_capacity()
    {
        const double Load = 400;
        var alone = AdaptationDecider.Decide(Member("a"), Load, []);
        Assert.True(Gpus(alone.Plan) == 2, $"alone, each would take both GPUs: {ReplayRunner.Describe(alone.Plan)}");

        var joint = JointDecider.Decide(Pool(2), [new PoolMember(Member("a"), Load, []), new PoolMember(Member("b"), Load, [])], Limit);

        Assert.All(joint.Members, m => Assert.Equal(PlanStatus.Optimal, m.Decision.Result.Status));
        Assert.True(joint.Members.Sum(m => m.PoolReplicas) <= 2, string.Join("; ", joint.Members.Select(m => ReplayRunner.Describe(m.Decision.Plan))));
        Assert.Equal(joint.Members.Select(m => Gpus(m.Decision.Plan)), joint.Members.Select(m => m.PoolReplicas));
        Assert.Contains(joint.Members, m => m.ConstrainedByOthers);
        Assert.All(joint.Members, m => Assert.Equal(2, m.WantedReplicas)); // what each would take alone
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
        var joint = JointDecider.Decide(Pool(1), [new PoolMember(Member("a", priorityA), Load, []), new PoolMember(Member("b", priorityB), Load, [])], Limit);

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
        var joint = JointDecider.Decide(Pool(8), [new PoolMember(Member("a"), Load, []), new PoolMember(Member("b"), Load, [])], Limit);
        var alone = AdaptationDecider.Decide(Member("a"), Load, []);
        Assert.All(joint.Members, m => Assert.False(m.ConstrainedByOthers));
        Assert.All(joint.Members, m => Assert.Equal(ReplayRunner.Describe(alone.Plan), ReplayRunner.Describe(m.Decision.Plan)));
    }

    [Fact]
    public void A_member_without_the_pool_or_with_two_classes_in_it_is_refused_by_name()
    {
        var outside = Member("c");
        outside.Spec.HardwareClasses.Single(c => c.Name == "gpu").Pool = null;
        var refused = Assert.Throws<PlanningInputException>(() => JointDecider.Decide(Pool(2), [new PoolMember(outside, 10, [])], Limit));
        Assert.Contains("no class names any of the pools gpus", refused.Message);

        var twice = Member("d");
        twice.Spec.HardwareClasses.Single(c => c.Name == "cpu").Pool = "cpus";
        var pools = new Dictionary<string, int> { ["gpus"] = 2, ["cpus"] = 8 };
        Assert.Contains("a pipeline may name one pool", Assert.Throws<PlanningInputException>(() => JointDecider.Decide(pools, [new PoolMember(twice, 10, [])], Limit)).Message);
    }

    /// <summary>
    /// The decomposition reaches the joint optimum: on small instances (three to five pipelines of both modes, loads
    /// and priorities drawn at random, one pool or two with the pipelines split between them) its Σ priority ×
    /// objective equals CP-SAT's on the whole problem, the pools' classes renamed to one shared class per pool.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void The_decomposition_reaches_the_joint_optimum(int seed)
    {
        var random = new Random(seed);
        bool twoPools = seed % 2 == 0;
        var pools = twoPools ? new Dictionary<string, int> { ["gpus"] = random.Next(1, 4), ["gpus-b"] = random.Next(1, 4) } : Pool(random.Next(1, 4));
        var members = Enumerable.Range(0, random.Next(3, 6)).Select(i =>
        {
            var pipeline = Member($"p{i}", priority: 1 + random.Next(3));
            pipeline.Spec.Stages[0].Mode = random.Next(2) == 0 ? "single" : "mixed";
            if (twoPools && i % 2 == 1) pipeline.Spec.HardwareClasses.Single(c => c.Name == "gpu").Pool = "gpus-b";
            return new PoolMember(pipeline, 40 + random.NextDouble() * 400, []);
        }).ToList();

        var joint = JointDecider.Decide(pools, members, Limit);

        var whole = JointDecider.WholeProblem(pools, members);
        var optimum = new CpSatPlanner(new PlannerOptions(TimeSpan.FromMinutes(2))).Plan(whole);
        Assert.Equal(PlanStatus.Optimal, optimum.Status);
        double decomposed = joint.Members.Select((m, i) => m.Objective!.Value * members[i].Pipeline.Spec.Objective.Priority).Sum();
        Assert.Equal(optimum.Objective!.Value, decomposed, 6);
        foreach (var (pool, capacity) in pools) Assert.True(joint.Members.Where(m => m.Pool == pool).Sum(m => m.PoolReplicas) <= capacity);
    }

    /// <summary>
    /// A round that keeps the last round's menus re-plans only the members whose problem changed, and decides what a
    /// round from scratch decides: a menu depends on nothing else.
    /// </summary>
    [Fact]
    public void A_round_with_the_last_rounds_menus_plans_only_what_changed_and_decides_the_same()
    {
        var members = Enumerable.Range(0, 4).Select(i => new PoolMember(Member($"p{i}", priority: 1 + i % 2), 100 + 80 * i, [])).ToList();
        var kept = new JointMenus();
        var first = JointDecider.Decide(Pool(3), members, Limit, kept);

        var again = JointDecider.Decide(Pool(3), members, Limit, kept);
        Assert.Equal(0, again.Solves);

        members[1] = members[1] with { PlannedRps = 390 };
        var changed = JointDecider.Decide(Pool(3), members, Limit, kept);
        var scratch = JointDecider.Decide(Pool(3), members, Limit);
        Assert.InRange(changed.Solves, 1, 3); // member 1's menu only: alone, and each allotment below what it would use
        Assert.Equal(scratch.Members.Select(m => ReplayRunner.Describe(m.Decision.Plan)), changed.Members.Select(m => ReplayRunner.Describe(m.Decision.Plan)));
        Assert.Equal(scratch.Members.Select(m => m.PoolReplicas), changed.Members.Select(m => m.PoolReplicas));

        // The pool's capacity is part of every menu: all are made again.
        Assert.Equal(JointDecider.Decide(Pool(2), members, Limit).Solves, JointDecider.Decide(Pool(2), members, Limit, kept).Solves);
        Assert.True(first.Solves >= members.Count);
    }
}
