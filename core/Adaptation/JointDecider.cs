using System.Diagnostics;
using System.Text.Json;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Planning;

namespace Adaptive.Core.Adaptation;

/// <param name="Pipeline">A pipeline with a hardware class in one of the pools.</param>
/// <param name="PlannedRps">The load its decision plans for (<see cref="PlanningLoad.Rps"/>).</param>
/// <param name="Current">What it runs now.</param>
/// <param name="ExcessShare">What a surge's rate outruns what it runs by (<see cref="SurgeRule.ExcessShare"/>): its plan weighs load time.</param>
public sealed record PoolMember(InferencePipeline Pipeline, double PlannedRps, IReadOnlyList<RunningAllocation> Current, double ExcessShare = 0);

/// <param name="Decision">The member's decision, as <see cref="AdaptationDecider.Decide"/> gives one.</param>
/// <param name="Pool">The pool it names.</param>
/// <param name="PoolReplicas">Its replicas on the pool, planned with the others.</param>
/// <param name="WantedReplicas">Its replicas on the pool planned alone with the whole pool.</param>
/// <param name="AloneObjective">Its objective planned alone with the whole pools: what it asked for; null when nothing meets its SLO.</param>
/// <param name="Objective">Its objective planned with the others; null when nothing meets its SLO with what it got.</param>
public sealed record MemberDecision(AdaptationDecision Decision, string Pool, int PoolReplicas, int WantedReplicas, double? AloneObjective, double? Objective)
{
    /// <summary>It got less than it would alone with the whole pools: others took some of them.</summary>
    public bool ConstrainedByOthers => AloneObjective is { } alone && (Objective is not { } joint || alone > joint + 1e-6 * Math.Max(1, Math.Abs(alone)));
}

/// <param name="Solves">Planner calls the decision took (members whose menu was kept from the last round took none).</param>
public sealed record JointDecision(IReadOnlyDictionary<string, int> Pools, double ElapsedMs, int Solves, IReadOnlyList<MemberDecision> Members);

/// <summary>
/// Plans every pipeline that shares an InferencePool together, so that their replicas on the pool never add up to
/// more than its capacity and, where it is short, its replicas go where priority × objective gains most (each
/// pipeline's objective counts <see cref="ObjectiveSpec.Priority"/> times).
/// Pipelines interact only through how many of the pool's replicas each gets, so the joint optimum decomposes
/// exactly: each pipeline is planned alone once with the whole pool, which says how many it would use (u), and
/// for smaller allotments k &lt; u, which give its best objective f(k) (f grows with k, and beyond u it gains nothing;
/// a plan for k that uses j &lt; k is the best for every allotment from j to k, so only k = j − 1 is planned next); then a dynamic program over the pool's capacity picks one allotment per pipeline that
/// maximizes Σ priority × f(k) within it, members meeting their SLO first. At most u + 1 solves a pipeline, each as fast
/// as planning it alone and the pipelines' on all cores at once, and a program linear in the pipelines. A pipeline names one pool at most (its other
/// classes are its own): with two, one could trade one pool's replicas for the other's, which this menu does not
/// hold. Several pools are planned side by side. Pure: the operator's pool reconciler and the replay call it alike.
/// </summary>
public static class JointDecider
{
    /// <param name="pools">Each pool the members name, with its capacity in replicas.</param>
    /// <param name="kept">The menus of the last round, to re-plan only the members whose problem changed; updated to this round's.</param>
    public static JointDecision Decide(IReadOnlyDictionary<string, int> pools, IReadOnlyList<PoolMember> members, TimeSpan timeLimit, JointMenus? kept = null)
    {
        if (members.Count == 0) throw new PlanningInputException("members", "a joint decision needs at least one pipeline");
        long started = Stopwatch.GetTimestamp();
        var planner = new CpSatPlanner(new PlannerOptions(timeLimit));
        // Each solve runs on one thread (CP-SAT with one worker), so the members' menus are made on every core at once.
        // Refusals first, one by one, naming the pipeline and field; then the solves.
        var poolClasses = members.Select(m => PoolClass(m.Pipeline, pools)).ToList();
        var problems = members.Select(m => AdaptationDecider.Problem(m.Pipeline, m.PlannedRps, m.Current, m.ExcessShare)).ToList();
        var keys = members.Select((m, i) => JointMenus.Key(problems[i], m.Pipeline.Spec.Objective.Priority, poolClasses[i], pools[poolClasses[i].Pool])).ToList();
        var reused = keys.Select(k => kept?.Find(k)).ToList();
        var made = Enumerable.Range(0, members.Count).Where(i => reused[i] is null).AsParallel().AsOrdered()
            .Select(i => (i, Menu: Menu(problems[i], members[i].Pipeline.Spec.Objective.Priority, poolClasses[i], pools, planner))).ToList();
        foreach (var (i, menu) in made) reused[i] = menu;
        var menus = reused.Select(m => m!).ToList();
        kept?.Replace(keys.Zip(menus));
        var choice = new int[members.Count];
        foreach (var pool in menus.Select((m, i) => (m.Pool, i)).GroupBy(m => m.Pool))
        {
            var indices = pool.Select(m => m.i).ToList();
            var allotted = Allot([.. indices.Select(i => menus[i].Options)], pools[pool.Key]);
            for (int j = 0; j < indices.Count; j++) choice[indices[j]] = allotted[j];
        }
        var decisions = members.Select((m, i) =>
        {
            var (menu, option) = (menus[i], menus[i].Options[choice[i]]);
            var plan = option.Result.Pipelines[0].Stages;
            return new MemberDecision(AdaptationDecider.Of(menu.Problem, option.Result, plan, m.Current), menu.Pool, option.Use, menu.Options[0].Use,
                menu.Options[0].Result.Pipelines[0].Objective, option.Result.Pipelines[0].Objective);
        }).ToList();
        return new JointDecision(pools, Stopwatch.GetElapsedTime(started).TotalMilliseconds, made.Sum(m => m.Menu.Options.Count), decisions);
    }

