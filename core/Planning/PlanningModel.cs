using Google.OrTools.Sat;

namespace Adaptive.Core.Planning;

/// <summary>What the CP-SAT model is asked to find.</summary>
enum PlanningGoal
{
    /// <summary>The best configuration by the objective that meets the SLO, throughput, budget and limits.</summary>
    Objective,

    /// <summary>
    /// The infeasible fallback: the configuration with the most capacity relative to the load that fits the
    /// replica bounds and hardware limits, ignoring the SLO and the budget.
    /// </summary>
    Capacity,
}

/// <summary>One (variant, hardware, batch) a stage may run, with its decision variables.</summary>
sealed class StageOption
{
    public required VariantProblem Variant { get; init; }
    public required HardwareProfile Hardware { get; init; }
    public required ProfilePoint Point { get; init; }
    public required BoolVar Active { get; init; }

    /// <summary>Replicas: a constant times <see cref="Active"/> where the load fixes them, else a variable.</summary>
    public required LinearExpr Replicas { get; init; }

    /// <summary>Requests per second routed here, in share units; only in mixed stages of the objective goal.</summary>
    public IntVar? Share { get; init; }

    /// <summary>A single stage's latency with this option, fixed by the choice; null in mixed stages.</summary>
    public double? LatencyMs { get; init; }
}

/// <summary>An option of a stage before it gets variables; in single stages of the objective goal, with its replicas and the latency they give.</summary>
sealed record Candidate(VariantProblem Variant, HardwareProfile Hardware, ProfilePoint Point, int FixedReplicas, double LatencyMs);

/// <summary>One latency budget a mixed stage may take in the queueing model, chosen by <paramref name="Chosen"/>.</summary>
sealed record BudgetLevel(BoolVar Chosen, double BudgetMs);

sealed class StageVariables(StageProblem stage, List<StageOption> options, IntVar? latencyBudgetNs, IReadOnlyList<BudgetLevel>? budgetLevels)
{
    public StageProblem Stage { get; } = stage;
    public List<StageOption> Options { get; } = options;

    /// <summary>The latency the stage may use, in ns; only mixed stages of the objective goal have one.</summary>
    public IntVar? LatencyBudgetNs { get; } = latencyBudgetNs;

    /// <summary>With queueing, the budgets a mixed stage chooses from (its shares are bounded by the capacity at each); null otherwise.</summary>
    public IReadOnlyList<BudgetLevel>? BudgetLevels { get; } = budgetLevels;
}

/// <summary>
/// The integer program for one planning problem, in CP-SAT. Single stages have their replicas fixed by the
/// load (the fewest that sustain it), so they are pure choices; mixed stages have a replica count and a
/// share per option. The objective is scaled to integers by <see cref="objectiveScale"/>.
/// </summary>
sealed class PlanningModel
{
    readonly CpModel model = new();
    readonly PlanningGoal goal;
    readonly List<(LinearExpr Expr, double Coefficient)> objectiveTerms = [];
    readonly double objectiveScale;

    /// <summary>Classes with a replica limit anywhere in the problem; options on them differ even at equal cost.</summary>
    readonly HashSet<string> limitedClasses;

    public IReadOnlyList<IReadOnlyList<StageVariables>> Pipelines { get; }

    /// <summary>Whether some stage has no option at all; then there is nothing for CP-SAT to search.</summary>
    public bool TriviallyInfeasible { get; }

