using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Planning;

namespace Adaptive.Core.Adaptation;

/// <param name="Pipeline">A pipeline with a hardware class in the pool.</param>
/// <param name="PlannedRps">The load its decision plans for (<see cref="PlanningLoad.Rps"/>).</param>
/// <param name="Current">What it runs now.</param>
public sealed record PoolMember(InferencePipeline Pipeline, double PlannedRps, IReadOnlyList<RunningAllocation> Current);

/// <param name="Decision">The member's decision, as <see cref="AdaptationDecider.Decide"/> gives one (its own classes' names).</param>
/// <param name="PoolReplicas">Its replicas on the pool, planned with the others.</param>
/// <param name="AloneObjective">Its objective planned alone with the whole pool: what it asked for.</param>
/// <param name="Objective">Its objective planned with the others.</param>
public sealed record MemberDecision(AdaptationDecision Decision, int PoolReplicas, double? AloneObjective, double? Objective)
{
    /// <summary>It got less than it would alone with the whole pool: others took some of it.</summary>
    public bool ConstrainedByOthers => AloneObjective is { } alone && (Objective is not { } joint || alone > joint + 1e-6 * Math.Max(1, Math.Abs(alone)));
}

/// <summary>The plans of all the pool's pipelines, made as one problem.</summary>
public sealed record JointDecision(string Pool, int Capacity, PlanStatus Status, double SolveMs, IReadOnlyList<MemberDecision> Members);

/// <summary>
/// Plans every pipeline that shares an InferencePool as one problem (the planner's shared hardware limits), so
/// that their replicas on the pool never add up to more than its capacity, and where it is short the replicas go
/// where priority × objective gains most (each pipeline's objective weights are multiplied by its
/// <see cref="ObjectiveSpec.Priority"/>). Each member's class that names the pool is planned as the pool's one
/// class, so pipelines may call their classes what they like. Pure: the operator's pool reconciler and the
/// replay call it alike.
/// </summary>
public static class JointDecider
{
    public static JointDecision Decide(string pool, int capacity, IReadOnlyList<PoolMember> members, TimeSpan timeLimit)
    {
        if (members.Count == 0) throw new PlanningInputException("members", "a pool's joint decision needs at least one pipeline");
        string pooled = PooledClass(pool);
        var limits = new Dictionary<string, int> { [pooled] = capacity };
        var problems = members.Select(m => AdaptationDecider.Problem(m.Pipeline, m.PlannedRps, m.Current)).ToList();
        var joint = problems.Select((p, i) => InPool(p, PoolClassOf(members[i].Pipeline, pool), pooled, members[i].Pipeline.Spec.Objective.Priority)).ToList();
        var planner = new CpSatPlanner(new PlannerOptions(timeLimit));
        var result = planner.Plan(new PlanningProblem(pool, joint, limits));

        var decisions = new List<MemberDecision>(members.Count);
        for (int i = 0; i < members.Count; i++)
        {
            string poolClass = PoolClassOf(members[i].Pipeline, pool);
            var plan = Renamed(result.Pipelines[i].Stages, pooled, poolClass);
            var alone = planner.Plan(new PlanningProblem(pool, [joint[i]], limits));
            double priority = members[i].Pipeline.Spec.Objective.Priority;
            decisions.Add(new MemberDecision(
                AdaptationDecider.Of(problems[i], result with { Pipelines = [result.Pipelines[i] with { Stages = plan }] }, plan, members[i].Current),
                plan.Sum(s => s.Allocations.Where(a => a.Hardware == poolClass).Sum(a => a.Replicas)),
                alone.Pipelines[0].Objective / priority,
                result.Pipelines[i].Objective / priority));
        }
        return new JointDecision(pool, capacity, result.Status, result.SolveMs, decisions);
    }

    /// <summary>The one class name all members' pool classes are planned under; no pipeline class can have it (class names have no '/').</summary>
    static string PooledClass(string pool) => $"pool/{pool}";

    /// <summary>The pipeline's class that names the pool: exactly one.</summary>
    static string PoolClassOf(InferencePipeline pipeline, string pool)
    {
        var classes = pipeline.Spec.HardwareClasses.Where(c => c.Pool == pool).Select(c => c.Name).ToList();
        return classes.Count == 1 ? classes[0]
            : throw new PlanningInputException($"{pipeline.Metadata.Name}: spec.hardwareClasses",
                classes.Count == 0 ? $"no class names the pool '{pool}'" : $"classes {string.Join(", ", classes)} all name the pool '{pool}'; one class per pool");
    }

    /// <summary>The pipeline's problem with its pool class renamed to the pool's, and its objective weighted by priority.</summary>
    static PipelineProblem InPool(PipelineProblem problem, string poolClass, string pooled, double priority)
    {
        string Rename(string hardware) => hardware == poolClass ? pooled : hardware;
        var w = problem.Weights;
        return problem with
        {
            Weights = new ObjectiveWeights(w.Accuracy * priority, w.Cost * priority, w.Batch * priority, w.Loading * priority),
            HardwareLimits = problem.HardwareLimits.ToDictionary(l => Rename(l.Key), l => l.Value),
            Stages = [.. problem.Stages.Select(s => s with
            {
                Variants = [.. s.Variants.Select(v => v with { Hardware = [.. v.Hardware.Select(h => h with { Class = Rename(h.Class) })] })],
            })],
            Current = [.. problem.Current.Select(c => c with { Hardware = Rename(c.Hardware) })],
        };
    }

    static IReadOnlyList<StagePlan> Renamed(IReadOnlyList<StagePlan> plan, string pooled, string poolClass) =>
        [.. plan.Select(s => s with { Allocations = [.. s.Allocations.Select(a => a.Hardware == pooled ? a with { Hardware = poolClass } : a)] })];
}
