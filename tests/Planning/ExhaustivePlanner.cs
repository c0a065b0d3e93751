using Adaptive.Core.Planning;
using Adaptive.Core.Queueing;

namespace Adaptive.Tests.Planning;

/// <summary>
/// The test oracle: tries every discrete configuration of a small problem (every variant, hardware, batch
/// and replica count, every subset in mixed stages) and, for each, the best continuous part: load shares by
/// a greedy split and, when two mixed stages compete for the latency SLO, a ternary search over how the SLO
/// is divided (each stage's best accuracy is concave in its latency budget). With the queueing latency
/// model, a mixed stage's budget is one of the SLO's tenths (docs/planning-format.md), all of which are
/// tried. Slow, simple, independent (but for the queueing formula, <see cref="BatchingStage"/>, the model's definition).
/// </summary>
static class ExhaustivePlanner
{
    sealed record Alloc(VariantProblem Variant, HardwareProfile Hardware, ProfilePoint Point, int Replicas);

    /// <summary>The best objective over every configuration, or null when none meets the constraints.</summary>
    public static double? BestObjective(PlanningProblem problem)
    {
        var stages = problem.Pipelines.SelectMany((p, i) => p.Stages.Select(s => (Pipeline: i, Stage: s))).ToList();
        var choices = stages.Select(s => StageConfigs(s.Stage)).ToList();
        double? best = null;
        var chosen = new List<Alloc>[stages.Count];

        void Recurse(int k)
        {
            if (k == stages.Count)
            {
                if (!WithinLimits(problem.SharedHardwareLimits, chosen)) return;
                double total = 0;
                int offset = 0;
                foreach (var pipeline in problem.Pipelines)
                {
                    var configs = chosen.Skip(offset).Take(pipeline.Stages.Count).ToList();
                    offset += pipeline.Stages.Count;
                    if (PipelineObjective(pipeline, configs) is not { } objective) return;
                    total += objective;
                }
                if (best == null || total > best) best = total;
                return;
            }
            foreach (var config in choices[k])
            {
                chosen[k] = config;
                Recurse(k + 1);
            }
        }
        Recurse(0);
        return best;
    }

    /// <summary>How many discrete configurations <see cref="BestObjective"/> would try.</summary>
    public static double Count(PlanningProblem problem) =>
        problem.Pipelines.SelectMany(p => p.Stages).Aggregate(1.0, (n, s) => n * StageConfigs(s).Count);

    static List<List<Alloc>> StageConfigs(StageProblem stage)
    {
        var options = stage.Variants.SelectMany(v => v.Hardware.SelectMany(h => stage.BatchSizes
            .Where(b => h.At(b) != null).Select(b => (Variant: v, Hardware: h, Point: h.At(b)!)))).ToList();
        if (stage.Mode == StageMode.Single)
            return options.SelectMany(o => Enumerable.Range(stage.MinReplicas, stage.MaxReplicas - stage.MinReplicas + 1)
                .Select(n => new List<Alloc> { new(o.Variant, o.Hardware, o.Point, n) })).ToList();

        // Mixed: for every (variant, hardware) either nothing or one (batch, replicas).
        var models = options.GroupBy(o => (o.Variant, o.Hardware)).ToList();
        var configs = new List<List<Alloc>>();
        void Recurse(int m, List<Alloc> picked, int replicas)
        {
            if (m == models.Count)
            {
                if (picked.Count > 0 && replicas >= stage.MinReplicas) configs.Add([.. picked]);
                return;
            }
            Recurse(m + 1, picked, replicas);
            foreach (var o in models[m])
            for (int n = 1; replicas + n <= stage.MaxReplicas; n++)
            {
                picked.Add(new Alloc(o.Variant, o.Hardware, o.Point, n));
                Recurse(m + 1, picked, replicas + n);
                picked.RemoveAt(picked.Count - 1);
            }
        }
        Recurse(0, [], 0);
        return configs;
    }

    static bool WithinLimits(IReadOnlyDictionary<string, int> limits, IEnumerable<List<Alloc>> configs)
    {
        var all = configs.SelectMany(c => c).ToList();
        return limits.All(l => all.Where(a => a.Hardware.Class == l.Key).Sum(a => a.Replicas) <= l.Value);
    }

