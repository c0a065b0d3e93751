using System.CommandLine;
using System.Globalization;
using Adaptive.Core.Adaptation;
using Adaptive.Core.Planning;
using Adaptive.Experiments.Bench;
using Adaptive.Experiments.Replay;
using Spectre.Console;

namespace Adaptive.Experiments.Commands;

/// <summary>
/// <c>adaptive bench planner</c>: the planner's solve time over a grid of pipeline sizes (stages × variants
/// per stage × hardware classes × stage mode), p50 and p99 per cell over random instances, written as CSV
/// and PNG plots; or, with <c>--joint</c>, rounds of joint planning of many pipelines sharing pools.
/// </summary>
public static class BenchPlannerCommand
{
    public static Command Create()
    {
        var stages = new Option<int[]>("--stages") { Description = "Stage counts", DefaultValueFactory = _ => [1, 2, 3, 5, 9, 12, 16, 20], AllowMultipleArgumentsPerToken = true };
        var mixedStages = new Option<int[]>("--mixed-stages") { Description = "Stage counts for pipelines of mixed stages (their search is much harder)", DefaultValueFactory = _ => [1, 2, 3], AllowMultipleArgumentsPerToken = true };
        var variants = new Option<int[]>("--variants") { Description = "Variants per stage", DefaultValueFactory = _ => [1, 2, 3, 5, 9, 12, 16, 20], AllowMultipleArgumentsPerToken = true };
        var modes = new Option<StageMode[]>("--modes") { Description = "Stage modes to measure: Single, Mixed", DefaultValueFactory = _ => [StageMode.Single, StageMode.Mixed], AllowMultipleArgumentsPerToken = true };
        var repeats = new Option<int>("--repeats") { Description = "Random instances per cell", DefaultValueFactory = _ => 20 };
        var maxReplicas = new Option<int>("--max-replicas") { Description = "Replica bound per stage", DefaultValueFactory = _ => 30 };
        var timeLimit = new Option<double>("--time-limit") { Description = "Planner time limit per solve, seconds", DefaultValueFactory = _ => 10 };
        var latencyModel = new Option<LatencyModel>("--latency-model") { Description = "The planner's latency model: BatchFill (the papers') or Queueing", DefaultValueFactory = _ => LatencyModel.BatchFill };
        var joint = new Option<int[]>("--joint")
        {
            Description = "In place of the grid: decision rounds of this many pipelines sharing two GPU pools (the ResNet sample, half of its copies mixed), " +
                          "planned jointly by decomposition and, up to --joint-whole-max pipelines, by CP-SAT on the whole problem",
            AllowMultipleArgumentsPerToken = true,
        };
        var jointWholeMax = new Option<int>("--joint-whole-max") { Description = "The most pipelines CP-SAT plans as one problem for comparison", DefaultValueFactory = _ => 50 };
        var output = new Option<DirectoryInfo>("--out") { Description = "Where the CSV and plots go", DefaultValueFactory = _ => new DirectoryInfo("bench-results") };
        var command = new Command("planner", "Planner solve time over a grid of pipeline sizes") { stages, mixedStages, variants, modes, repeats, maxReplicas, timeLimit, latencyModel, joint, jointWholeMax, output };
        command.SetAction(parse => parse.GetValue(joint) is { Length: > 0 } counts
            ? RunJoint(counts, parse.GetValue(repeats), parse.GetValue(timeLimit), parse.GetValue(jointWholeMax), parse.GetValue(output)!)
            : Run(parse.GetValue(stages)!, parse.GetValue(mixedStages)!, parse.GetValue(variants)!, parse.GetValue(modes)!, parse.GetValue(repeats), parse.GetValue(maxReplicas),
                parse.GetValue(timeLimit), parse.GetValue(latencyModel), parse.GetValue(output)!));
        return command;
    }

    sealed record Cell(int Stages, int Variants, int HardwareClasses, StageMode Mode, List<double> SolveMs, Dictionary<PlanStatus, int> Statuses)
    {
        public double Percentile(double p)
        {
            var sorted = SolveMs.Order().ToList();
            double rank = p * (sorted.Count - 1);
            int low = (int)Math.Floor(rank), high = (int)Math.Ceiling(rank);
            return sorted[low] + (sorted[high] - sorted[low]) * (rank - low);
        }
    }