    public PlanningModel(PlanningProblem problem, PlanningGoal goal)
    {
        this.goal = goal;
        objectiveScale = ObjectiveScale(problem);
        limitedClasses = problem.SharedHardwareLimits.Keys.Concat(problem.Pipelines.SelectMany(p => p.HardwareLimits.Keys)).ToHashSet();
        var pipelines = new List<IReadOnlyList<StageVariables>>();
        foreach (var pipeline in problem.Pipelines)
        {
            var candidates = pipeline.Stages.Select(s => Candidates(pipeline, s)).ToList();
            // Bounds from one pipeline's single stages hold only where no other pipeline shares its limits.
            var incumbent = goal == PlanningGoal.Objective && problem.Pipelines.Count == 1
                ? SingleStageBounds.Prune(pipeline, problem.SharedHardwareLimits, candidates)
                : null;
            var stages = pipeline.Stages.Select((s, i) => AddStage(pipeline, s, candidates[i])).ToList();
            if (incumbent is not null)
                for (int i = 0; i < stages.Count; i++) model.AddHint(stages[i].Options[incumbent[i]].Active, 1);
            pipelines.Add(stages);
            if (stages.Any(s => s.Options.Count == 0)) TriviallyInfeasible = true;
        }
        Pipelines = pipelines;
        if (TriviallyInfeasible) return;

        for (int p = 0; p < problem.Pipelines.Count; p++)
        {
            var pipeline = problem.Pipelines[p];
            AddHardwareLimits(pipeline.HardwareLimits, pipelines[p]);
            if (goal == PlanningGoal.Objective)
            {
                AddLatencyConstraint(pipeline, pipelines[p]);
                AddBudget(pipeline, pipelines[p]);
                AddObjectiveTerms(pipeline, pipelines[p]);
            }
        }
        AddHardwareLimits(problem.SharedHardwareLimits, pipelines.SelectMany(p => p).ToList());
        if (goal == PlanningGoal.Capacity) MaximiseWorstCapacityRatio(problem);
        else model.Maximize(ScaledObjective());
    }

    public CpModel Model => model;

    /// <summary>
    /// How many budgets a mixed stage of a pipeline with several stages chooses from in the queueing model:
    /// SLO·k/10. Twenty levels gave the same plans on the video sample at twice the solve time (1.4 s against
    /// 3 s for two mixed stages), eight lost accuracy.
    /// </summary>
    const int BudgetLevelCount = 10;

    /// <summary>What a stage may run: with fixed replicas (single stages of the objective goal), each useful replica count, without the dominated.</summary>
    List<Candidate> Candidates(PipelineProblem pipeline, StageProblem stage)
    {
        bool fixedReplicas = stage.Mode == StageMode.Single && goal == PlanningGoal.Objective;
        bool queueing = pipeline.LatencyModel == LatencyModel.Queueing;
        long sloNs = FixedPoint.SloNs(pipeline.SloMs);
        var candidates = new List<Candidate>();
        foreach (var variant in stage.Variants)
        foreach (var hardware in variant.Hardware)
        foreach (int batch in stage.BatchSizes)
        {
            if (hardware.At(batch) is not { } point) continue;
            if (fixedReplicas)
            {
                foreach (var (replicas, latencyMs) in SingleStageChoices(pipeline, stage, point))
                    if (FixedPoint.LatencyNs(latencyMs) <= sloNs) candidates.Add(new Candidate(variant, hardware, point, replicas, latencyMs));
                continue;
            }
            // The fastest a mixed stage's option can be: with batch fill, taking the whole load (batches fill
            // fastest); with queueing, a vanishing share (no wait). One too slow even then never fits.
            double fastest = AllocationLatency.Ms(pipeline, stage, point, stage.MaxReplicas, queueing ? 0 : pipeline.ArrivalRate);
            if (goal == PlanningGoal.Objective && FixedPoint.LatencyNs(fastest) > sloNs) continue;
            candidates.Add(new Candidate(variant, hardware, point, 0, fastest));
        }
        return fixedReplicas ? WithoutDominated(pipeline, stage, candidates) : candidates;
    }