    static double? PipelineObjective(PipelineProblem p, List<List<Alloc>> configs)
    {
        if (!WithinLimits(p.HardwareLimits, configs)) return null;
        double cost = configs.SelectMany(c => c).Sum(a => a.Replicas * a.Hardware.CostPerReplica);
        if (p.Budget is { } budget && cost > budget + 1e-9) return null;

        double lambda = p.ArrivalRate;
        var fixedAccuracy = new double?[configs.Count];
        double latencyLeft = p.SloMs;
        var mixed = new List<int>();
        for (int s = 0; s < configs.Count; s++)
        {
            if (p.Stages[s].Mode == StageMode.Mixed)
            {
                mixed.Add(s);
                continue;
            }
            var a = configs[s][0];
            if (lambda > a.Replicas * a.Point.Throughput + 1e-9) return null;
            latencyLeft -= p.LatencyModel == LatencyModel.Queueing
                ? BatchingStage.P99Ms(lambda, a.Replicas, a.Point.Batch, ServiceTime.Of(a.Point), p.Stages[s].MaxQueueDelayMs)
                : a.Point.LatencyMs + 1000.0 * (a.Point.Batch - 1) / lambda;
            fixedAccuracy[s] = a.Variant.Accuracy;
        }
        if (latencyLeft < -1e-9) return null;

        double? Accuracy(double[] budgets)
        {
            var accuracies = fixedAccuracy.ToArray();
            for (int i = 0; i < mixed.Count; i++)
            {
                accuracies[mixed[i]] = p.LatencyModel == LatencyModel.Queueing
                    ? QueueingMixedAccuracy(configs[mixed[i]], p.Stages[mixed[i]].MaxQueueDelayMs, lambda, budgets[i])
                    : MixedAccuracy(configs[mixed[i]], lambda, budgets[i]);
                if (accuracies[mixed[i]] == null) return null;
            }
            var values = accuracies.Select(x => x!.Value).ToList();
            return p.AccuracyMethod switch
            {
                AccuracyMethod.Sum => values.Sum(),
                AccuracyMethod.Average => values.Average(),
                _ => values.Aggregate(1.0, (x, y) => x * y),
            };
        }

        double? accuracy = mixed.Count switch
        {
            _ when p.LatencyModel == LatencyModel.Queueing && mixed.Count > 0 => BestLevels(p.SloMs, latencyLeft, mixed.Count, Accuracy),
            0 => Accuracy([]),
            1 => Accuracy([latencyLeft]),
            2 => BestSplit(latencyLeft, configs[mixed[0]], configs[mixed[1]], lambda, x => Accuracy(x)),
            _ => throw new ArgumentException("the oracle handles at most two mixed stages per pipeline"),
        };
        if (accuracy == null) return null;

        double largestLoad = p.MaxLoadTimeS, growing = 0;
        if (p.Current.Count > 0 && largestLoad > 0)
        {
            for (int s = 0; s < configs.Count; s++)
            foreach (var a in configs[s])
            {
                var same = p.Current.Where(c => c.Stage == p.Stages[s].Name && c.Variant == a.Variant.Name && c.Hardware == a.Hardware.Class).ToList();
                bool otherBatch = same.Any(c => c.Replicas > 0 && c.Batch != a.Point.Batch);
                if (a.Replicas > same.Sum(c => c.Replicas) || otherBatch) growing = Math.Max(growing, a.Hardware.LoadTimeS);
            }
        }
        double loading = largestLoad > 0 ? growing / largestLoad : 0;
        var w = p.Weights;
        return w.Accuracy * accuracy.Value - w.Cost * cost - w.Batch * configs.Sum(c => c.Max(a => a.Point.Batch)) - w.Loading * loading;
    }