    static int Run(int[] stageCounts, int[] mixedStageCounts, int[] variantCounts, StageMode[] modes, int repeats, int maxReplicas, double timeLimitSeconds, LatencyModel latencyModel, DirectoryInfo output)
    {
        if (repeats < 1 || maxReplicas < 1 || stageCounts.Concat(mixedStageCounts).Any(s => s < 1) || variantCounts.Any(v => v < 1) || !(timeLimitSeconds > 0))
        {
            Console.Error.WriteLine("adaptive bench planner: --stages, --mixed-stages, --variants, --repeats, --max-replicas and --time-limit must be positive");
            return ExitCodes.InvalidInput;
        }
        var planner = new CpSatPlanner(new PlannerOptions(TimeSpan.FromSeconds(timeLimitSeconds)));
        WarmUp(planner, modes, maxReplicas, latencyModel);

        var grid = (from mode in modes.Distinct()
                    from classes in new[] { 1, 2 }
                    from s in mode == StageMode.Single ? stageCounts : mixedStageCounts
                    from v in variantCounts
                    select (Mode: mode, Classes: classes, Stages: s, Variants: v)).ToList();
        var cells = new List<Cell>();
        AnsiConsole.Progress().Start(progress =>
        {
            var task = progress.AddTask("solving", maxValue: grid.Count * repeats);
            foreach (var (mode, classes, s, v) in grid)
            {
                var cell = new Cell(s, v, classes, mode, [], []);
                PlanningProblem Instance(int r) =>
                    PlanningProblem.Single(SyntheticPipelines.Build(s, v, classes, mode, maxReplicas, new Random(Seed(s, v, classes, (int)mode, r))) with { LatencyModel = latencyModel });
                // An instance of the cell's size first, untimed: larger problems reach code that small ones leave cold.
                planner.Plan(Instance(-1));
                Thread.Sleep(CompilerGrace);
                for (int r = 0; r < repeats; r++)
                {
                    var result = planner.Plan(Instance(r));
                    cell.SolveMs.Add(result.SolveMs);
                    cell.Statuses[result.Status] = cell.Statuses.GetValueOrDefault(result.Status) + 1;
                    task.Increment(1);
                }
                cells.Add(cell);
            }
        });

        output.Create();
        WriteCsv(cells, Path.Combine(output.FullName, "planner.csv"));
        foreach (var mode in modes.Distinct())
            PlotP99(cells.Where(c => c.Mode == mode).ToList(), mode, Path.Combine(output.FullName, $"planner-{mode.ToString().ToLowerInvariant()}.png"));
        PrintTable(cells);
        AnsiConsole.MarkupLine($"[grey]wrote {Markup.Escape(output.FullName)}/planner.csv and planner-*.png[/]");
        return ExitCodes.Ok;
    }

