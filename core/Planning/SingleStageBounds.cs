namespace Adaptive.Core.Planning;

/// <summary>
/// Shrinks the CP-SAT model of a pipeline whose stages are all <c>single</c> before it is searched, without
/// changing its optimum. Such a pipeline is a multiple-choice knapsack: one option per stage, their latencies
/// within the SLO. A configuration that keeps every rule bounds the optimum from below; for each option, the
/// linear relaxation of the rest of the pipeline (its other stages within what the option leaves of the SLO)
/// bounds from above every configuration that takes it. An option whose bound falls below the configuration's
/// objective is in no optimal configuration and is dropped; that is repeated while it drops something (each
/// drop lowers the others' bounds). On the few options left the bound is then exact: the best configuration
/// within the SLO through each option, from the Pareto fronts of the stages before and after it; the best of
/// them all becomes the configuration when it keeps every rule. Budget and hardware limits are left out of the
/// bounds (which only loosens them); the loading term, a maximum over stages, counts exactly in the
/// configuration and as 0 in the bounds. With queueing a stage has 30–50 options (one per useful replica
/// count); this leaves about one, and CP-SAT proves the optimum several times faster. Pipelines that multiply
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
        double lower = Improve(rules, incumbent);
        double tolerance = 1e-9 * Math.Max(1, Math.Abs(lower));
        for (bool dropped = true; dropped;)
        {
            var intervals = new Intervals(rules);
            dropped = false;
            for (int s = 0; s < candidates.Count; s++)
            {
                var chosen = candidates[s][incumbent[s]];
                var stage = candidates[s];
                candidates[s] = [.. stage.Where((_, i) => i == incumbent[s] || intervals.Bound(rules, s, i) >= lower - tolerance)];
                incumbent[s] = candidates[s].IndexOf(chosen);
                dropped |= candidates[s].Count < stage.Count;
            }
            if (dropped) rules = new Rules(pipeline, sharedLimits, candidates);
        }
        var fronts = new Fronts(rules, lower - tolerance);
        if (fronts.Best() is { } best && rules.Objective(best) is { } value && value > lower) (incumbent, lower) = (best, value);
        for (int s = 0; s < candidates.Count; s++)
        {
            var chosen = candidates[s][incumbent[s]];
            var stage = candidates[s];
            candidates[s] = [.. stage.Where((_, i) => i == incumbent[s] || fronts.Bound(s, i) >= lower - tolerance)];
            incumbent[s] = candidates[s].IndexOf(chosen);
        }
        return incumbent;
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
                pipeline.LoadsModel(pipeline.Stages[s].Name, c.Variant.Name, c.Hardware.Class, c.Point.Batch, c.FixedReplicas)
                    ? c.Hardware.LoadTimeS : 0).ToArray())];
        }

        /// <summary>Σ the hardware limits: a configuration that keeps them has at most this many replicas on limited classes.</summary>
        public long TotalLimit => limits.Sum(l => (long)l);

        /// <summary>The most replicas any configuration puts on limited classes.</summary>
        public long MostLimitedReplicas => replicas.Select((stage, s) => stage.Select((_, i) => LimitedReplicas(s, i)).Max()).Sum(r => (long)r);

        /// <summary>The replicas an option puts on limited classes.</summary>
        public int LimitedReplicas(int stage, int option) => limitedClass[stage][option] >= 0 ? replicas[stage][option] : 0;

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

    /// <summary>
    /// The knapsack with latencies rounded down to steps of SLO / <see cref="Steps"/>: a relaxation, since every
    /// configuration within the SLO stays within it, and a close one, each stage gaining less than a step. It
    /// bounds what the stages before or after one can add within a latency, for <see cref="Fronts"/>; it costs
    /// the options times the steps, so it runs on what <see cref="Intervals"/> leaves.
    /// </summary>
    sealed class RoundedDownKnapsack
    {
        readonly long step;
        readonly int budget;

        /// <summary>Per stage s and steps u: the best of the stages before s (<see cref="before"/>) or after it (<see cref="after"/>) within u steps.</summary>
        readonly double[][] before, after;

        public RoundedDownKnapsack(Rules rules)
        {
            step = Math.Max(1, rules.SloNs / Steps);
            budget = (int)(rules.SloNs / step);
            int stages = rules.Values.Length;
            before = new double[stages][];
            after = new double[stages][];
            before[0] = new double[budget + 1];
            for (int s = 1; s < stages; s++) before[s] = Add(rules, s - 1, before[s - 1]);
            after[stages - 1] = new double[budget + 1];
            for (int s = stages - 2; s >= 0; s--) after[s] = Add(rules, s + 1, after[s + 1]);
        }

        int StepsOf(Rules rules, int stage, int option) => (int)(rules.LatencyNs[stage][option] / step);

        /// <summary>The best of <paramref name="rest"/> and one option of <paramref name="stage"/> within each number of steps.</summary>
        double[] Add(Rules rules, int stage, double[] rest)
        {
            var best = new double[budget + 1];
            Array.Fill(best, double.NegativeInfinity);
            for (int i = 0; i < rules.Values[stage].Length; i++)
                for (int used = StepsOf(rules, stage, i), u = used; u <= budget; u++)
                    best[u] = Math.Max(best[u], rest[u - used] + rules.Values[stage][i]);
            return best;
        }

        /// <summary>The most the stages after <paramref name="stage"/> can add within <paramref name="leftNs"/>.</summary>
        public double After(int stage, long leftNs) => leftNs < 0 ? double.NegativeInfinity : after[stage][(int)Math.Min(budget, leftNs / step)];

        /// <summary>The most the stages before <paramref name="stage"/> can add within <paramref name="leftNs"/>.</summary>
        public double Before(int stage, long leftNs) => leftNs < 0 ? double.NegativeInfinity : before[stage][(int)Math.Min(budget, leftNs / step)];
    }

    /// <summary>
    /// The exact best configuration through each option, by the Pareto fronts of the stages before and after
    /// each stage: partial configurations by latency (in ns, as the model has them), replicas on limited classes
    /// (within Σ the limits) and value. The budget and each limit on its own are left to CP-SAT. Partial
    /// configurations that the rounded-down knapsack cannot complete to <c>least</c> are dropped as they are
    /// built, which keeps the fronts short.
    /// </summary>
    sealed class Fronts
    {
        /// <summary>A partial configuration, and how it was built: the entry of the front it extends and the option it adds.</summary>
        readonly record struct Partial(long LatencyNs, int Limited, double Value, int Parent, int Option);

        readonly Rules rules;

        /// <summary>Replicas on limited classes a configuration may have: Σ the limits, or fewer when no configuration can reach it.</summary>
        readonly int limitedRoom;

        /// <summary>Per stage: the front of the stages before it, by latency.</summary>
        readonly List<Partial>[] before;

        /// <summary>Per stage and r: the front of the stages after it with at most r limited replicas, by latency, values rising.</summary>
        readonly List<Partial>[][] afterWithin;

        /// <summary>The front of whole configurations.</summary>
        readonly List<Partial> whole;

        public Fronts(Rules rules, double least)
        {
            this.rules = rules;
            limitedRoom = (int)Math.Min(rules.TotalLimit, rules.MostLimitedReplicas);
            var completion = new RoundedDownKnapsack(rules);
            int stages = rules.Values.Length;
            before = new List<Partial>[stages];
            before[0] = [new(0, 0, 0, -1, -1)];
            for (int s = 1; s < stages; s++)
                before[s] = Extend(s - 1, before[s - 1], (latency, value) => value + completion.After(s - 1, rules.SloNs - latency) >= least);
            whole = Extend(stages - 1, before[stages - 1], (_, value) => value >= least);
            afterWithin = new List<Partial>[stages][];
            var after = new List<Partial> { new(0, 0, 0, -1, -1) };
            for (int s = stages - 1; s >= 0; s--)
            {
                afterWithin[s] = [.. Enumerable.Range(0, limitedRoom + 1).Select(r => Within(after, r))];
                if (s > 0) after = Extend(s, after, (latency, value) => value + completion.Before(s, rules.SloNs - latency) >= least);
            }
        }

        /// <summary>
        /// The front of <paramref name="front"/> and one option of <paramref name="stage"/>, of the partial
        /// configurations within the SLO and the limits that <paramref name="promising"/> keeps: none is kept that
        /// another is at least as fast, as light on limited classes and as valuable as.
        /// </summary>
        List<Partial> Extend(int stage, List<Partial> front, Func<long, double, bool> promising)
        {
            var sums = new Partial[rules.Values[stage].Length * front.Count];
            var order = new long[sums.Length];
            int count = 0;
            for (int i = 0; i < rules.Values[stage].Length; i++)
                for (int f = 0; f < front.Count; f++)
                {
                    long latency = front[f].LatencyNs + rules.LatencyNs[stage][i];
                    int limited = front[f].Limited + rules.LimitedReplicas(stage, i);
                    double value = front[f].Value + rules.Values[stage][i];
                    if (latency > rules.SloNs || limited > limitedRoom || !promising(latency, value)) continue;
                    sums[count] = new(latency, limited, value, f, i);
                    order[count++] = latency * (limitedRoom + 1) + limited;
                }
            Array.Sort(order, sums, 0, count);
            // The best value among those kept (all at least as fast) with at most r limited replicas.
            var bestWithin = new double[limitedRoom + 1];
            Array.Fill(bestWithin, double.NegativeInfinity);
            var kept = new List<Partial>();
            foreach (var sum in sums.AsSpan(0, count))
            {
                if (sum.Value <= bestWithin[sum.Limited]) continue;
                kept.Add(sum);
                for (int r = sum.Limited; r <= limitedRoom && bestWithin[r] < sum.Value; r++) bestWithin[r] = sum.Value;
            }
            return kept;
        }

        /// <summary>The parts of <paramref name="front"/> (by latency) with at most <paramref name="limited"/> limited replicas that no faster one beats, values rising.</summary>
        static List<Partial> Within(List<Partial> front, int limited)
        {
            var kept = new List<Partial>();
            foreach (var part in front)
                if (part.Limited <= limited && (kept.Count == 0 || part.Value > kept[^1].Value)) kept.Add(part);
            return kept;
        }

        /// <summary>The most valuable configuration within the SLO and Σ the limits, as an option per stage; null when none reaches the least.</summary>
        public int[]? Best()
        {
            if (whole.Count == 0) return null;
            var choice = new int[before.Length];
            var entry = whole.MaxBy(p => p.Value);
            for (int s = before.Length - 1; s >= 0; s--)
            {
                choice[s] = entry.Option;
                entry = before[s][entry.Parent];
            }
            return choice;
        }

        /// <summary>The most a configuration that takes option <paramref name="option"/> of stage <paramref name="stage"/> reaches (−∞ when none reaches the least).</summary>
        public double Bound(int stage, int option)
        {
            long left = rules.SloNs - rules.LatencyNs[stage][option];
            int room = limitedRoom - rules.LimitedReplicas(stage, option);
            double best = double.NegativeInfinity;
            foreach (var part in before[stage])
            {
                if (part.Limited > room || part.LatencyNs > left) continue;
                var second = afterWithin[stage][room - part.Limited];
                // The slowest of the second parts that fits is the most valuable.
                int low = 0, high = second.Count;
                while (low < high)
                {
                    int middle = (low + high) / 2;
                    if (second[middle].LatencyNs <= left - part.LatencyNs) low = middle + 1;
                    else high = middle;
                }
                if (low > 0) best = Math.Max(best, part.Value + second[low - 1].Value);
            }
            return rules.Values[stage][option] + best;
        }
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
