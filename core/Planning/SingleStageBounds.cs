namespace Adaptive.Core.Planning;

/// <summary>
/// Shrinks the CP-SAT model of a pipeline whose stages are all <c>single</c> before it is searched, without
/// changing its optimum. Such a pipeline is a multiple-choice knapsack: one option per stage, their latencies
/// within the SLO. A configuration that keeps every rule bounds the optimum from below; for each option, the
/// linear relaxation of the rest of the pipeline (its other stages within what the option leaves of the SLO)
/// bounds from above every configuration that takes it. An option whose bound falls below the configuration's
/// objective is in no optimal configuration and is dropped. Budget and hardware limits are left out of the
/// bounds (which only loosens them); the loading term, a maximum over stages, counts exactly in the
/// configuration and as 0 in the bounds. With queueing a stage has 30–50 options (one per useful replica
/// count); this leaves a few, and CP-SAT proves the optimum several times faster. Pipelines that multiply
/// accuracies are left whole: their objective does not add up by stage.
/// </summary>
/// <remarks>
/// The configuration comes from dynamic programming over the stages with latencies rounded up to steps of
/// SLO / <see cref="Steps"/> (so it keeps the SLO, and misses the optimum only by the rounding), brought within
/// the budget and limits and improved one stage at a time. The relaxation is computed once for all options by
/// Lagrange: pricing latency at μ per millisecond, each stage takes the option with the largest
/// value − μ·latency, the upper envelope of its options' lines. The envelopes' breakpoints cut μ into
/// intervals in which every stage's choice is fixed; the bound for an option of stage s is its value plus the
/// minimum over μ of Σ(other stages' envelopes) + μ·(SLO − its latency), reached at the first interval whose
/// other stages fit that remainder, found by binary search.
/// </remarks>
static class SingleStageBounds
{
    /// <summary>The SLO in this many steps for the dynamic programme: each stage's rounding loses less than one.</summary>
    const int Steps = 1024;

    /// <summary>
    /// Drops from <paramref name="candidates"/> (per stage, already free of dominated options) those that cannot
    /// be optimal. Returns the configuration found on the way, as an index per stage into the lists left, for a
    /// hint; null when nothing was pruned (no configuration found that keeps every rule).
    /// </summary>
    public static int[]? Prune(PipelineProblem pipeline, IReadOnlyDictionary<string, int> sharedLimits, List<List<Candidate>> candidates)
    {
        if (pipeline.AccuracyMethod == AccuracyMethod.Product || pipeline.Stages.Any(s => s.Mode != StageMode.Single) || candidates.Any(c => c.Count == 0))
            return null;
        var rules = new Rules(pipeline, sharedLimits, candidates);
        if (Knapsack(rules) is not { } incumbent || !Repair(rules, incumbent)) return null;
        var intervals = new Intervals(rules);
        double lower = Improve(rules, incumbent);

        double tolerance = 1e-9 * Math.Max(1, Math.Abs(lower));
        var kept = new int[candidates.Count];
        for (int s = 0; s < candidates.Count; s++)
        {
            var chosen = candidates[s][incumbent[s]];
            var stage = candidates[s];
            candidates[s] = [.. stage.Where((_, i) => i == incumbent[s] || intervals.Bound(rules, s, i) >= lower - tolerance)];
            kept[s] = candidates[s].IndexOf(chosen);
        }
        return kept;
    }

    /// <summary>Swaps options, the least valuable loss per unit of excess first, until the budget and limits hold within the SLO.</summary>
    static bool Repair(Rules rules, int[] choice)
    {
        for (long excess = rules.Excess(choice); excess > 0;)
        {
            (int Stage, int Option, double Loss, long Excess)? swap = null;
            for (int s = 0; s < choice.Length; s++)
            {
                int original = choice[s];
                for (int i = 0; i < rules.Values[s].Length; i++)
                {
                    choice[s] = i;
                    long after = rules.Excess(choice);
                    if (after >= excess || rules.Latency(choice) > rules.SloNs) continue;
                    double loss = (rules.Values[s][original] - rules.Values[s][i]) / (excess - after);
                    if (swap is null || loss < swap.Value.Loss) swap = (s, i, loss, after);
                }
                choice[s] = original;
            }
            if (swap is not { } found) return false;
            choice[found.Stage] = found.Option;
            excess = found.Excess;
        }
        return true;
    }

    /// <summary>Moves one stage at a time to a better option while every rule holds, until none helps. Returns the objective.</summary>
    static double Improve(Rules rules, int[] choice)
    {
        double value = rules.Objective(choice)!.Value;
        for (bool better = true; better;)
        {
            better = false;
            for (int s = 0; s < choice.Length; s++)
                for (int i = 0; i < rules.Values[s].Length; i++)
                {
                    if (rules.Values[s][i] <= rules.Values[s][choice[s]]) continue;
                    int previous = choice[s];
                    choice[s] = i;
                    if (rules.Objective(choice) is { } moved && moved > value) (value, better) = (moved, true);
                    else choice[s] = previous;
                }
        }
        return value;
    }

