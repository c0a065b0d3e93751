using System.Diagnostics;
using System.Globalization;
using Google.OrTools.Sat;

namespace Adaptive.Core.Planning;

/// <param name="TimeLimit">
/// Wall-clock search time before answering with the best configuration found (<see cref="PlanStatus.Feasible"/>).
/// A search that finishes within it (optimal or infeasible) gives the same answer on every run.
/// </param>
public sealed record PlannerOptions(TimeSpan TimeLimit)
{
    public static PlannerOptions Default { get; } = new(TimeSpan.FromSeconds(10));
}

/// <summary>
/// Turns a planning problem into a configuration with Google OR-Tools CP-SAT: per stage the variant (or
/// set of variants), hardware class, batch size, replicas and load shares that maximise
/// α·accuracy − β·cost − γ·batch − δ·loading within the latency SLO, the load, the budget and the
/// hardware limits. Infeasible problems get the highest-capacity configuration within the bounds.
/// </summary>
public sealed class CpSatPlanner(PlannerOptions? options = null)
{
    readonly PlannerOptions options = options ?? PlannerOptions.Default;

    public PlanResult Plan(PlanningProblem problem)
    {
        var clock = Stopwatch.StartNew();
        var model = new PlanningModel(problem, PlanningGoal.Objective);
        var (status, solver) = model.TriviallyInfeasible ? (CpSolverStatus.Infeasible, null) : Solve(model);
        if (status == CpSolverStatus.Infeasible && solver != null)
        {
            // CP-SAT's presolve has called a feasible model of ours infeasible (tests/Planning/Cases/
            // presolve-false-infeasible.json: a mixed stage on two classes under a product of accuracies).
            // A proof of infeasibility is therefore checked by a short search without presolve; when that
            // search settles nothing, the proof stands.
            solver.Dispose();
            (status, solver) = Solve(model, presolve: false, limit: InfeasibilityCheckLimit < options.TimeLimit ? InfeasibilityCheckLimit : options.TimeLimit);
            if (status == CpSolverStatus.Unknown) status = CpSolverStatus.Infeasible;
        }
        List<PipelinePlan> pipelines;
        PlanStatus planStatus;
        if (solver != null && status is CpSolverStatus.Optimal or CpSolverStatus.Feasible)
        {
            planStatus = status == CpSolverStatus.Optimal ? PlanStatus.Optimal : PlanStatus.Feasible;
            pipelines = problem.Pipelines.Select((p, i) => ReadPlan(p, model.Pipelines[i], solver)).ToList();
        }
        else
        {
            // Proven infeasible, or no configuration found in time: either way nothing meets the constraints
            // that we know of, so answer with the fallback.
            planStatus = PlanStatus.Infeasible;
            pipelines = Fallback(problem);
        }
        solver?.Dispose();
        double? total = planStatus == PlanStatus.Infeasible ? null : pipelines.Sum(p => p.Objective!.Value);
        return new PlanResult(planStatus, total, clock.Elapsed.TotalMilliseconds, pipelines);
    }

    static readonly TimeSpan InfeasibilityCheckLimit = TimeSpan.FromSeconds(1);

    (CpSolverStatus, CpSolver) Solve(PlanningModel model, bool presolve = true, TimeSpan? limit = null)
    {
        var solver = new CpSolver
        {
            StringParameters = string.Create(CultureInfo.InvariantCulture,
                // One worker: the search is sequential, so the same problem gets the same answer.
                // Linearization level 2 puts the products (batch fill, accuracy chain) into the LP relaxation:
                // with it, products over a batching mixed stage are proven optimal in ~0.1 s instead of
                // running to the limit without finding the optimum.
                $"num_workers:1 random_seed:0 linearization_level:2 cp_model_presolve:{(presolve ? "true" : "false")} " +
                $"max_time_in_seconds:{(limit ?? options.TimeLimit).TotalSeconds}"),
        };
        var status = solver.Solve(model.Model);
        if (status == CpSolverStatus.ModelInvalid)
            throw new InvalidOperationException($"the planner built an invalid CP-SAT model: {model.Model.Validate()}");
        return (status, solver);
    }

    static PipelinePlan ReadPlan(PipelineProblem pipeline, IReadOnlyList<StageVariables> stages, CpSolver solver)
    {
        var plans = new List<StagePlan>();
        foreach (var stage in stages)
        {
            var chosen = stage.Options.Where(o => solver.BooleanValue(o.Active)).ToList();
            var replicas = chosen.Select(o => (int)solver.Value(o.Replicas)).ToList();
            var allocations = stage.LatencyBudgetNs is { } budget
                ? ShareSplitter.Split(pipeline.ArrivalRate, stage.Stage.MinReplicas, (double)solver.Value(budget) / FixedPoint.NsPerMs,
                    chosen.Select((o, i) => new ShareSplitter.Candidate(o.Variant, o.Hardware.Class, o.Point, replicas[i],
                        (double)solver.Value(o.Share!) / FixedPoint.ShareUnitsPerRps)).ToList())
                : chosen.Select((o, i) => new Allocation(o.Variant.Name, o.Hardware.Class, replicas[i], o.Point.Batch, pipeline.ArrivalRate)).ToList();
            plans.Add(new StagePlan(stage.Stage.Name, allocations));
        }
        return new PipelinePlan(pipeline.Name, PlanEvaluator.Evaluate(pipeline, plans).Objective, plans);
    }

    /// <summary>The highest-capacity configuration within the replica bounds and hardware limits.</summary>
    List<PipelinePlan> Fallback(PlanningProblem problem)
    {
        var model = new PlanningModel(problem, PlanningGoal.Capacity);
        var (status, solver) = model.TriviallyInfeasible ? (CpSolverStatus.Infeasible, null) : Solve(model);
        using var _ = solver;
        bool found = solver != null && status is CpSolverStatus.Optimal or CpSolverStatus.Feasible;
        return problem.Pipelines.Select((pipeline, p) => new PipelinePlan(pipeline.Name, null,
            model.Pipelines[p].Select(stage => new StagePlan(stage.Stage.Name, found
                ? SplitByCapacity(pipeline.ArrivalRate, stage.Options.Where(o => solver!.BooleanValue(o.Active))
                    .Select(o => (o, (int)solver!.Value(o.Replicas))).ToList())
                : [])).ToList())).ToList();
    }

    /// <summary>Shares in proportion to capacity; the last takes what rounding leaves, so they add up to the load.</summary>
    static List<Allocation> SplitByCapacity(double load, List<(StageOption Option, int Replicas)> chosen)
    {
        double capacity = chosen.Sum(c => c.Replicas * c.Option.Point.Throughput);
        var allocations = new List<Allocation>();
        double given = 0;
        foreach (var (option, replicas) in chosen)
        {
            double share = allocations.Count == chosen.Count - 1 ? load - given : load * replicas * option.Point.Throughput / capacity;
            given += share;
            allocations.Add(new Allocation(option.Variant.Name, option.Hardware.Class, replicas, option.Point.Batch, share));
        }
        return allocations;
    }
}