    /// <summary>
    /// The same question as one planning problem for CP-SAT, for comparison (benchmarks, tests): each member's pool
    /// class renamed to one class per pool, limited by the shared capacity, and its objective weighted by priority.
    /// Its optimum equals the decomposition's Σ priority × objective; CP-SAT takes far longer to prove it.
    /// </summary>
    public static PlanningProblem WholeProblem(IReadOnlyDictionary<string, int> pools, IReadOnlyList<PoolMember> members) =>
        new("joint", [.. members.Select(m =>
        {
            var problem = AdaptationDecider.Problem(m.Pipeline, m.PlannedRps, m.Current, m.ExcessShare);
            var pooled = m.Pipeline.Spec.HardwareClasses.Where(c => c.Pool is not null).ToDictionary(c => c.Name, c => $"pool/{c.Pool}");
            string Rename(string hardware) => pooled.GetValueOrDefault(hardware, hardware);
            double priority = m.Pipeline.Spec.Objective.Priority;
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
        })], pools.ToDictionary(p => $"pool/{p.Key}", p => p.Value));


    /// <summary>The pipeline's one class that names a pool, and the pool; refused, naming the field, unless exactly one class names one of <paramref name="pools"/>.</summary>
    static (string Class, string Pool) PoolClass(InferencePipeline pipeline, IReadOnlyDictionary<string, int> pools)
    {
        var named = pipeline.Spec.HardwareClasses.Where(c => c.Pool is not null).ToList();
        if (named.Count == 1 && pools.ContainsKey(named[0].Pool!)) return (named[0].Name, named[0].Pool!);
        throw new PlanningInputException($"{pipeline.Metadata.Name}: spec.hardwareClasses", named.Count == 0 || !pools.ContainsKey(named[0].Pool!)
            ? $"no class names any of the pools {string.Join(", ", pools.Keys.Order(StringComparer.Ordinal))}"
            : $"classes {string.Join(", ", named.Select(c => c.Name))} name pools; a pipeline may name one pool, with one class");
    }

