using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Planning;

namespace Adaptive.Experiments.Replay.Policies;

/// <summary>
/// What the autoscaler baselines (hpa, vpa) scale: per stage the median variant by accuracy, on the first
/// hardware class it is profiled for, unbatched — the way a service is deployed without Adaptive.
/// </summary>
sealed class FixedVariantScaling(InferencePipeline pipeline)
{
    sealed record StageTarget(string Stage, string Variant, string Hardware, double ThroughputRps, int MinReplicas, int MaxReplicas);

    readonly IReadOnlyList<StageTarget> stages = [.. pipeline.Spec.Stages.Select(stage =>
    {
        var variant = ReplayPipeline.FixedVariant(stage);
        var profile = variant.Profiles[0];
        var single = profile.Batches.FirstOrDefault(b => b.Batch == 1)
            ?? throw new PlanningInputException($"spec.stages[{stage.Name}].variants[{variant.Name}]", "the autoscaler baselines need a batch-1 profile");
        return new StageTarget(stage.Name, variant.Name, profile.HardwareClass, single.ThroughputRps, stage.MinReplicas, stage.MaxReplicas);
    })];

    public int Stages => stages.Count;

    /// <summary>Replicas of each stage that carry <paramref name="loadRps"/> at <paramref name="utilization"/> of their capacity, within the stage's bounds.</summary>
    public int[] ReplicasFor(double loadRps, double utilization) =>
        [.. stages.Select(s => Math.Clamp((int)Math.Ceiling(loadRps / (utilization * s.ThroughputRps)), Math.Max(1, s.MinReplicas), s.MaxReplicas))];

    /// <summary>What one replica of stage <paramref name="stage"/> sustains, requests per second.</summary>
    public double CapacityRps(int stage) => stages[stage].ThroughputRps;

    /// <summary>The replicas of each stage in a plan this scaling made.</summary>
    public int[] RunningReplicas(IReadOnlyList<StagePlan> plan) =>
        [.. stages.Select(s => plan.Single(p => p.Name == s.Stage).Allocations.Sum(a => a.Replicas))];

    public IReadOnlyList<StagePlan> Plan(IReadOnlyList<int> replicas, double loadRps) =>
        [.. stages.Select((s, i) => new StagePlan(s.Stage, [new Allocation(s.Variant, s.Hardware, replicas[i], 1, loadRps)]))];
}
