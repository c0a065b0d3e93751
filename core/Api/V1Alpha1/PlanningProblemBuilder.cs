using Adaptive.Core.Planning;

namespace Adaptive.Core.Api.V1Alpha1;

/// <summary>Translates a validated InferencePipeline into the planner's problem for one load.</summary>
public static class PlanningProblemBuilder
{
    public static PipelineProblem Build(InferencePipeline pipeline, double arrivalRate, IReadOnlyList<RunningAllocation> current)
    {
        InferencePipelineValidator.Validate(pipeline);
        if (!(arrivalRate > 0) || !double.IsFinite(arrivalRate))
            throw new PlanningInputException("arrivalRate", $"must be greater than 0, got {arrivalRate}");
        var spec = pipeline.Spec;
        var classes = spec.HardwareClasses.ToDictionary(c => c.Name);
        return new PipelineProblem(
            Name: pipeline.Metadata.Name,
            SloMs: spec.SloMs,
            ArrivalRate: arrivalRate,
            AccuracyMethod: Enum.Parse<AccuracyMethod>(spec.Objective.AccuracyMethod, ignoreCase: true),
            Weights: new ObjectiveWeights(spec.Objective.Weights.Accuracy, spec.Objective.Weights.Cost,
                spec.Objective.Weights.Batch, spec.Objective.Weights.Loading),
            Budget: spec.Budget,
            HardwareLimits: spec.HardwareClasses.Where(c => c.MaxReplicas != null).ToDictionary(c => c.Name, c => c.MaxReplicas!.Value),
            Stages: spec.Stages.Select(s => new StageProblem(
                s.Name,
                s.Mode == "mixed" ? StageMode.Mixed : StageMode.Single,
                s.MinReplicas,
                s.MaxReplicas,
                s.BatchSizes,
                s.Variants.Select(v => new VariantProblem(v.Name, v.Accuracy, v.Profiles.Select(p => new HardwareProfile(
                    p.HardwareClass,
                    p.CostPerReplica ?? classes[p.HardwareClass].CostPerReplica,
                    p.LoadTimeSeconds,
                    p.Batches.Select(b => new ProfilePoint(b.Batch, b.LatencyMs, b.ThroughputRps)).ToList())).ToList())).ToList())
                {
                    MaxQueueDelayMs = s.MaxQueueDelayMs ?? StageSpec.DefaultMaxQueueDelayMs,
                })
                .ToList(),
            Current: current)
        {
            LatencyModel = spec.Adaptation.LatencyModel == "batch-fill" ? LatencyModel.BatchFill : LatencyModel.Queueing,
        };
    }
}
