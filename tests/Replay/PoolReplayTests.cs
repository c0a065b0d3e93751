using Adaptive.Core.Planning;
using Adaptive.Experiments.Commands;
using Adaptive.Experiments.Replay;
using Adaptive.Experiments.Replay.Policies;
using Adaptive.Experiments.Replay.SharedPool;
using Adaptive.Core.Workloads;
using Adaptive.Experiments.Workloads;

namespace Adaptive.Tests.Replay;

/// <summary>
/// Pipelines on their own windows of the trace, sharing one GPU, replayed in lockstep: joint planning and static
/// quotas each keep the pool within its capacity at every decision, and the joint policy gives the GPU to either.
/// </summary>
public sealed class PoolReplayTests
{
    const int Gpus = 1;

    static List<PoolMemberReplay> Members() => [.. new[] { WorkloadPatterns.IpaWindowStart + 240, 896_400 }.Select(start =>
    {
        var pipeline = ReplayPipeline.Load("resnet", 5);
        pipeline.Spec.Metadata.Name = $"w{start}";
        return new PoolMemberReplay(pipeline, ReplayWorkloads.Create("twitter", TwitterTrace.DefaultPath, start, 300, 1, 1));
    })];

    static int Gpu(IReadOnlyList<StagePlan> plan) => plan.Sum(s => s.Allocations.Where(a => a.Hardware == "gpu").Sum(a => a.Replicas));

    /// <summary>What the members' decisions hold of the pool at each decision: the plans in force after it.</summary>
    static IEnumerable<(int Second, int[] Held)> Held(PoolRun run) =>
        run.Members[0].Decisions.Select(d => d.Second).Distinct().Select(second =>
            (second, run.Members.Select(m => Gpu(m.Decisions.Last(d => d.Second <= second).Running)).ToArray()));

    [Fact]
    public void Joint_planning_and_quotas_keep_the_pool_within_its_capacity_in_lockstep()
    {
        var members = Members();
        var options = members.Select((m, i) => m.Pipeline.SimulationOptions(1 + i, ReplayPipeline.DefaultHopMs)).ToList();
        JointPoolPolicy Joint() => new([.. members.Select(m => m.Pipeline.Derive(spec =>
        {
            spec.Stages.ForEach(s => s.Mode = "single");
            spec.HardwareClasses.Single(c => c.Name == "gpu").Pool = "pool";
        }))], "pool", Gpus);
        var quota = new SeparatePolicies("quota", [.. members.Select((m, i) => new PlannerPolicy("quota", m.Pipeline.Derive(spec =>
        {
            spec.Stages.ForEach(s => s.Mode = "single");
            spec.HardwareClasses.Single(c => c.Name == "gpu").MaxReplicas = ReplayPoolCommand.Quota(Gpus, 2, i);
        })))]);

        var jointRun = PoolReplay.Run(members, Joint(), options);
        var quotaRun = PoolReplay.Run(members, quota, options);

        // Both members decided at the same moments, and each member's requests are its own window's.
        Assert.Equal(jointRun.Members[0].Decisions.Select(d => d.Second), jointRun.Members[1].Decisions.Select(d => d.Second));
        Assert.All(jointRun.Members.Zip(members), p => Assert.Equal(p.Second.Replay.Workload.Seconds, p.First.Result.ArrivalsPerSecond.Count));
        Assert.All(Held(jointRun), h => Assert.True(h.Held.Sum() <= Gpus, $"at {h.Second} s the joint plans held {string.Join("+", h.Held)} GPUs of {Gpus}"));
        Assert.All(Held(quotaRun), h => Assert.True(h.Held[1] == 0 && h.Held[0] <= 1, $"at {h.Second} s the quota plans held {string.Join("+", h.Held)}"));
        // The quota leaves the second member without a GPU; the joint plan gives it the GPU when it gains more from it.
        Assert.Contains(Held(jointRun), h => h.Held[1] == 1);

        var summary = PoolReplay.Summarize(jointRun, "gpu", Gpus);
        Assert.InRange(summary.PoolHeld, 0.01, 1.5); // starting and draining replicas of a handover may hold more for seconds
        Assert.Equal(jointRun.Members.Sum(m => m.Result.Arrived), summary.Requests);
        // The same windows, seeds and policy give the same run: the lockstep leaves nothing to the threads' timing.
        var again = PoolReplay.Summarize(PoolReplay.Run(members, Joint(), options), "gpu", Gpus);
        Assert.Equal((summary.ViolationRate, summary.Cost, summary.Accuracy, summary.PoolHeld), (again.ViolationRate, again.Cost, again.Accuracy, again.PoolHeld));
    }
}
