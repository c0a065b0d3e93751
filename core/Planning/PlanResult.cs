namespace Adaptive.Core.Planning;

public enum PlanStatus
{
    /// <summary>Proven optimal.</summary>
    Optimal,
    /// <summary>Meets every constraint; the time limit cut the search before a proof.</summary>
    Feasible,
    /// <summary>No configuration meets the constraints; the allocations are the fallback.</summary>
    Infeasible,
}

public sealed record PlanResult(
    PlanStatus Status,
    double? Objective,
    double SolveMs,
    IReadOnlyList<PipelinePlan> Pipelines);

public sealed record PipelinePlan(string Name, double? Objective, IReadOnlyList<StagePlan> Stages);

public sealed record StagePlan(string Name, IReadOnlyList<Allocation> Allocations);

/// <summary><paramref name="Share"/>: requests per second routed to this allocation.</summary>
public sealed record Allocation(string Variant, string Hardware, int Replicas, int Batch, double Share);