    /// <summary>
    /// Joint planning of <c>n</c> pipelines sharing two GPU pools (9n/20 and n/5 GPUs; a third of the pipelines
    /// in the second), each a copy of the ResNet sample (every other one mixed) with a load of 20–320 requests/s
    /// and a priority of 1–3 drawn per instance. For each: a first round (every pipeline planned, <see cref="JointDecider"/>),
    /// and for comparison CP-SAT on the whole problem within the time limit; then <see cref="WarmRounds"/> rounds as the
    /// operator makes them once running, each after a tenth of the pipelines got a new load (their own decisions came: with
    /// a 30 s interval spread over the pipelines, a round every 3 s), the others' menus kept from the round before.
    /// </summary>
    static int RunJoint(int[] counts, int repeats, double timeLimitSeconds, int wholeMax, DirectoryInfo output)
    {
        if (counts.Any(n => n < 1) || repeats < 1 || !(timeLimitSeconds > 0))
        {
            Console.Error.WriteLine("adaptive bench planner: --joint, --repeats and --time-limit must be positive");
            return ExitCodes.InvalidInput;
        }
        var limit = TimeSpan.FromSeconds(timeLimitSeconds);
        static double Load(Random random) => 20 + random.NextDouble() * 300;
        (Dictionary<string, int> Pools, List<PoolMember> Members) Instance(int n, Random random)
        {
            var members = Enumerable.Range(0, n).Select(i =>
            {
                var pipeline = ReplayPipeline.Load("resnet", 0).Spec;
                pipeline.Metadata.Name = $"p{i}";
                pipeline.Spec.Stages[0].Mode = i % 2 == 0 ? "single" : "mixed";
                pipeline.Spec.HardwareClasses.Single(c => c.Name == "gpu").Pool = i % 3 == 0 ? "gpus-b" : "gpus-a";
                pipeline.Spec.Objective.Priority = 1 + random.Next(3);
                return new PoolMember(pipeline, Load(random), []);
            }).ToList();
            return (new Dictionary<string, int> { ["gpus-a"] = Math.Max(1, 9 * n / 20), ["gpus-b"] = Math.Max(1, n / 5) }, members);
        }
        var warmUp = Instance(4, new Random(-1));
        JointDecider.Decide(warmUp.Pools, warmUp.Members, limit);

        var table = new Table().AddColumns("pipelines", "instances", "first round p50 ms", "plans", $"warm round p50 ms", "warm p99 ms", "plans a warm round",
            "constrained by others", "CP-SAT whole: status, ms (p50)");
        var csv = new List<string> { "pipelines,instance,round,round_ms,plans,constrained,whole_status,whole_ms,whole_objective,decomposed_objective" };
        foreach (int n in counts)
        {
            var firsts = new List<JointDecision>();
            var warms = new List<JointDecision>();
            var wholes = new List<PlanResult>();
            for (int r = 0; r < repeats; r++)
            {
                var random = new Random(Seed(n, r));
                var (pools, members) = Instance(n, random);
                var kept = new JointMenus();
                var first = JointDecider.Decide(pools, members, limit, kept);
                firsts.Add(first);
                double decomposed = first.Members.Select((m, i) => (m.Objective ?? 0) * members[i].Pipeline.Spec.Objective.Priority).Sum();
                PlanResult? whole = n <= wholeMax ? new CpSatPlanner(new PlannerOptions(limit)).Plan(JointDecider.WholeProblem(pools, members)) : null;
                if (whole is not null) wholes.Add(whole);
                csv.Add(string.Join(',', n, r, "first", F(first.ElapsedMs), first.Solves, first.Members.Count(m => m.ConstrainedByOthers),
                    whole?.Status.ToString().ToLowerInvariant() ?? "", whole is null ? "" : F(whole.SolveMs), whole?.Objective?.ToString("0.######", CultureInfo.InvariantCulture) ?? "",
                    decomposed.ToString("0.######", CultureInfo.InvariantCulture)));
                for (int w = 0; w < WarmRounds; w++)
                {
                    foreach (int i in Enumerable.Range(0, n).OrderBy(_ => random.Next()).Take(Math.Max(1, n / 10)).ToList())
                        members[i] = members[i] with { PlannedRps = Load(random) };
                    var warm = JointDecider.Decide(pools, members, limit, kept);
                    warms.Add(warm);
                    csv.Add(string.Join(',', n, r, "warm", F(warm.ElapsedMs), warm.Solves, warm.Members.Count(m => m.ConstrainedByOthers), "", "", "", ""));
                }
            }
            var warmMs = warms.Select(d => d.ElapsedMs).Order().ToList();
            table.AddRow($"{n}", $"{repeats}", F(Percentiles.Of([.. firsts.Select(d => d.ElapsedMs).Order()], 0.5)), F(firsts.Average(d => d.Solves)),
                F(Percentiles.Of(warmMs, 0.5)), F(Percentiles.Of(warmMs, 0.99)), F(warms.Average(d => d.Solves)),
                F(firsts.Average(d => d.Members.Count(m => m.ConstrainedByOthers))),
                wholes.Count == 0 ? "not run" : $"{string.Join("/", wholes.GroupBy(w => w.Status).Select(g => $"{g.Count()} {g.Key.ToString().ToLowerInvariant()}"))}, {F(Percentiles.Of([.. wholes.Select(w => w.SolveMs).Order()], 0.5))}");
        }
        AnsiConsole.Write(table);
        output.Create();
        File.WriteAllLines(Path.Combine(output.FullName, "joint.csv"), csv);
        AnsiConsole.MarkupLine($"[grey]wrote {Markup.Escape(output.FullName)}/joint.csv[/]");
        return ExitCodes.Ok;
    }

    /// <summary>Rounds after the first of each instance in <c>--joint</c>, each with a tenth of the loads new.</summary>
    const int WarmRounds = 20;