    StageVariables AddStage(PipelineProblem pipeline, StageProblem stage, List<Candidate> candidates)
    {
        bool shared = stage.Mode == StageMode.Mixed && goal == PlanningGoal.Objective;
        bool fixedReplicas = stage.Mode == StageMode.Single && goal == PlanningGoal.Objective;
        bool queueing = pipeline.LatencyModel == LatencyModel.Queueing;
        long sloNs = FixedPoint.SloNs(pipeline.SloMs);
        long loadUnits = FixedPoint.ShareUnits(pipeline.ArrivalRate);
        var levels = shared && queueing
            ? (pipeline.Stages.Count == 1 ? [pipeline.SloMs] : Enumerable.Range(1, BudgetLevelCount).Select(k => pipeline.SloMs * k / BudgetLevelCount))
                .Select(budget => new BudgetLevel(model.NewBoolVar($"{stage.Name}/budget-{budget:G6}ms"), budget)).ToList()
            : null;

        var options = new List<StageOption>();
        foreach (var (variant, hardware, point, needed, latencyMs) in candidates)
        {
            var active = model.NewBoolVar($"{stage.Name}/{variant.Name}/{hardware.Class}/b{point.Batch}");
            LinearExpr replicas;
            IntVar? share = null;
            if (fixedReplicas) replicas = LinearExpr.Term(active, needed);
            else
            {
                int most = levels is null ? stage.MaxReplicas : MostUsefulReplicas(pipeline, stage, point, levels, loadUnits);
                var count = model.NewIntVar(0, most, $"{active.Name()}/replicas");
                model.Add(count >= active);
                model.Add(count <= most * active);
                replicas = count;
                if (shared)
                {
                    share = model.NewIntVar(0, loadUnits, $"{active.Name()}/share");
                    model.Add(share >= active);
                    model.Add(share <= loadUnits * active);
                    model.Add(share <= FixedPoint.ThroughputUnits(point.Throughput) * count);
                    if (levels is not null) AddQueueingCapacity(pipeline, stage, point, active, count, share, levels, loadUnits, most);
                }
            }
            options.Add(new StageOption
            {
                Variant = variant, Hardware = hardware, Point = point, Active = active, Replicas = replicas, Share = share,
                LatencyMs = fixedReplicas ? latencyMs : null,
            });
        }

        var actives = options.Select(o => o.Active).ToList();
        if (stage.Mode == StageMode.Single) model.AddExactlyOne(actives);
        else
        {
            model.AddAtLeastOne(actives);
            foreach (var sameModel in options.GroupBy(o => (o.Variant, o.Hardware)))
                model.AddAtMostOne(sameModel.Select(o => o.Active));
        }
        var total = LinearExpr.Sum(options.Select(o => o.Replicas));
        model.Add(total >= stage.MinReplicas);
        model.Add(total <= stage.MaxReplicas);
        if (shared) model.Add(LinearExpr.Sum(options.Select(o => o.Share!)) == loadUnits);

        var latencyBudget = shared ? model.NewIntVar(0, sloNs, $"{stage.Name}/latency") : null;
        if (levels is not null)
        {
            model.AddExactlyOne(levels.Select(l => l.Chosen));
            model.Add(latencyBudget! == LinearExpr.WeightedSum(levels.Select(l => l.Chosen), levels.Select(l => Math.Min(sloNs, FixedPoint.LatencyNs(l.BudgetMs)))));
        }
        return new StageVariables(stage, options, latencyBudget, levels);
    }

    /// <summary>
    /// With queueing, a mixed stage's option takes at most what its n replicas sustain within the stage's
    /// budget: one flag per replica count (the count is Σ n·flag), and per budget level the share is at most
    /// Σ capacity(n, level)·flag, unless another level is chosen. Linear, so the LP relaxation sees it whole.
    /// </summary>
    void AddQueueingCapacity(PipelineProblem pipeline, StageProblem stage, ProfilePoint point, BoolVar active, IntVar count, IntVar share,
        IReadOnlyList<BudgetLevel> levels, long loadUnits, int most)
    {
        var exactly = Enumerable.Range(1, most).Select(n => model.NewBoolVar($"{active.Name()}/replicas={n}")).ToList();
        model.Add(LinearExpr.Sum(exactly) == active);
        model.Add(count == LinearExpr.WeightedSum(exactly, Enumerable.Range(1, most).Select(n => (long)n)));
        foreach (var level in levels)
            model.Add(share <= LinearExpr.WeightedSum(exactly, Enumerable.Range(1, most).Select(n => Capacity(pipeline, stage, point, n, level, loadUnits)))
                + loadUnits - loadUnits * level.Chosen);
    }

    /// <summary>What n replicas of an option sustain within a budget level, in share units, at most the whole load.</summary>
    static long Capacity(PipelineProblem pipeline, StageProblem stage, ProfilePoint point, int n, BudgetLevel level, long loadUnits) =>
        Math.Min(loadUnits, FixedPoint.ThroughputUnits(AllocationLatency.CapacityRps(pipeline, stage, point, n, level.BudgetMs)));