    static MemberMenu Menu(PipelineProblem problem, double priority, (string Class, string Pool) named, IReadOnlyDictionary<string, int> pools, CpSatPlanner planner)
    {
        var (poolClass, pool) = named;

        MenuOption Solve(int limit)
        {
            var limits = new Dictionary<string, int>(problem.HardwareLimits) { [poolClass] = Math.Min(limit, problem.HardwareLimits.GetValueOrDefault(poolClass, int.MaxValue)) };
            var result = planner.Plan(PlanningProblem.Single(problem with { HardwareLimits = limits }));
            int use = result.Pipelines[0].Stages.Sum(s => s.Allocations.Where(a => a.Hardware == poolClass).Sum(a => a.Replicas));
            return new MenuOption(use, result, result.Pipelines[0].Objective * priority);
        }

        // From the top down: a plan allowed k replicas that uses j < k is also the best for every allotment from j to k, so
        // the next one worth a solve is j − 1 (the program takes each option at the replicas it uses).
        var options = new List<MenuOption> { Solve(pools[pool]) };
        for (int k = options[0].Use - 1; k >= 0; k = options[^1].Use - 1) options.Add(Solve(k));
        return new MemberMenu(problem, pool, options);
    }

    /// <summary>
    /// One option per member within the capacity: the most members meeting their SLO, then the highest Σ priority ×
    /// objective (a dynamic program over the replicas used so far).
    /// </summary>
    static int[] Allot(IReadOnlyList<List<MenuOption>> menus, int capacity)
    {
        var best = new (int Feasible, double Value)?[capacity + 1];
        best[0] = (0, 0);
        var from = new int[menus.Count][];
        var taken = new int[menus.Count][];
        for (int i = 0; i < menus.Count; i++)
        {
            var next = new (int Feasible, double Value)?[capacity + 1];
            (from[i], taken[i]) = (new int[capacity + 1], new int[capacity + 1]);
            for (int used = 0; used <= capacity; used++)
            {
                if (best[used] is not { } here) continue;
                for (int o = 0; o < menus[i].Count; o++)
                {
                    var option = menus[i][o];
                    int total = used + option.Use;
                    if (total > capacity) continue;
                    var candidate = (Feasible: here.Feasible + (option.Value is null ? 0 : 1), Value: here.Value + (option.Value ?? 0));
                    if (next[total] is { } incumbent && !Better(candidate, incumbent)) continue;
                    next[total] = candidate;
                    (from[i][total], taken[i][total]) = (used, o);
                }
            }
            best = next;
        }
        // Every menu holds an allotment of 0, so some total is reached.
        int end = Enumerable.Range(0, capacity + 1).Where(t => best[t] is not null).Aggregate((a, b) => Better(best[b]!.Value, best[a]!.Value) ? b : a);
        var choice = new int[menus.Count];
        for (int i = menus.Count - 1; i >= 0; i--) (choice[i], end) = (taken[i][end], from[i][end]);
        return choice;
    }

    static bool Better((int Feasible, double Value) a, (int Feasible, double Value) b) => a.Feasible > b.Feasible || a.Feasible == b.Feasible && a.Value > b.Value;
}

/// <summary>One way to plan a member: its plan with at most <see cref="Use"/> of the pool's replicas, and priority × objective (null: infeasible).</summary>
sealed record MenuOption(int Use, PlanResult Result, double? Value);

/// <param name="Options">The first is the member alone with the whole pool, then one per smaller allotment.</param>
sealed record MemberMenu(PipelineProblem Problem, string Pool, List<MenuOption> Options);

/// <summary>
/// A member's menu depends only on its planning problem (its load, what it runs, its spec), its priority, its pool and the
/// pool's capacity; a round in which these are what they were for a member can take its menu from the last round and stay
/// exact. So a round re-plans only the pipelines that changed, and the program over the pool (which takes nothing) is
/// run again over all. Holds the last round's menus only. In memory: losing it costs a round's time, nothing else.
/// </summary>
public sealed class JointMenus
{
    Dictionary<string, MemberMenu> menus = [];

    internal static string Key(PipelineProblem problem, double priority, (string Class, string Pool) pool, int capacity) =>
        JsonSerializer.Serialize(new { problem, priority, pool.Class, pool.Pool, capacity });

    internal MemberMenu? Find(string key) => menus.GetValueOrDefault(key);

    internal void Replace(IEnumerable<(string Key, MemberMenu Menu)> round) => menus = round.DistinctBy(m => m.Key).ToDictionary(m => m.Key, m => m.Menu);
}
