using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Planning;

namespace Adaptive.Core.Adaptation;

/// <summary>
/// One adaptation decision for a predicted load. <paramref name="Plan"/> is what should run: the planner's
/// answer, or <c>null</c> when the scale-down cooldown holds the running configuration.
/// <paramref name="AddsCapacity"/>: some stage of the plan sustains more than it runs now.
/// </summary>
public sealed record AdaptationDecision(PipelineProblem Problem, PlanResult Result, IReadOnlyList<StagePlan>? Plan, int PlannedReplicas, int RunningReplicas,
    bool AddsCapacity)
{
    public bool HeldByCooldown => Plan is null;
    public bool ScalesUp => Plan is not null && AddsCapacity;
}

/// <summary>
/// The planning half of the adaptation loop, shared by the operator and <c>adaptive replay</c> so that the
/// replay runs what the operator runs: plan the pipeline for the predicted load (never below
/// <see cref="MinimumLoadRps"/>, so that a pipeline always serves) divided by the target utilization, then
/// hold off removing capacity within the cooldown after capacity was last added, against flapping.
/// Capacity is what a stage's replicas sustain at their profiled throughput, so that a switch to a faster
/// variant with fewer replicas is not mistaken for a scale-down.
/// </summary>
public static class AdaptationDecider
{
    public const double MinimumLoadRps = 1;

    /// <param name="lastScaleUp">When capacity last grew; <c>null</c> when the cooldown does not apply (nothing runs yet, or the spec changed).</param>
    public static AdaptationDecision Decide(InferencePipeline pipeline, double predictedRps, IReadOnlyList<RunningAllocation> current,
        DateTimeOffset? lastScaleUp, DateTimeOffset now)
    {
        var adaptation = pipeline.Spec.Adaptation;
        var problem = PlanningProblemBuilder.Build(pipeline, Math.Max(predictedRps, MinimumLoadRps) / adaptation.TargetUtilization, current);
        var result = new CpSatPlanner(new PlannerOptions(TimeSpan.FromSeconds(adaptation.PlannerTimeLimitSeconds))).Plan(PlanningProblem.Single(problem));
        var plan = result.Pipelines[0].Stages;
        var planned = Capacity(problem, plan.SelectMany(s => s.Allocations.Select(a => new RunningAllocation(s.Name, a.Variant, a.Hardware, a.Replicas, a.Batch))));
        var running = Capacity(problem, current);
        bool removes = problem.Stages.Any(s => planned.GetValueOrDefault(s.Name) < running.GetValueOrDefault(s.Name) * (1 - 1e-9));
        bool adds = problem.Stages.Any(s => planned.GetValueOrDefault(s.Name) > running.GetValueOrDefault(s.Name) * (1 + 1e-9));
        bool held = removes && lastScaleUp is { } grew && now - grew < TimeSpan.FromSeconds(adaptation.ScaleDownCooldownSeconds);
        return new AdaptationDecision(problem, result, held ? null : plan, plan.Sum(s => s.Allocations.Sum(a => a.Replicas)), current.Sum(a => a.Replicas), adds);
    }

    /// <summary>Per stage, the requests per second its replicas sustain at their profiled throughput; a variant or batch the spec no longer has counts 0.</summary>
    static Dictionary<string, double> Capacity(PipelineProblem problem, IEnumerable<RunningAllocation> allocations)
    {
        var capacity = new Dictionary<string, double>();
        foreach (var a in allocations)
        {
            var point = problem.Stages.FirstOrDefault(s => s.Name == a.Stage)?.Variants.FirstOrDefault(v => v.Name == a.Variant)
                ?.Hardware.FirstOrDefault(h => h.Class == a.Hardware)?.At(a.Batch);
            capacity[a.Stage] = capacity.GetValueOrDefault(a.Stage) + a.Replicas * (point?.Throughput ?? 0);
        }
        return capacity;
    }

    /// <summary>How many steps of a history spaced <paramref name="stepSeconds"/> apart the next interval spans.</summary>
    public static int ForecastHorizon(int intervalSeconds, double stepSeconds) => Math.Max(1, (int)Math.Ceiling(intervalSeconds / stepSeconds));
}
