using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Planning;

namespace Adaptive.Core.Adaptation;

/// <summary>
/// One adaptation decision for a predicted load. <paramref name="Plan"/> is what should run: the planner's
/// answer, or <c>null</c> when the scale-down cooldown holds the running configuration.
/// </summary>
public sealed record AdaptationDecision(PipelineProblem Problem, PlanResult Result, IReadOnlyList<StagePlan>? Plan, int PlannedReplicas, int RunningReplicas)
{
    public bool HeldByCooldown => Plan is null;
    public bool ScalesUp => Plan is not null && PlannedReplicas > RunningReplicas;
}

/// <summary>
/// The planning half of the adaptation loop, shared by the operator and <c>adaptive replay</c> so that the
/// replay runs what the operator runs: plan the pipeline for the predicted load (never below
/// <see cref="MinimumLoadRps"/>, so that a pipeline always serves) divided by the target utilization, then
/// hold off scaling down within the cooldown after the last scale-up, against flapping.
/// </summary>
public static class AdaptationDecider
{
    public const double MinimumLoadRps = 1;

    /// <param name="lastScaleUp">When replicas last grew; <c>null</c> when the cooldown does not apply (nothing runs yet, or the spec changed).</param>
    public static AdaptationDecision Decide(InferencePipeline pipeline, double predictedRps, IReadOnlyList<RunningAllocation> current,
        DateTimeOffset? lastScaleUp, DateTimeOffset now)
    {
        var adaptation = pipeline.Spec.Adaptation;
        var problem = PlanningProblemBuilder.Build(pipeline, Math.Max(predictedRps, MinimumLoadRps) / adaptation.TargetUtilization, current);
        var result = new CpSatPlanner(new PlannerOptions(TimeSpan.FromSeconds(adaptation.PlannerTimeLimitSeconds))).Plan(PlanningProblem.Single(problem));
        var plan = result.Pipelines[0].Stages;
        int planned = plan.Sum(s => s.Allocations.Sum(a => a.Replicas));
        int running = current.Sum(a => a.Replicas);
        bool held = planned < running && lastScaleUp is { } grew && now - grew < TimeSpan.FromSeconds(adaptation.ScaleDownCooldownSeconds);
        return new AdaptationDecision(problem, result, held ? null : plan, planned, running);
    }

    /// <summary>How many steps of a history spaced <paramref name="stepSeconds"/> apart the next interval spans.</summary>
    public static int ForecastHorizon(int intervalSeconds, double stepSeconds) => Math.Max(1, (int)Math.Ceiling(intervalSeconds / stepSeconds));
}
