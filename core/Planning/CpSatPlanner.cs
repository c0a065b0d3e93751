using System.Diagnostics;
using System.Globalization;
using Google.OrTools.Sat;

namespace Adaptive.Core.Planning;

/// <param name="TimeLimit">
/// Wall-clock time the searches for the best configuration share before the planner answers with the best
/// one found (<see cref="PlanStatus.Feasible"/>).
/// </param>
/// <param name="WorkLimit">
/// CP-SAT's deterministic time allowed one search. The wall-clock time of a unit depends on the model: in
/// long searches, 2.6–15 s of one core of the development machine. A plan that the time limit does not cut
/// gives the same answer on every machine and under any load.
/// </param>
public sealed record PlannerOptions(TimeSpan TimeLimit, double WorkLimit = PlannerOptions.DefaultWorkLimit)
{
    public const double DefaultWorkLimit = 4;

    public static PlannerOptions Default { get; } = new(TimeSpan.FromSeconds(10));
}

/// <summary>
/// Turns a planning problem into a configuration with Google OR-Tools CP-SAT: per stage the variant (or
/// set of variants), hardware class, batch size, replicas and load shares that maximise
/// α·accuracy − β·cost − γ·batch − δ·loading within the latency SLO, the load, the budget and the
/// hardware limits. Infeasible problems get the highest-capacity configuration within the bounds.
/// </summary>
/// <remarks>
/// CP-SAT 9.15's presolve probing misleads it on some models with products (batch fill in mixed stages,
/// products of accuracies), the class of google/or-tools#5274. The property test found a proof of an optimum
/// below the true one (tests/Planning/Cases/presolve-wrong-optimum.json), and problems that the search
/// with probing cannot solve in minutes but the one without solves in milliseconds; the reverse happens too.
/// So such models are searched both ways, in rounds of growing work, and the better answer wins: the plan
/// is optimal once a search proves it and no search has beaten the proof. A linear model has stalled with
/// probing too (linear-probing-stalls.json), but never proven a wrong optimum: it is searched without
/// probing only in the rounds where the search with probing settled nothing. Presolve has also called a
/// feasible model infeasible (presolve-false-infeasible.json): a proof of infeasibility is checked by a
/// search without presolve.
/// </remarks>
public sealed class CpSatPlanner(PlannerOptions? options = null)
{
    readonly PlannerOptions options = options ?? PlannerOptions.Default;

    enum Presolve { Full, WithoutProbing, None }

    /// <summary>A finished search: its status and the solver holding what it found.</summary>
    sealed record Search(CpSolverStatus Status, CpSolver Solver) : IDisposable
    {
        public bool Found => Status is CpSolverStatus.Optimal or CpSolverStatus.Feasible;

        public void Dispose() => Solver.Dispose();
    }

    /// <summary>The first round's share of the work limit; each round doubles it.</summary>
    const double FirstRoundShare = 1.0 / 16;

    /// <summary>Deterministic time for checking a proof of infeasibility (those seen took under 0.001).</summary>
    const double InfeasibilityCheckWork = 0.4;

    public PlanResult Plan(PlanningProblem problem)
    {
        var clock = Stopwatch.StartNew();
        var model = new PlanningModel(problem, PlanningGoal.Objective);
        var searches = new List<Search>();
        try
        {
            var (best, planStatus) = model.TriviallyInfeasible ? (null, PlanStatus.Infeasible) : FindBest(model, clock, searches);
            // Without a configuration (proven infeasible, or none found in time) nothing meets the
            // constraints that we know of, so answer with the fallback.
            var pipelines = best != null
                ? problem.Pipelines.Select((p, i) => ReadPlan(p, model.Pipelines[i], best.Solver)).ToList()
                : Fallback(problem);
            double? total = best != null ? pipelines.Sum(p => p.Objective!.Value) : null;
            return new PlanResult(planStatus, total, clock.Elapsed.TotalMilliseconds, pipelines);
        }
        finally
        {
            foreach (var search in searches) search.Dispose();
        }
    }

    /// <summary>The best configuration the searches find, and whether it is proven optimal; null when none is found.</summary>
    (Search?, PlanStatus) FindBest(PlanningModel model, Stopwatch clock, List<Search> searches)
    {
        TimeSpan Left() => options.TimeLimit - clock.Elapsed;
        // A model with products is always searched both ways, with presolve and without its probing (probing has proven
        // wrong optima there: presolve-wrong-optimum.json). A linear model with a mixed stage is searched without presolve
        // first (presolve without probing has proven a wrong optimum on one: presolve-wrong-optimum-linear.json), and with
        // it only when that settles nothing; another linear one without probing only when the search with it settled nothing.
        bool bothWays = HasProducts(model);
        var (first, second) = !bothWays && HasMixedStage(model) ? (Presolve.None, Presolve.Full) : (Presolve.Full, Presolve.WithoutProbing);
        bool Settled()
        {
            var (found, status) = Best(searches);
            return status == PlanStatus.Optimal || ClaimedInfeasible(found, searches);
        }
        for (double work = options.WorkLimit * FirstRoundShare; ; work = Math.Min(2 * work, options.WorkLimit))
        {
            searches.Add(Solve(model, first, Left(), work));
            if (bothWays || !Settled()) searches.Add(Solve(model, second, Left(), work));
            if (Settled() || work >= options.WorkLimit || Left() <= TimeSpan.Zero) break;
        }
        var (best, planStatus) = Best(searches);
        if (ClaimedInfeasible(best, searches))
        {
            // When the check settles nothing, the proof of infeasibility stands.
            searches.Add(Solve(model, Presolve.None, Left(), Math.Min(InfeasibilityCheckWork, options.WorkLimit)));
            (best, planStatus) = Best(searches);
        }
        return (best, planStatus);
    }