    /// <summary>The pipeline's values, latencies and rules over its candidates, in the units the CP-SAT model uses.</summary>
    sealed class Rules
    {
        readonly long budgetUnits;
        readonly int[] limits;
        readonly double loadingWeight;

        /// <summary>Per stage and option: cost units, the index of its limited class (−1 for none), replicas, and load time when it grows against what runs.</summary>
        readonly long[][] costUnits;
        readonly int[][] limitedClass;
        readonly int[][] replicas;
        readonly double[][] loading;

        public long SloNs { get; }

        /// <summary>Per stage and option: its part of the objective (accuracy, cost, batch).</summary>
        public double[][] Values { get; }
        public long[][] LatencyNs { get; }

        public Rules(PipelineProblem pipeline, IReadOnlyDictionary<string, int> sharedLimits, List<List<Candidate>> candidates)
        {
            var w = pipeline.Weights;
            double accuracyWeight = pipeline.AccuracyMethod == AccuracyMethod.Average ? w.Accuracy / pipeline.Stages.Count : w.Accuracy;
            Values = [.. candidates.Select(stage => stage.Select(c =>
                accuracyWeight * c.Variant.Accuracy - w.Cost * c.FixedReplicas * c.Hardware.CostPerReplica - w.Batch * c.Point.Batch).ToArray())];
            SloNs = FixedPoint.SloNs(pipeline.SloMs);
            LatencyNs = [.. candidates.Select(stage => stage.Select(c => FixedPoint.LatencyNs(c.LatencyMs)).ToArray())];
            budgetUnits = pipeline.Budget is { } budget ? FixedPoint.BudgetUnits(budget) : long.MaxValue;
            costUnits = [.. candidates.Select(stage => stage.Select(c => FixedPoint.CostUnits(c.Hardware.CostPerReplica) * c.FixedReplicas).ToArray())];
            var limited = new Dictionary<string, int>(pipeline.HardwareLimits);
            foreach (var (hardwareClass, limit) in sharedLimits)
                limited[hardwareClass] = Math.Min(limit, limited.GetValueOrDefault(hardwareClass, int.MaxValue));
            var classes = limited.Keys.ToList();
            limits = [.. classes.Select(c => limited[c])];
            limitedClass = [.. candidates.Select(stage => stage.Select(c => classes.IndexOf(c.Hardware.Class)).ToArray())];
            replicas = [.. candidates.Select(stage => stage.Select(c => c.FixedReplicas).ToArray())];
            loadingWeight = w.Loading > 0 && pipeline.Current.Count > 0 && pipeline.MaxLoadTimeS > 0 ? w.Loading / pipeline.MaxLoadTimeS : 0;
            loading = [.. candidates.Select((stage, s) => stage.Select(c =>
                c.FixedReplicas > pipeline.Current.Where(r => r.Stage == pipeline.Stages[s].Name && r.Variant == c.Variant.Name && r.Hardware == c.Hardware.Class).Sum(r => r.Replicas)
                    ? c.Hardware.LoadTimeS : 0).ToArray())];
        }

        public long Latency(int[] choice)
        {
            long total = 0;
            for (int s = 0; s < choice.Length; s++) total += LatencyNs[s][choice[s]];
            return total;
        }

        /// <summary>How far a configuration exceeds the budget and the hardware limits (0 when it keeps them), in cost units and replicas.</summary>
        public long Excess(int[] choice)
        {
            long cost = 0;
            Span<int> onClass = stackalloc int[limits.Length];
            for (int s = 0; s < choice.Length; s++)
            {
                cost += costUnits[s][choice[s]];
                if (limitedClass[s][choice[s]] is var c and >= 0) onClass[c] += replicas[s][choice[s]];
            }
            long excess = Math.Max(0, cost - budgetUnits);
            for (int c = 0; c < limits.Length; c++) excess += Math.Max(0, onClass[c] - limits[c]);
            return excess;
        }

        /// <summary>The objective of a configuration that keeps every rule (SLO, budget, hardware limits); null for one that does not.</summary>
        public double? Objective(int[] choice)
        {
            if (Latency(choice) > SloNs || Excess(choice) > 0) return null;
            double value = 0, largestLoad = 0;
            for (int s = 0; s < choice.Length; s++)
            {
                value += Values[s][choice[s]];
                largestLoad = Math.Max(largestLoad, loading[s][choice[s]]);
            }
            return value - loadingWeight * largestLoad;
        }
    }