    /// <summary>
    /// The most replicas of a mixed stage's option worth modelling: as many as carry the whole load within every budget level
    /// (or the stage's minimum). More would carry nothing more, and cost more, so the optimum never has them; the model, with
    /// one flag per count, gets smaller.
    /// </summary>
    static int MostUsefulReplicas(PipelineProblem pipeline, StageProblem stage, ProfilePoint point, IReadOnlyList<BudgetLevel> levels, long loadUnits)
    {
        int most = Math.Min(stage.MaxReplicas, Math.Max(1, stage.MinReplicas));
        while (most < stage.MaxReplicas && levels.Any(level => Capacity(pipeline, stage, point, most, level, loadUnits) < loadUnits)) most++;
        return most;
    }

    /// <summary>
    /// A single stage's (replicas, latency) with one (variant, hardware, batch) at the pipeline's load: with
    /// batch fill, the fewest replicas that sustain it; with queueing, from those on, every count that still
    /// shortens the p99 (more replicas cost more for the same latency once no request waits).
    /// </summary>
    static IEnumerable<(int Replicas, double LatencyMs)> SingleStageChoices(PipelineProblem pipeline, StageProblem stage, ProfilePoint point)
    {
        double rate = pipeline.ArrivalRate;
        int fewest = Math.Max(stage.MinReplicas, FixedPoint.ReplicasFor(rate, point.Throughput));
        if (pipeline.LatencyModel == LatencyModel.BatchFill)
        {
            if (fewest <= stage.MaxReplicas) yield return (fewest, AllocationLatency.Ms(pipeline, stage, point, fewest, rate));
            yield break;
        }
        double previous = double.PositiveInfinity;
        for (int n = fewest; n <= stage.MaxReplicas; n++)
        {
            double latency = AllocationLatency.Ms(pipeline, stage, point, n, rate);
            // The fewest replicas are saturated when the load is exactly their throughput; one more is not.
            if (double.IsPositiveInfinity(latency)) continue;
            if (!(latency < previous)) yield break;
            yield return (n, latency);
            previous = latency;
        }
    }

    /// <summary>
    /// A single stage's option is dropped when another is at least as good in everything the objective and
    /// the constraints see and better in something, or equal and listed first. The optimum is unchanged; the
    /// model gets smaller. What they see: the option's own part of the objective (accuracy, where it adds up
    /// across stages, less cost and batch), its latency, and apart where they do not add up: accuracy under a
    /// product, cost under a budget, model loading (the term is a maximum), replicas on a limited class.
    /// Options are taken by latency, each checked against those kept, so the work grows with the options
    /// times the frontier, not with the options squared (queueing gives every (variant, hardware, batch)
    /// several replica counts).
    /// </summary>
    List<Candidate> WithoutDominated(PipelineProblem pipeline, StageProblem stage, List<Candidate> candidates)
    {
        var w = pipeline.Weights;
        bool additiveAccuracy = pipeline.AccuracyMethod != AccuracyMethod.Product;
        double accuracyWeight = pipeline.AccuracyMethod == AccuracyMethod.Average ? w.Accuracy / pipeline.Stages.Count : w.Accuracy;
        bool loading = w.Loading > 0 && pipeline.Current.Count > 0;
        var keys = candidates.Select(c =>
        {
            double cost = c.FixedReplicas * c.Hardware.CostPerReplica;
            return new DominanceKey(
                Objective: (additiveAccuracy ? accuracyWeight * c.Variant.Accuracy : 0) - (pipeline.Budget is null ? w.Cost * cost : 0) - w.Batch * c.Point.Batch,
                Latency: c.LatencyMs,
                Accuracy: additiveAccuracy ? 0 : c.Variant.Accuracy,
                Cost: pipeline.Budget is null ? 0 : cost,
                Loading: loading && pipeline.LoadsModel(stage.Name, c.Variant.Name, c.Hardware.Class, c.Point.Batch, c.FixedReplicas) ? c.Hardware.LoadTimeS : 0,
                // Replicas count only on a class with a limit (their cost is in the objective or the budget).
                LimitedClass: limitedClasses.Contains(c.Hardware.Class) ? c.Hardware.Class : null,
                Replicas: c.FixedReplicas);
        }).ToArray();

        // A dominating option is no slower, so it comes first in this order, or ties on latency: then the
        // one kept first is dropped again if the later one dominates it.
        var order = Enumerable.Range(0, candidates.Count).ToArray();
        Array.Sort(order, (i, j) => keys[i].Latency != keys[j].Latency ? keys[i].Latency.CompareTo(keys[j].Latency)
            : keys[i].Objective != keys[j].Objective ? keys[j].Objective.CompareTo(keys[i].Objective) : i.CompareTo(j));
        var kept = new List<int>();
        foreach (int b in order)
        {
            bool dominated = false;
            foreach (int a in kept)
                if (keys[a].Dominates(keys[b], a < b)) { dominated = true; break; }
            if (dominated) continue;
            kept.RemoveAll(a => keys[b].Dominates(keys[a], b < a));
            kept.Add(b);
        }
        kept.Sort();
        return [.. kept.Select(i => candidates[i])];
    }