    /// <summary>
    /// "Warm" is the operator after its first decisions: CP-SAT's native library loaded and the planner's code
    /// compiled to its optimised tier. .NET compiles a method again, optimised, after 30 calls, in the background;
    /// so small problems of each measured mode (one stage where it is mixed, whose search is slow) are planned
    /// for a second, then the compiler is given time to finish; each cell then plans one instance of its size
    /// untimed (without it, the first instance of a cell took up to 3 times the rest).
    /// </summary>
    static void WarmUp(CpSatPlanner planner, StageMode[] modes, int maxReplicas, LatencyModel latencyModel)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var random = new Random(0);
        for (int i = 0; clock.Elapsed < TimeSpan.FromSeconds(1); i++)
            foreach (var mode in modes.Distinct())
                planner.Plan(PlanningProblem.Single(SyntheticPipelines.Build(mode == StageMode.Mixed ? 1 : 3, 3, 1 + i % 2, mode, maxReplicas, random) with { LatencyModel = latencyModel }));
        Thread.Sleep(TimeSpan.FromMilliseconds(500));
    }

    /// <summary>A seed from the instance's coordinates, the same in every run (HashCode.Combine's differs from process to process).</summary>
    static int Seed(params int[] parts) => parts.Aggregate(17, (seed, part) => unchecked(seed * 31 + part));

    /// <summary>Time for the compiler's background work after new code has run.</summary>
    static readonly TimeSpan CompilerGrace = TimeSpan.FromMilliseconds(200);

    static void WriteCsv(List<Cell> cells, string path)
    {
        var lines = new List<string> { "mode,hardwareClasses,stages,variants,runs,p50Ms,p99Ms,maxMs,optimal,feasible,infeasible" };
        lines.AddRange(cells.Select(c => string.Join(',',
            c.Mode.ToString().ToLowerInvariant(), c.HardwareClasses, c.Stages, c.Variants, c.SolveMs.Count,
            F(c.Percentile(0.5)), F(c.Percentile(0.99)), F(c.SolveMs.Max()),
            c.Statuses.GetValueOrDefault(PlanStatus.Optimal), c.Statuses.GetValueOrDefault(PlanStatus.Feasible), c.Statuses.GetValueOrDefault(PlanStatus.Infeasible))));
        File.WriteAllLines(path, lines);
    }

    static void PlotP99(List<Cell> cells, StageMode mode, string path)
    {
        var plot = new ScottPlot.Plot();
        foreach (var group in cells.GroupBy(c => (c.HardwareClasses, c.Variants)))
        {
            var points = group.OrderBy(c => c.Stages).ToList();
            var line = plot.Add.Scatter(points.Select(c => (double)c.Stages).ToArray(), points.Select(c => Math.Log10(c.Percentile(0.99))).ToArray());
            line.LegendText = $"{group.Key.Variants} variants, {group.Key.HardwareClasses} class{(group.Key.HardwareClasses > 1 ? "es" : "")}";
            if (group.Key.HardwareClasses > 1) line.LinePattern = ScottPlot.LinePattern.Dashed;
        }
        plot.Title($"CP-SAT planner, {mode.ToString().ToLowerInvariant()} stages: p99 solve time");
        plot.XLabel("stages");
        plot.YLabel("log10(p99 solve time, ms)");
        plot.ShowLegend(ScottPlot.Edge.Right);
        plot.SavePng(path, 1100, 650);
    }

    static void PrintTable(List<Cell> cells)
    {
        var table = new Table().AddColumns("mode", "classes", "stages", "variants", "p50 ms", "p99 ms", "optimal/feasible/infeasible");
        foreach (var c in cells)
            table.AddRow(c.Mode.ToString().ToLowerInvariant(), $"{c.HardwareClasses}", $"{c.Stages}", $"{c.Variants}", F(c.Percentile(0.5)), F(c.Percentile(0.99)),
                $"{c.Statuses.GetValueOrDefault(PlanStatus.Optimal)}/{c.Statuses.GetValueOrDefault(PlanStatus.Feasible)}/{c.Statuses.GetValueOrDefault(PlanStatus.Infeasible)}");
        AnsiConsole.Write(table);
    }

    static string F(double value) => value.ToString("0.0", CultureInfo.InvariantCulture);
}
