using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Planning;

namespace Adaptive.Core.Adaptation;

/// <summary>
/// One adaptation decision for a planned load: the planner's answer, and whether it adds capacity (some stage
/// of the plan sustains more than it runs now).
/// </summary>
public sealed record AdaptationDecision(PipelineProblem Problem, PlanResult Result, IReadOnlyList<StagePlan> Plan, bool ScalesUp);

/// <summary>
/// The planning half of the adaptation loop, shared by the operator and <c>adaptive replay</c> so that the
/// replay runs what the operator runs: plan the pipeline for the load (<see cref="PlanningLoad"/>, never
/// below <see cref="MinimumLoadRps"/>, so that a pipeline always serves) divided by the target utilization.
/// Capacity is what a stage's replicas sustain at their profiled throughput, so that a switch to a faster
/// variant with fewer replicas is not mistaken for a scale-down.
/// </summary>
public static class AdaptationDecider
{
    public const double MinimumLoadRps = 1;

    /// <param name="excessShare">What a surge's rate outruns what runs by (<see cref="SurgeRule.ExcessShare"/>): the plan weighs load time (<see cref="SurgeRule.WeighLoadTime"/>).</param>
    public static AdaptationDecision Decide(InferencePipeline pipeline, double plannedRps, IReadOnlyList<RunningAllocation> current, double excessShare = 0)
    {
        var problem = Problem(pipeline, plannedRps, current, excessShare);
        var result = new CpSatPlanner(new PlannerOptions(TimeSpan.FromSeconds(pipeline.Spec.Adaptation.PlannerTimeLimitSeconds))).Plan(PlanningProblem.Single(problem));
        return Of(problem, result, result.Pipelines[0].Stages, current);
    }

    /// <summary>The planner's problem for the pipeline at <paramref name="plannedRps"/> (at least the minimum load, over the target utilization).</summary>
    public static PipelineProblem Problem(InferencePipeline pipeline, double plannedRps, IReadOnlyList<RunningAllocation> current, double excessShare = 0) =>
        SurgeRule.WeighLoadTime(PlanningProblemBuilder.Build(pipeline, SizedForRps(plannedRps, pipeline.Spec.Adaptation.TargetUtilization), current),
            excessShare, pipeline.Spec.Adaptation.IntervalSeconds);

    /// <summary>The rate replicas are sized for when a plan is made for <paramref name="plannedRps"/>: at least the minimum load, over the target utilization.</summary>
    public static double SizedForRps(double plannedRps, double targetUtilization) => Math.Max(plannedRps, MinimumLoadRps) / targetUtilization;

    /// <summary>The decision to run <paramref name="plan"/> in place of <paramref name="current"/>.</summary>
    public static AdaptationDecision Of(PipelineProblem problem, PlanResult result, IReadOnlyList<StagePlan> plan, IReadOnlyList<RunningAllocation> current)
    {
        var planned = Capacity(problem, plan.SelectMany(s => s.Allocations.Select(a => new RunningAllocation(s.Name, a.Variant, a.Hardware, a.Replicas, a.Batch))));
        var running = Capacity(problem, current);
        bool adds = problem.Stages.Any(s => planned.GetValueOrDefault(s.Name) > running.GetValueOrDefault(s.Name) * (1 + 1e-9));
        return new AdaptationDecision(problem, result, plan, adds);
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