    /// <summary>What of a single stage's option the objective and the constraints see, for <see cref="WithoutDominated"/>.</summary>
    readonly record struct DominanceKey(double Objective, double Latency, double Accuracy, double Cost, double Loading, string? LimitedClass, int Replicas)
    {
        /// <summary>At least as good in everything and better in something, or equal and <paramref name="first"/>.</summary>
        public bool Dominates(DominanceKey other, bool first)
        {
            if (Objective < other.Objective || Latency > other.Latency || Accuracy < other.Accuracy || Cost > other.Cost || Loading > other.Loading) return false;
            if (LimitedClass is not null && (LimitedClass != other.LimitedClass || Replicas > other.Replicas)) return false;
            return first || this != other;
        }
    }

    /// <summary>
    /// Σ stage latency ≤ SLO. A single stage's latency is fixed by its choice. A mixed stage gets a latency
    /// budget that each active option must meet: its batch latency plus the time to fill a batch at its
    /// share, 1e9·(b−1)/share ns, which is bilinear in (budget, share).
    /// </summary>
    void AddLatencyConstraint(PipelineProblem pipeline, IReadOnlyList<StageVariables> stages)
    {
        long sloNs = FixedPoint.SloNs(pipeline.SloMs);
        var stageLatencies = new List<LinearExpr>();
        foreach (var stage in stages)
        {
            if (stage.LatencyBudgetNs is not { } budget)
            {
                stageLatencies.Add(LinearExpr.WeightedSum(stage.Options.Select(o => o.Active), stage.Options.Select(o => FixedPoint.LatencyNs(o.LatencyMs!.Value))));
                continue;
            }
            stageLatencies.Add(budget);
            if (stage.BudgetLevels is not null) continue; // shares bounded by the capacity at the chosen budget
            foreach (var o in stage.Options)
            {
                long latencyNs = FixedPoint.LatencyNs(o.Point.LatencyMs);
                if (o.Point.Batch == 1)
                {
                    model.Add(budget >= latencyNs).OnlyEnforceIf(o.Active);
                    continue;
                }
                long largestSlack = sloNs - latencyNs;
                var slack = model.NewIntVar(0, largestSlack, $"{o.Active.Name()}/fill-budget");
                model.Add(slack == budget - latencyNs).OnlyEnforceIf(o.Active);
                model.Add(slack == 0).OnlyEnforceIf(o.Active.Not());
                long loadUnits = FixedPoint.ShareUnits(pipeline.ArrivalRate);
                var product = model.NewIntVar(0, largestSlack * loadUnits, $"{o.Active.Name()}/fill-product");
                model.AddMultiplicationEquality(product, slack, o.Share!);
                long fillNsTimesShare = 1_000_000_000L * (o.Point.Batch - 1) * FixedPoint.ShareUnitsPerRps;
                model.Add(product >= fillNsTimesShare * o.Active);
                AddFillTangents(o, slack, fillNsTimesShare, fillNsTimesShare / loadUnits, largestSlack);
            }
        }
        // Slack left in the SLO can only help a batch-fill mixed stage (a longer budget lowers the share it
        // needs), so with one present the budgets take all of it; that also fixes a lone stage's budget to the SLO.
        if (stages.Any(s => s.LatencyBudgetNs is not null && s.BudgetLevels is null)) model.Add(LinearExpr.Sum(stageLatencies) == sloNs);
        else model.Add(LinearExpr.Sum(stageLatencies) <= sloNs);
    }

