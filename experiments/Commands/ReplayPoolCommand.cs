using System.Diagnostics;
using System.Globalization;
using System.Text;
using Adaptive.Core.Planning;
using Adaptive.Experiments.Replay;
using Adaptive.Experiments.Replay.Policies;
using Adaptive.Experiments.Replay.SharedPool;
using Spectre.Console;

namespace Adaptive.Experiments.Commands;

/// <summary>
/// <c>adaptive replay --pool-starts S1 S2 … --pool-gpus G</c>: copies of a pipeline, each on its own window of the trace,
/// sharing a pool of G replicas of one hardware class, under joint planning (the operator's InferencePool), per-pipeline
/// planning within static quotas of the pool (an equal split, as people split a cluster today), and hpa.
/// </summary>
public static class ReplayPoolCommand
{
    public static readonly IReadOnlyList<string> Policies = ["joint", "quota", "hpa"];
    const string Pool = "pool";

    /// <param name="poolClass">The hardware class whose replicas the pool holds.</param>
    public static int Run(string pipelineName, string poolClass, int gpus, IReadOnlyList<int> starts, int seconds, double damping, string trace, int seed,
        double podStartSeconds, double hopMs, int scrapeSeconds, string output)
    {
        try
        {
            var clock = Stopwatch.StartNew();
            if (starts.Count < 2) throw new PlanningInputException("--pool-starts", $"a pool is shared by 2 pipelines or more; got {starts.Count} window(s)");
            if (gpus < 0) throw new PlanningInputException("--pool-gpus", $"must be 0 or more, got {gpus}");
            var scrapes = ReplayCommand.Scrapes(scrapeSeconds);
            var members = starts.Select((start, i) =>
            {
                var pipeline = ReplayPipeline.Load(pipelineName, podStartSeconds);
                if (pipeline.Spec.Spec.HardwareClasses.All(c => c.Name != poolClass))
                    throw new PlanningInputException("--pool-class", $"the pipeline has no hardware class '{poolClass}'; it has {string.Join(", ", pipeline.Spec.Spec.HardwareClasses.Select(c => c.Name))}");
                pipeline.Spec.Metadata.Name = $"w{start}";
                return new PoolMemberReplay(pipeline, ReplayWorkloads.Create("twitter", trace, start, seconds, damping, seed));
            }).ToList();
            var options = members.Select((m, i) => m.Pipeline.SimulationOptions(seed + i, hopMs)).ToList();
            var policies = new IPoolPolicy[]
            {
                new JointPoolPolicy([.. members.Select(m => m.Pipeline.Derive(spec =>
                {
                    spec.Stages.ForEach(s => s.Mode = "single");
                    spec.HardwareClasses.Single(c => c.Name == poolClass).Pool = Pool;
                }))], Pool, gpus),
                new SeparatePolicies("quota", [.. members.Select((m, i) => new PlannerPolicy("quota", m.Pipeline.Derive(spec =>
                {
                    spec.Stages.ForEach(s => s.Mode = "single");
                    var pooled = spec.HardwareClasses.Single(c => c.Name == poolClass);
                    pooled.MaxReplicas = Math.Min(pooled.MaxReplicas ?? int.MaxValue, Quota(gpus, members.Count, i));
                })))]),
                new SeparatePolicies("hpa", [.. members.Select(m => new HpaPolicy(m.Pipeline.Spec))]),
            };
            var runs = new PoolRun[policies.Length];
            Parallel.For(0, policies.Length, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount },
                i => runs[i] = PoolReplay.Run(members, policies[i], options, scrapes));
            var summaries = runs.Select(r => PoolReplay.Summarize(r, poolClass, gpus)).ToList();

            Directory.CreateDirectory(output);
            var windows = members.Select(m => $"{m.Pipeline.Name} (mean {m.Replay.Workload.Mean:F1}, peak {m.Replay.Workload.Peak:F1} rps)").ToList();
            File.WriteAllText(Path.Combine(output, "pool.csv"), Csv(summaries));
            File.WriteAllText(Path.Combine(output, "pool.md"), Markdown(summaries, members.Count,
            [
                $"pipeline: {pipelineName}, {members.Count} copies sharing {gpus} replicas of class '{poolClass}'; quota: {string.Join("/", Enumerable.Range(0, members.Count).Select(i => Quota(gpus, members.Count, i)))}",
                $"windows: {string.Join(", ", windows)}; {seconds} s each, damping {damping}",
                $"simulation: seed {seed} (+ the member's index), pod start {podStartSeconds} s + the model's load time, router hop {hopMs} ms a stage, Prometheus scrapes the routers every {scrapeSeconds} s",
                $"command: adaptive {string.Join(' ', Environment.GetCommandLineArgs().Skip(1))}".TrimEnd(),
            ]));
            var table = new Table().AddColumns(["policy", "requests", "SLO violations", "p99 ms", "accuracy", "cost", "pool held", "over-committed s", .. members.Select(m => $"{m.Pipeline.Name} violations")]);
            foreach (var s in summaries)
                table.AddRow([s.Policy, $"{s.Requests}", ReplayReport.Percent(s.ViolationRate), ReplayReport.F(s.P99Ms), $"{s.Accuracy:F4}", ReplayReport.F(s.Cost),
                    ReplayReport.Percent(s.PoolHeld), $"{s.OverCommittedSeconds}", .. s.MemberViolationRates.Select(ReplayReport.Percent)]);
            AnsiConsole.Write(table);
            Console.Out.WriteLine($"Report in {Path.GetFullPath(output)} ({clock.Elapsed.TotalSeconds:F1} s)");
            return ExitCodes.Ok;
        }
        catch (PlanningInputException e)
        {
            Console.Error.WriteLine($"adaptive replay: {e.Message}");
            return ExitCodes.InvalidInput;
        }
    }

    /// <summary>Member <paramref name="index"/>'s share of an equal split, the remainder to the first members.</summary>
    public static int Quota(int capacity, int members, int index) => capacity / members + (index < capacity % members ? 1 : 0);

    static string Csv(IReadOnlyList<PoolSummary> summaries)
    {
        var text = new StringBuilder("policy,requests,violation_rate,p99_ms,accuracy,cost,pool_held,over_committed_seconds,member_violation_rates\n");
        foreach (var s in summaries)
            text.AppendLine(string.Join(',', s.Policy, s.Requests, R(s.ViolationRate), R(s.P99Ms), R(s.Accuracy), R(s.Cost), R(s.PoolHeld), s.OverCommittedSeconds,
                string.Join(';', s.MemberViolationRates.Select(R))));
        return text.ToString();
    }

    static string Markdown(IReadOnlyList<PoolSummary> summaries, int members, IReadOnlyList<string> settings)
    {
        var text = new StringBuilder("# Shared-pool replay\n\n");
        foreach (var line in settings) text.AppendLine($"- {line}");
        text.AppendLine().AppendLine($"| policy | SLO violations | p99 ms | accuracy | cost | pool held | over-committed s | {string.Join(" | ", Enumerable.Range(1, members).Select(i => $"member {i} violations"))} |");
        text.AppendLine($"|---|---:|---:|---:|---:|---:|---:|{string.Concat(Enumerable.Repeat("---:|", members))}");
        foreach (var s in summaries)
            text.AppendLine($"| {s.Policy} | {ReplayReport.Percent(s.ViolationRate)} | {ReplayReport.F(s.P99Ms)} | {s.Accuracy:F4} | {s.Cost:F0} | {ReplayReport.Percent(s.PoolHeld)} | {s.OverCommittedSeconds} | {string.Join(" | ", s.MemberViolationRates.Select(ReplayReport.Percent))} |");
        return text.ToString();
    }

    static string R(double value) => value.ToString("0.######", CultureInfo.InvariantCulture);
}