    /// <summary>
    /// The search with the best configuration (the earliest among equals). It is optimal when a search proved
    /// that objective: a proof of a lower one is wrong, since a search beat it.
    /// </summary>
    static (Search?, PlanStatus) Best(List<Search> searches)
    {
        var found = searches.Where(s => s.Found).ToList();
        if (found.Count == 0) return (null, PlanStatus.Infeasible);
        double objective = found.Max(s => s.Solver.ObjectiveValue);
        var best = found.First(s => s.Solver.ObjectiveValue == objective);
        bool proven = found.Any(s => s.Status == CpSolverStatus.Optimal && s.Solver.ObjectiveValue == objective);
        return (best, proven ? PlanStatus.Optimal : PlanStatus.Feasible);
    }

    /// <summary>No search found a configuration and one of them says there is none.</summary>
    static bool ClaimedInfeasible(Search? best, List<Search> searches) =>
        best == null && searches.Any(s => s.Status == CpSolverStatus.Infeasible);

    /// <summary>Whether a stage shares its load among variants: the models where presolve itself has misled the search.</summary>
    static bool HasMixedStage(PlanningModel model) => model.Pipelines.Any(p => p.Any(s => s.LatencyBudgetNs is not null));

    /// <summary>Whether the model multiplies variables: the models where presolve probing has misled the search.</summary>
    static bool HasProducts(PlanningModel model) =>
        model.Model.Model.Constraints.Any(c => c.ConstraintCase == ConstraintProto.ConstraintOneofCase.IntProd);

    static Search Solve(PlanningModel model, Presolve presolve, TimeSpan timeLimit, double workLimit)
    {
        var solver = new CpSolver
        {
            StringParameters = string.Create(CultureInfo.InvariantCulture,
                // One worker: the search is sequential, so the same problem gets the same answer.
                // Linearization level 2 puts the products (batch fill, accuracy chain) into the LP relaxation:
                // with it, products over a batching mixed stage are proven optimal in ~0.1 s instead of
                // running to the limit without finding the optimum.
                $"num_workers:1 random_seed:0 linearization_level:2 " +
                $"cp_model_presolve:{(presolve == Presolve.None ? "false" : "true")} " +
                $"cp_model_probing_level:{(presolve == Presolve.WithoutProbing ? 0 : 2)} " +
                $"max_deterministic_time:{workLimit} " +
                $"max_time_in_seconds:{Math.Max(timeLimit.TotalSeconds, 0.001)}"),
        };
        var status = solver.Solve(model.Model);
        if (status == CpSolverStatus.ModelInvalid)
        {
            solver.Dispose();
            throw new InvalidOperationException($"the planner built an invalid CP-SAT model: {model.Model.Validate()}");
        }
        return new Search(status, solver);
    }

    static PipelinePlan ReadPlan(PipelineProblem pipeline, IReadOnlyList<StageVariables> stages, CpSolver solver)
    {
        var plans = new List<StagePlan>();
        foreach (var stage in stages)
        {
            var chosen = stage.Options.Where(o => solver.BooleanValue(o.Active)).ToList();
            var replicas = chosen.Select(o => (int)solver.Value(o.Replicas)).ToList();
            var allocations = stage.LatencyBudgetNs is { } budget
                ? ShareSplitter.Split(pipeline, stage.Stage, stage.BudgetLevels?.Single(l => solver.BooleanValue(l.Chosen)).BudgetMs ?? (double)solver.Value(budget) / FixedPoint.NsPerMs,
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
        using var search = model.TriviallyInfeasible ? null : Solve(model, Presolve.Full, options.TimeLimit, options.WorkLimit);
        bool found = search?.Found == true;
        return problem.Pipelines.Select((pipeline, p) => new PipelinePlan(pipeline.Name, null,
            model.Pipelines[p].Select(stage => new StagePlan(stage.Stage.Name, found
                ? SplitByCapacity(pipeline.ArrivalRate, stage.Options.Where(o => search!.Solver.BooleanValue(o.Active))
                    .Select(o => (o, (int)search!.Solver.Value(o.Replicas))).ToList())
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