    /// <summary>
    /// share·slack ≥ C is convex, but CP-SAT relaxes a product loosely and then cannot prove optimality.
    /// Tangents of share = C/slack at a few points are linear, implied by it, and make the relaxation tight:
    /// t₀·share + ⌈C/t₀⌉·slack ≥ 2C·active (both sides are 0 for an inactive option).
    /// </summary>
    void AddFillTangents(StageOption o, IntVar slack, long c, long smallestSlack, long largestSlack)
    {
        const int tangents = 8;
        if (largestSlack <= 0) return;
        double low = Math.Max(1, smallestSlack), ratio = Math.Pow(largestSlack / low, 1.0 / (tangents - 1));
        for (int i = 0; i < tangents; i++)
        {
            long t0 = (long)Math.Round(low * Math.Pow(ratio, i));
            if (t0 <= 0 || t0 > largestSlack) continue;
            long slope = c / t0 + (c % t0 == 0 ? 0 : 1);
            model.Add(t0 * o.Share! + slope * slack >= 2 * c * o.Active);
        }
    }

    void AddBudget(PipelineProblem pipeline, IReadOnlyList<StageVariables> stages)
    {
        if (pipeline.Budget is not { } budget) return;
        var options = stages.SelectMany(s => s.Options).ToList();
        model.Add(LinearExpr.WeightedSum(options.Select(o => o.Replicas), options.Select(o => FixedPoint.CostUnits(o.Hardware.CostPerReplica)))
                  <= FixedPoint.BudgetUnits(budget));
    }

    void AddHardwareLimits(IReadOnlyDictionary<string, int> limits, IReadOnlyList<StageVariables> stages)
    {
        foreach (var (hardwareClass, limit) in limits)
        {
            var onClass = stages.SelectMany(s => s.Options).Where(o => o.Hardware.Class == hardwareClass).Select(o => o.Replicas).ToList();
            if (onClass.Count > 0) model.Add(LinearExpr.Sum(onClass) <= limit);
        }
    }

    void AddObjectiveTerms(PipelineProblem pipeline, IReadOnlyList<StageVariables> stages)
    {
        var w = pipeline.Weights;
        if (w.Accuracy > 0) AddAccuracyTerms(pipeline, stages);
        foreach (var o in stages.SelectMany(s => s.Options))
            objectiveTerms.Add((o.Replicas, -w.Cost * o.Hardware.CostPerReplica));
        if (w.Batch > 0)
        {
            foreach (var stage in stages)
            {
                if (stage.Stage.Mode == StageMode.Single)
                {
                    foreach (var o in stage.Options) objectiveTerms.Add((o.Active, -w.Batch * o.Point.Batch));
                    continue;
                }
                var largest = model.NewIntVar(0, stage.Stage.BatchSizes.Max(), $"{stage.Stage.Name}/batch");
                model.AddMaxEquality(largest, stage.Options.Select(o => LinearExpr.Term(o.Active, o.Point.Batch)));
                objectiveTerms.Add((largest, -w.Batch));
            }
        }
        if (w.Loading > 0 && pipeline.Current.Count > 0 && pipeline.MaxLoadTimeS > 0) AddLoadingTerm(pipeline, stages);
    }

    void AddAccuracyTerms(PipelineProblem pipeline, IReadOnlyList<StageVariables> stages)
    {
        if (pipeline.AccuracyMethod == AccuracyMethod.Product)
        {
            AddAccuracyProduct(pipeline, stages);
            return;
        }
        double weight = pipeline.Weights.Accuracy / (pipeline.AccuracyMethod == AccuracyMethod.Average ? stages.Count : 1);
        double loadUnits = FixedPoint.ShareUnits(pipeline.ArrivalRate);
        foreach (var o in stages.SelectMany(s => s.Options))
        {
            if (o.Share is { } share) objectiveTerms.Add((share, weight * o.Variant.Accuracy / loadUnits));
            else objectiveTerms.Add((o.Active, weight * o.Variant.Accuracy));
        }
    }