    /// <summary>
    /// A mixed stage's best accuracy within a latency budget: each allocation's least share fills its batch in
    /// time, the rest goes to the most accurate first. Null when the budget or the capacity cannot take the load.
    /// </summary>
    static double? MixedAccuracy(List<Alloc> config, double lambda, double budgetMs)
    {
        var least = new double[config.Count];
        for (int i = 0; i < config.Count; i++)
        {
            var point = config[i].Point;
            if (point.Batch == 1)
            {
                if (point.LatencyMs > budgetMs + 1e-9) return null;
                continue;
            }
            if (point.LatencyMs >= budgetMs) return null;
            least[i] = 1000.0 * (point.Batch - 1) / (budgetMs - point.LatencyMs);
            if (least[i] > config[i].Replicas * point.Throughput) return null;
        }
        if (least.Sum() > lambda + 1e-9 || config.Sum(a => a.Replicas * a.Point.Throughput) < lambda - 1e-9) return null;
        double remaining = lambda - least.Sum(), accuracy = 0;
        foreach (int i in Enumerable.Range(0, config.Count).OrderByDescending(i => config[i].Variant.Accuracy))
        {
            double share = least[i] + Math.Min(config[i].Replicas * config[i].Point.Throughput - least[i], remaining);
            remaining -= share - least[i];
            accuracy += share / lambda * config[i].Variant.Accuracy;
        }
        return accuracy;
    }

    /// <summary>
    /// With queueing, a mixed stage's share is bounded by what its replicas take within the budget; the rest of
    /// the load goes to the most accurate first. Null when the replicas cannot take the load.
    /// </summary>
    static double? QueueingMixedAccuracy(List<Alloc> config, double maxQueueDelayMs, double lambda, double budgetMs)
    {
        var capacity = config.Select(a => BatchingStage.CapacityRps(a.Replicas, a.Point.Batch, ServiceTime.Of(a.Point), maxQueueDelayMs, budgetMs)).ToList();
        if (capacity.Sum() < lambda - 1e-9 || capacity.Any(c => c <= 0)) return null;
        double remaining = lambda, accuracy = 0;
        foreach (int i in Enumerable.Range(0, config.Count).OrderByDescending(i => config[i].Variant.Accuracy))
        {
            double share = Math.Min(capacity[i], remaining);
            remaining -= share;
            accuracy += share / lambda * config[i].Variant.Accuracy;
        }
        return accuracy;
    }

    /// <summary>With queueing, the best accuracy over every choice of the mixed stages' budgets among the SLO's tenths that fit in what is left.</summary>
    static double? BestLevels(double sloMs, double latencyLeft, int mixedStages, Func<double[], double?> accuracy)
    {
        double? best = null;
        foreach (var levels in Levels(mixedStages))
        {
            var budgets = levels.Select(k => sloMs * k / 10).ToArray();
            if (budgets.Sum() > latencyLeft + 1e-9) continue;
            if (accuracy(budgets) is { } value && (best == null || value > best)) best = value;
        }
        return best;

        static IEnumerable<int[]> Levels(int count) => count == 0
            ? [[]]
            : Levels(count - 1).SelectMany(rest => Enumerable.Range(1, 10).Select(k => (int[])[k, .. rest]));
    }

    /// <summary>Two mixed stages share <paramref name="budgetMs"/>: search the split that maximises accuracy.</summary>
    static double? BestSplit(double budgetMs, List<Alloc> first, List<Alloc> second, double lambda, Func<double[], double?> accuracy)
    {
        double? LeastBudget(List<Alloc> config)
        {
            if (MixedAccuracy(config, lambda, budgetMs) == null) return null;
            double low = 0, high = budgetMs;
            for (int i = 0; i < 200; i++)
            {
                double mid = (low + high) / 2;
                if (MixedAccuracy(config, lambda, mid) == null) low = mid;
                else high = mid;
            }
            return high;
        }
        if (LeastBudget(first) is not { } a || LeastBudget(second) is not { } b || a + b > budgetMs + 1e-9) return null;
        double lo = a, hi = budgetMs - b;
        double Value(double x) => accuracy([x, budgetMs - x]) ?? double.NegativeInfinity;
        for (int i = 0; i < 200; i++)
        {
            double m1 = lo + (hi - lo) / 3, m2 = hi - (hi - lo) / 3;
            if (Value(m1) < Value(m2)) lo = m1;
            else hi = m2;
        }
        double best = Math.Max(Value(lo), Math.Max(Value(hi), Value((lo + hi) / 2)));
        return double.IsNegativeInfinity(best) ? null : best;
    }
}