    /// <summary>
    /// The best choice per stage with latencies rounded up to steps of SLO / <see cref="Steps"/>, by dynamic
    /// programming over the steps used: it keeps the SLO. Null when nothing fits.
    /// </summary>
    static int[]? Knapsack(Rules rules)
    {
        long step = Math.Max(1, rules.SloNs / Steps);
        int budget = (int)(rules.SloNs / step), stages = rules.Values.Length;
        var best = new double[budget + 1]; // within u steps: 0 for no stage
        var taken = new int[stages][];
        for (int s = 0; s < stages; s++)
        {
            var next = new double[budget + 1];
            Array.Fill(next, double.NegativeInfinity);
            taken[s] = new int[budget + 1];
            for (int i = 0; i < rules.Values[s].Length; i++)
            {
                long steps = (rules.LatencyNs[s][i] + step - 1) / step;
                for (long used = steps; used <= budget; used++)
                    if (best[used - steps] + rules.Values[s][i] > next[used])
                        (next[used], taken[s][used]) = (best[used - steps] + rules.Values[s][i], i);
            }
            best = next;
        }
        if (double.IsNegativeInfinity(best[budget])) return null;
        var choice = new int[stages];
        for (int s = stages - 1, used = budget; s >= 0; s--)
        {
            choice[s] = taken[s][used];
            used -= (int)((rules.LatencyNs[s][choice[s]] + step - 1) / step);
        }
        return choice;
    }

    /// <summary>The prices of latency at which some stage's best option changes, and every stage's choice between them.</summary>
    sealed class Intervals
    {
        /// <summary>Where each interval starts, in price per millisecond; the first starts at 0.</summary>
        readonly double[] start;

        /// <summary>Per interval and stage: the option the stage takes.</summary>
        readonly int[][] choice;

        /// <summary>Per interval: Σ the choices' values and latencies.</summary>
        readonly double[] totalValue;
        readonly long[] totalLatencyNs;

        public Intervals(Rules rules)
        {
            var envelopes = rules.Values.Select((values, s) => Envelope(values, rules.LatencyNs[s])).ToArray();
            start = [.. envelopes.SelectMany(e => e.Select(piece => piece.From)).Distinct().Order()];
            choice = new int[start.Length][];
            totalValue = new double[start.Length];
            totalLatencyNs = new long[start.Length];
            var at = new int[envelopes.Length];
            for (int k = 0; k < start.Length; k++)
            {
                choice[k] = new int[envelopes.Length];
                for (int s = 0; s < envelopes.Length; s++)
                {
                    while (at[s] + 1 < envelopes[s].Count && envelopes[s][at[s] + 1].From <= start[k]) at[s]++;
                    int option = envelopes[s][at[s]].Option;
                    choice[k][s] = option;
                    totalValue[k] += rules.Values[s][option];
                    totalLatencyNs[k] += rules.LatencyNs[s][option];
                }
            }
        }

        /// <summary>
        /// The upper envelope of the lines value − μ·latency over μ ≥ 0, as (price where it starts, option): from
        /// the best value (the fastest among equals), each next piece is the faster option whose line crosses
        /// soonest.
        /// </summary>
        static List<(double From, int Option)> Envelope(double[] values, long[] latencyNs)
        {
            double Ms(int i) => (double)latencyNs[i] / FixedPoint.NsPerMs;
            int current = 0;
            for (int i = 1; i < values.Length; i++)
                if (values[i] > values[current] || values[i] == values[current] && latencyNs[i] < latencyNs[current]) current = i;
            var pieces = new List<(double From, int Option)> { (0, current) };
            double from = 0;
            while (true)
            {
                int next = -1;
                double crossing = double.PositiveInfinity;
                for (int i = 0; i < values.Length; i++)
                {
                    if (latencyNs[i] >= latencyNs[current]) continue;
                    double at = Math.Max(from, (values[current] - values[i]) / (Ms(current) - Ms(i)));
                    if (at < crossing || at == crossing && latencyNs[i] < latencyNs[next]) (next, crossing) = (i, at);
                }
                if (next < 0) return pieces;
                (current, from) = (next, crossing);
                if (pieces[^1].From == from) pieces[^1] = (from, current);
                else pieces.Add((from, current));
            }
        }

        /// <summary>The most a configuration that takes option <paramref name="option"/> of stage <paramref name="stage"/> can reach (the relaxation's).</summary>
        public double Bound(Rules rules, int stage, int option)
        {
            long remainder = rules.SloNs - rules.LatencyNs[stage][option];
            // The others' latency at the choices falls as the price rises: the first interval where it fits.
            int low = 0, high = start.Length;
            while (low < high)
            {
                int middle = (low + high) / 2;
                if (totalLatencyNs[middle] - rules.LatencyNs[stage][choice[middle][stage]] <= remainder) high = middle;
                else low = middle + 1;
            }
            if (low == start.Length) return double.NegativeInfinity; // the others' fastest options do not fit
            double price = start[low];
            int own = choice[low][stage];
            double others = totalValue[low] - rules.Values[stage][own]
                - price * (totalLatencyNs[low] - rules.LatencyNs[stage][own]) / FixedPoint.NsPerMs;
            return rules.Values[stage][option] + others + price * remainder / FixedPoint.NsPerMs;
        }
    }
}