    /// <summary>
    /// Π stage accuracy, as a chain P₁ = A₁, Pₖ ≤ Pₖ₋₁·Aₖ / scale over accuracies normalised by each stage's
    /// best. Every link is an upper bound that maximisation makes tight. A single stage's link is linear
    /// (Pₖ₋₁ gated by each option's choice); a mixed stage's share-weighted accuracy is linear only as the
    /// chain's first link, so mixed stages go first and only a second mixed stage needs a true product,
    /// which CP-SAT proves far more slowly.
    /// </summary>
    void AddAccuracyProduct(PipelineProblem pipeline, IReadOnlyList<StageVariables> stages)
    {
        const long scale = FixedPoint.ProductScale;
        double best = stages.Select(s => s.Stage.Variants.Max(v => v.Accuracy)).Aggregate(1.0, (p, a) => p * a);
        if (best <= 0) return; // some stage can only have accuracy 0: the product is 0 whatever is chosen
        long loadUnits = FixedPoint.ShareUnits(pipeline.ArrivalRate);
        LinearExpr? previous = null;
        foreach (var stage in stages.OrderBy(s => s.LatencyBudgetNs is null))
        {
            double stageBest = stage.Stage.Variants.Max(v => v.Accuracy);
            long Normalised(StageOption o) => (long)Math.Round(scale * o.Variant.Accuracy / stageBest);
            string name = stage.Stage.Name;
            var product = model.NewIntVar(0, scale, $"{name}/accuracy-product");
            if (stage.LatencyBudgetNs is null)
            {
                if (previous is null)
                {
                    model.Add(product <= LinearExpr.WeightedSum(stage.Options.Select(o => o.Active), stage.Options.Select(Normalised)));
                }
                else
                {
                    var gated = new List<LinearExpr>();
                    foreach (var o in stage.Options)
                    {
                        var carried = model.NewIntVar(0, scale, $"{o.Active.Name()}/carried-product");
                        model.Add(carried <= previous);
                        model.Add(carried <= scale * o.Active);
                        gated.Add(carried);
                    }
                    model.Add(scale * product <= LinearExpr.WeightedSum(gated, stage.Options.Select(Normalised)));
                }
            }
            else
            {
                // A share-weighted accuracy is at least the stage's worst; the tighter domain tightens the product.
                var accuracy = model.NewIntVar(stage.Options.Min(Normalised), scale, $"{name}/accuracy");
                model.Add(loadUnits * accuracy <= LinearExpr.WeightedSum(stage.Options.Select(o => o.Share!), stage.Options.Select(Normalised)));
                if (previous is null) model.Add(product == accuracy);
                else
                {
                    var both = model.NewIntVar(0, scale * scale, $"{name}/accuracy-times-previous");
                    model.AddMultiplicationEquality(both, previous, accuracy);
                    model.Add(scale * product <= both);
                }
            }
            previous = product;
        }
        objectiveTerms.Add((previous!, pipeline.Weights.Accuracy * best / scale));
    }

    /// <summary>
    /// δ · (largest load time among the (stage, variant, hardware) that load their model) / (largest load time
    /// overall). A flag is forced on when replicas exceed the running count or run at another batch size than
    /// now; maximisation keeps the rest off.
    /// </summary>
    void AddLoadingTerm(PipelineProblem pipeline, IReadOnlyList<StageVariables> stages)
    {
        long Ms(double s) => (long)Math.Round(s * 1000);
        var loading = model.NewIntVar(0, Ms(pipeline.MaxLoadTimeS), $"{pipeline.Name}/loading");
        foreach (var stage in stages)
        foreach (var sameModel in stage.Options.GroupBy(o => (o.Variant, o.Hardware)))
        {
            var (variant, hardware) = sameModel.Key;
            string stageName = stage.Stage.Name;
            int running = pipeline.RunningReplicas(stageName, variant.Name, hardware.Class);
            var loads = model.NewBoolVar($"{stageName}/{variant.Name}/{hardware.Class}/loads");
            int most = stage.Stage.MaxReplicas;
            model.Add(LinearExpr.Sum(sameModel.Select(o => o.Replicas)) <= running + most * loads);
            foreach (var otherBatch in sameModel.Where(o => pipeline.RunsAtOtherBatch(stageName, variant.Name, hardware.Class, o.Point.Batch)))
                model.Add(otherBatch.Replicas <= most * loads);
            model.Add(loading >= Ms(hardware.LoadTimeS) * loads);
        }
        objectiveTerms.Add((loading, -pipeline.Weights.Loading / Ms(pipeline.MaxLoadTimeS)));
    }

    /// <summary>
    /// Fallback: maximise the smallest (stage capacity / load) over every stage of every pipeline, then the
    /// sum of them, so that no stage is left below what the bounds allow.
    /// </summary>
    void MaximiseWorstCapacityRatio(PlanningProblem problem)
    {
        const long permille = 1000;
        var stages = problem.Pipelines.SelectMany((pipeline, p) => Pipelines[p].Select(stage => (
            Stage: stage,
            LoadUnits: Math.Max(1, FixedPoint.ShareUnits(pipeline.ArrivalRate)),
            Capacities: stage.Options.Select(o => FixedPoint.ThroughputUnits(o.Point.Throughput) * permille).ToList()))).ToList();
        long largest = stages.Max(s => s.Capacities.Max() * s.Stage.Stage.MaxReplicas / s.LoadUnits + 1);
        var worst = model.NewIntVar(0, largest, "worst-capacity-ratio");
        var ratios = new List<IntVar>();
        foreach (var (stage, loadUnits, capacities) in stages)
        {
            var ratio = model.NewIntVar(0, largest, $"{stage.Stage.Name}/capacity-ratio");
            model.Add(loadUnits * ratio <= LinearExpr.WeightedSum(stage.Options.Select(o => o.Replicas), capacities));
            model.Add(worst <= ratio);
            ratios.Add(ratio);
        }
        // One step of the worst ratio outweighs any sum of the others.
        model.Maximize(LinearExpr.Term(worst, largest * stages.Count + 1) + LinearExpr.Sum(ratios));
    }

    LinearExpr ScaledObjective()
    {
        var builder = LinearExpr.NewBuilder();
        foreach (var (expr, coefficient) in objectiveTerms)
        {
            long scaled = (long)Math.Round(coefficient * objectiveScale);
            if (scaled != 0) builder.AddTerm(expr, scaled);
        }
        return builder;
    }

    /// <summary>
    /// Integer objective units per objective unit: as fine as int64 arithmetic inside CP-SAT comfortably
    /// allows for the largest objective this problem can reach, and fine enough for the accuracy product.
    /// </summary>
    static double ObjectiveScale(PlanningProblem problem)
    {
        const double resolution = 1e12;
        double bound = 0, smallestProduct = double.PositiveInfinity;
        foreach (var p in problem.Pipelines)
        {
            var w = p.Weights;
            var best = p.Stages.Select(s => s.Variants.Select(v => v.Accuracy).DefaultIfEmpty(0).Max()).ToList();
            double accuracy = p.AccuracyMethod switch
            {
                AccuracyMethod.Sum => best.Sum(),
                AccuracyMethod.Average => best.Average(),
                _ => best.Aggregate(1.0, (x, a) => x * a),
            };
            if (p.AccuracyMethod == AccuracyMethod.Product && w.Accuracy * accuracy > 0)
                smallestProduct = Math.Min(smallestProduct, w.Accuracy * accuracy);
            double cost = p.Stages.Sum(s => s.MaxReplicas * s.Variants.SelectMany(v => v.Hardware).Select(h => h.CostPerReplica).DefaultIfEmpty(0).Max());
            double batch = p.Stages.Sum(s => s.BatchSizes.DefaultIfEmpty(1).Max());
            bound += w.Accuracy * accuracy + w.Cost * cost + w.Batch * batch + w.Loading;
        }
        // A product's coefficient multiplies a variable of ProductScale units; keep it well above 1.
        double scale = resolution / Math.Max(bound, 1e-9);
        if (double.IsFinite(smallestProduct)) scale = Math.Min(Math.Max(scale, resolution / smallestProduct), 1e17 / Math.Max(bound, 1e-9));
        return scale;
    }
}
