using System.Collections.Concurrent;
using System.CommandLine;
using System.Diagnostics;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Forecasting;
using Adaptive.Core.Planning;
using Adaptive.Core.Workloads;
using Adaptive.Experiments.Live;
using Adaptive.Experiments.Replay;
using Adaptive.Experiments.Replay.Policies;
using Adaptive.Experiments.Workloads;
using Spectre.Console;

namespace Adaptive.Experiments.Commands;

/// <summary>
/// <c>adaptive replay</c>: replays a window of load through the simulated cluster under each policy and
/// compares them. With no arguments: IPA's 20-minute Twitter window on the single-stage ResNet sample, every policy.
/// </summary>
public static class ReplayCommand
{
    public static Command Create()
    {
        var pipeline = new Option<string>("--pipeline") { Description = $"A sample ({string.Join(", ", ReplayPipeline.Samples.Keys)}) or an InferencePipeline manifest", DefaultValueFactory = _ => "resnet" };
        var policies = new Option<string[]>("--policies") { Description = $"Policies to compare: {string.Join(", ", ReplayPolicies.Names)}", DefaultValueFactory = _ => [.. ReplayPolicies.Names], AllowMultipleArgumentsPerToken = true };
        var workload = new Option<string>("--workload") { Description = $"{string.Join(", ", ReplayWorkloads.Names)}", DefaultValueFactory = _ => "twitter" };
        var trace = new Option<string>("--trace") { Description = "The per-second request trace (gzip)", DefaultValueFactory = _ => TwitterTrace.DefaultPath };
        var start = new Option<int>("--start") { Description = "The window's first second in the trace", DefaultValueFactory = _ => WorkloadPatterns.IpaWindowStart };
        var seconds = new Option<int>("--seconds") { Description = "The window's length", DefaultValueFactory = _ => WorkloadPatterns.IpaWindowSeconds };
        var damping = new Option<double>("--damping") { Description = "The trace's counts are divided by this", DefaultValueFactory = _ => WorkloadPatterns.IpaDamping };
        var forecaster = new Option<string?>("--forecaster") { Description = "Override the pipeline's forecaster: last-value, moving-max, ewma-trend, learned" };
        var utilization = new Option<double?>("--target-utilization") { Description = $"Override the pipeline's spec.adaptation.targetUtilization (0.01 to {InferencePipelineValidator.MaxTargetUtilization}; above 1 plans for less than the forecast)" };
        var seed = new Option<int>("--seed") { Description = "Seed of arrivals, service times and synthetic workloads: the same seed gives the same run", DefaultValueFactory = _ => 1 };
        var podStart = new Option<double>("--pod-start-seconds") { Description = "Seconds before a new replica loads its model", DefaultValueFactory = _ => 5 };
        var output = new Option<string>("--out") { Description = "Directory for the report, CSVs and plots", DefaultValueFactory = _ => "replay-report" };
        var hpaTarget = new Option<double>("--hpa-target") { Description = "The utilization the hpa baseline scales to (0.01 to 1)", DefaultValueFactory = _ => HpaPolicy.DefaultTarget };
        var scrapeSeconds = new Option<int>("--scrape-seconds") { Description = "How often Prometheus scrapes the routers (the chart's routerMonitor.interval), in the simulation or --live: every policy reads the load through it", DefaultValueFactory = _ => ArrivalHistory.OperatorScrapeSeconds };
        var hopMs = new Option<double>("--hop-ms") { Description = "What the router and HTTP add to a request at every stage, ms (replay --live measures it)", DefaultValueFactory = _ => ReplayPipeline.DefaultHopMs };
        var isoCost = new Option<bool>("--iso-cost") { Description = "Add, for each of ipa and infadapter (P) and each baseline (B), a row P@B: P with its cost weight tuned so that it spends what B spends (-5 % to +2 %)" };
        var live = new Option<bool>("--live") { Description = $"Run for real on this machine (zoo ResNets as model-server processes, a router, Prometheus) and compare with the simulator; defaults: {string.Join(",", LiveDefaults.Policies)}, {LiveDefaults.Seconds} s from {LiveDefaults.Start}, damping {LiveDefaults.Damping}" };
        var resolution = new Option<int>("--resolution") { Description = "With --live: input size of the ResNets served", DefaultValueFactory = _ => 96 };
        var sloMs = new Option<double>("--slo-ms") { Description = "With --live: the pipeline's latency SLO", DefaultValueFactory = _ => 150 };
        var maxReplicas = new Option<int>("--max-replicas") { Description = "With --live: most replica processes at once", DefaultValueFactory = _ => 3 };
        var profileSeconds = new Option<double>("--profile-seconds") { Description = "With --live: how long each model is profiled at each batch size and number of busy copies", DefaultValueFactory = _ => 2 };
        var calibrationSeconds = new Option<int>("--calibration-seconds") { Description = "With --live: how long each load of the calibration at load is measured, after serving it half as long again", DefaultValueFactory = _ => 10 };
        var poolStarts = new Option<int[]>("--pool-starts") { Description = $"Replay copies of the pipeline, one on each of these windows of the trace, sharing a pool (policies {string.Join(", ", ReplayPoolCommand.Policies)})", AllowMultipleArgumentsPerToken = true };
        var poolGpus = new Option<int>("--pool-gpus") { Description = "With --pool-starts: the replicas of --pool-class the pipelines share", DefaultValueFactory = _ => 2 };
        var poolClass = new Option<string>("--pool-class") { Description = "With --pool-starts: the hardware class whose replicas the pool holds", DefaultValueFactory = _ => "gpu" };
        var command = new Command("replay", "Replay a load window on a simulated cluster under Adaptive's policies and the baselines, and report")
        {
            pipeline, policies, workload, trace, start, seconds, damping, forecaster, utilization, seed, podStart, hopMs, scrapeSeconds, output, hpaTarget, isoCost, live, resolution, sloMs, maxReplicas, profileSeconds,
            calibrationSeconds, poolStarts, poolGpus, poolClass,
        };
        command.SetAction(parse =>
        {
            if (parse.GetValue(poolStarts) is { Length: > 0 } windows)
                return ReplayPoolCommand.Run(parse.GetValue(pipeline)!, parse.GetValue(poolClass)!, parse.GetValue(poolGpus), windows, parse.GetValue(seconds), parse.GetValue(damping),
                    parse.GetValue(trace)!, parse.GetValue(seed), parse.GetValue(podStart), parse.GetValue(hopMs), parse.GetValue(scrapeSeconds), parse.GetValue(output)!);
            bool isLive = parse.GetValue(live);
            // Live runs in real time: shorter defaults, unless given.
            T Value<T>(Option<T> option, T liveDefault) => isLive && parse.GetResult(option) is null or { Implicit: true } ? liveDefault : parse.GetValue(option)!;
            var settings = new Settings(parse.GetValue(pipeline)!, [.. Value(policies, LiveDefaults.Policies).SelectMany(p => p.Split(',', StringSplitOptions.RemoveEmptyEntries))],
                parse.GetValue(workload)!, parse.GetValue(trace)!, Value(start, LiveDefaults.Start), Value(seconds, LiveDefaults.Seconds), Value(damping, LiveDefaults.Damping),
                parse.GetValue(forecaster), parse.GetValue(utilization), parse.GetValue(seed), parse.GetValue(podStart), parse.GetValue(output)!, parse.GetValue(isoCost), parse.GetValue(hpaTarget), parse.GetValue(hopMs), parse.GetValue(scrapeSeconds));
            if (isLive && parse.GetResult(pipeline) is { Implicit: false })
                return Fail(new PlanningInputException("--pipeline", "--live serves the zoo's ResNets, profiled on this machine; it takes no pipeline"));
            return isLive ? RunLive(settings, new LiveSettings(parse.GetValue(resolution), parse.GetValue(sloMs), parse.GetValue(maxReplicas), 30, settings.Seed, parse.GetValue(profileSeconds), settings.ScrapeSeconds, parse.GetValue(calibrationSeconds))) : Run(settings);
        });
        return command;
    }

    /// <summary>Live defaults: five minutes of IPA's window that hold its rise, at a load this machine's cores can serve.</summary>
    static class LiveDefaults
    {
        public static readonly string[] Policies = ["ipa"];
        public const int Start = WorkloadPatterns.IpaWindowStart + 240;
        public const int Seconds = 300;
        public const double Damping = 6;
    }

    sealed record Settings(string Pipeline, string[] Policies, string Workload, string Trace, int Start, int Seconds, double Damping,
        string? Forecaster, double? TargetUtilization, int Seed, double PodStartSeconds, string Output, bool IsoCost = false, double HpaTarget = HpaPolicy.DefaultTarget,
        double HopMs = ReplayPipeline.DefaultHopMs, int ScrapeSeconds = ArrivalHistory.OperatorScrapeSeconds);

    static int Run(Settings settings)
    {
        try
        {
            var clock = Stopwatch.StartNew();
            if (settings.Policies.Length == 0) throw new PlanningInputException("--policies", "names no policy");
            if (!(settings.PodStartSeconds >= 0)) throw new PlanningInputException("--pod-start-seconds", $"must be 0 or more, got {settings.PodStartSeconds}");
            if (!(settings.HopMs >= 0)) throw new PlanningInputException("--hop-ms", $"must be 0 or more, got {settings.HopMs}");
            if (!(settings.HpaTarget >= 0.01 && settings.HpaTarget <= 1)) throw new PlanningInputException("--hpa-target", $"must be between 0.01 and 1, got {settings.HpaTarget}");
            var scrapes = Scrapes(settings.ScrapeSeconds);
            var pipeline = Override(ReplayPipeline.Load(settings.Pipeline, settings.PodStartSeconds), settings);
            var replay = ReplayWorkloads.Create(settings.Workload, settings.Trace, settings.Start, settings.Seconds, settings.Damping, settings.Seed);
            var workload = replay.Workload;
            var policies = settings.Policies.Distinct().Select(p => ReplayPolicies.Create(p, pipeline, workload.Peak, workload.Mean, settings.HpaTarget)).ToList();
            var options = pipeline.SimulationOptions(settings.Seed, settings.HopMs);

            var runs = new ConcurrentDictionary<string, PolicyRun>();
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            console.Progress().Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn()).Start(progress =>
            {
                var tasks = policies.ToDictionary(p => p.Name, p => progress.AddTask(p.Name, maxValue: ReplayRunner.DecisionCount(p, workload.Seconds)));
                Parallel.ForEach(policies, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, policy =>
                    runs[policy.Name] = ReplayRunner.Run(pipeline, policy, workload, replay.PriorArrivals, options, () => tasks[policy.Name].Increment(1), scrapes));
            });
            var ordered = policies.Select(p => runs[p.Name]).ToList();
            if (settings.IsoCost) ordered.AddRange(IsoCostRows(pipeline, ordered, replay, options, scrapes));

            Write(settings.Output, ordered, workload,
            [
                $"pipeline: {pipeline.Name} ({settings.Pipeline}), SLO {pipeline.Spec.Spec.SloMs} ms, forecaster {pipeline.Spec.Spec.Adaptation.Forecaster}, target utilization {pipeline.Spec.Spec.Adaptation.TargetUtilization}, interval {pipeline.Spec.Spec.Adaptation.IntervalSeconds} s",
                $"workload: {workload.Name}, {workload.Seconds} s, mean {workload.Mean:F1} rps, peak {workload.Peak:F1} rps",
                $"simulation: seed {settings.Seed}, service times fitted to each profile (mean batch / throughput, p99 latency), pod start {settings.PodStartSeconds} s + the model's load time, router hop {settings.HopMs} ms a stage, Prometheus scrapes the router every {settings.ScrapeSeconds} s",
            ]);
            Console.Out.WriteLine($"Report, CSVs and plots in {Path.GetFullPath(settings.Output)} ({clock.Elapsed.TotalSeconds:F1} s)");
            return ExitCodes.Ok;
        }
        catch (PlanningInputException e)
        {
            return Fail(e);
        }
    }

    /// <summary>The scrapes of <c>--scrape-seconds</c>, half an interval into each.</summary>
    internal static ScrapeSchedule Scrapes(int seconds) => seconds is >= 1 and <= 60 ? ScrapeSchedule.Every(seconds)
        : throw new PlanningInputException("--scrape-seconds", $"must be between 1 and 60, got {seconds}");

    /// <summary>For each Adaptive policy run and each baseline run, the Adaptive policy at the baseline's cost (<see cref="IsoCost"/>).</summary>
    static List<PolicyRun> IsoCostRows(ReplayPipeline pipeline, List<PolicyRun> runs, ReplayWorkload replay, Core.Simulation.SimulationOptions options, ScrapeSchedule scrapes)
    {
        string[] adaptive = ["ipa", "infadapter"];
        var pairs = (from p in runs where adaptive.Contains(p.Policy) from b in runs where !adaptive.Contains(b.Policy) select (p.Policy, Baseline: b)).ToList();
        var rows = new PolicyRun[pairs.Count];
        Parallel.For(0, pairs.Count, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount },
            i => rows[i] = IsoCost.Match(pipeline, pairs[i].Policy, pairs[i].Baseline, replay, options, scrapes));
        return [.. rows];
    }

    static int RunLive(Settings settings, LiveSettings live)
    {
        try
        {
            if (live.Resolution is < 32 or > 224) throw new PlanningInputException("--resolution", $"must be between 32 and 224, got {live.Resolution}");
            if (!(live.SloMs > 0)) throw new PlanningInputException("--slo-ms", $"must be greater than 0, got {live.SloMs}");
            if (live.MaxReplicas < 1) throw new PlanningInputException("--max-replicas", $"must be at least 1, got {live.MaxReplicas}");
            if (!(live.ProfileSeconds is > 0 and <= 600)) throw new PlanningInputException("--profile-seconds", $"must be greater than 0 and at most 600, got {live.ProfileSeconds}");
            if (!(live.CalibrationSeconds is >= 1 and <= 600)) throw new PlanningInputException("--calibration-seconds", $"must be between 1 and 600, got {live.CalibrationSeconds}");
            if (settings.Policies.FirstOrDefault(p => !ReplayPolicies.Names.Contains(p)) is { } unknown)
                throw new PlanningInputException("--policies", $"unknown policy '{unknown}'; use {string.Join(", ", ReplayPolicies.Names)}");
            if (PrometheusServer.Binary is null) throw new PlanningInputException("--live", "needs Prometheus: apt-get install prometheus");
            var replay = ReplayWorkloads.Create(settings.Workload, settings.Trace, settings.Start, settings.Seconds, settings.Damping, settings.Seed);
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            CheckOverrides(settings);
            var comparisons = LiveReplay.Run(settings.Policies.Distinct().ToList(), replay, live, pipeline => Override(pipeline, settings),
                line => console.MarkupLineInterpolated($"{line}"), CancellationToken.None).GetAwaiter().GetResult();

            var runs = comparisons.SelectMany(c => new[]
            {
                c.Measured with { Policy = $"{c.Policy} (live)" },
                c.Simulated with { Policy = $"{c.Policy} (simulated)" },
                c.Calibrated with { Policy = $"{c.Policy} (simulated at calibrated times)" },
                c.AtLiveTimes with { Policy = $"{c.Policy} (simulated at live times)" },
            }).ToList();
            Write(settings.Output, runs, replay.Workload,
            [
                $"live: zoo ResNet-18/34/50 at {live.Resolution} px as model-server processes (1 thread each, at most {live.MaxReplicas}), a router and Prometheus on {Environment.ProcessorCount} cores; SLO {live.SloMs} ms",
                $"workload: {replay.Workload.Name}, {replay.Workload.Seconds} s, mean {replay.Workload.Mean:F1} rps, peak {replay.Workload.Peak:F1} rps",
                $"measured replica start-up (process start to ready), used by the simulation: {string.Join(", ", comparisons.Select(c => $"{c.Policy} {c.StartupSeconds:F2} s"))}",
                $"measured router hop, used by the simulation: {comparisons.FirstOrDefault()?.HopMs:F2} ms (the median latency at low load over the model's mean time)",
                comparisons.FirstOrDefault()?.Calibration is { } calibration
                    ? $"calibrated at load before the policies ({calibration.Setup}), used by the simulation at calibrated times: the replicas' calls {LiveReplay.DescribeSlowdowns(calibration.SlowdownWhenBusy)} the simulation's of that load, the request path {calibration.PathMs:F2} ms at the window's mean rate (the live latency less the replicas' wait and call, on a line through the loads')"
                    : "no calibration at load",
                $"measured request path under load (the live mean latency less the replicas' mean wait and call), used by the simulation at live times: {string.Join(", ", comparisons.Select(c => $"{c.Policy} {c.PathMs:F2} ms"))}",
                $"live replicas' own metrics against the simulation's (mean ONNX Runtime call and mean wait in the batching queue: live, simulated, simulated at live times; the slowdown that took; the profile's call for one copy alone): " + string.Join("; ",
                    comparisons.Select(c => $"{c.Policy}: " + string.Join(", ", c.Replicas.Select(r =>
                        $"{r.Group} call {r.Live.MeanCallMs:F1} / {Ms(r.Simulated?.MeanMs)} / {Ms(r.AtLiveTimes?.MeanMs)} ms (×{r.Slowdown:F2}; {r.ProfiledCallMs:F1} alone), " +
                        $"wait {r.Live.MeanQueueWaitMs:F1} / {Ms(r.Simulated?.MeanQueueWaitMs)} / {Ms(r.AtLiveTimes?.MeanQueueWaitMs)} ms, {r.Live.Calls:F0} calls live")))),
                $"the load generator's own delay (how long after its due time each request left; the live latency counts it): {string.Join(", ", comparisons.Select(c => $"{c.Policy} p99 {c.SendLag.P99Ms:F1} ms, at most {c.SendLag.MaxMs:F1} ms"))}",
                $"the replicas share this machine's cores: the simulation runs each batch at its model's profile (each copy behind a model server over REST) measured with as many copies busy at once as replicas are busy (1 to {live.MaxReplicas})",
            ]);
            Console.Out.WriteLine($"Report, CSVs and plots in {Path.GetFullPath(settings.Output)}");
            return ExitCodes.Ok;
        }
        catch (PlanningInputException e)
        {
            return Fail(e);
        }
    }

    /// <summary>The report, CSVs and plots, and the table on standard output.</summary>
    static void Write(string output, IReadOnlyList<PolicyRun> runs, Workload workload, IReadOnlyList<string> settings)
    {
        var summaries = runs.Select(ReplayReport.Summarize).ToList();
        Directory.CreateDirectory(output);
        File.WriteAllText(Path.Combine(output, "report.csv"), ReplayReport.Csv(summaries));
        File.WriteAllText(Path.Combine(output, "timeline.csv"), ReplayReport.TimelineCsv(runs));
        File.WriteAllText(Path.Combine(output, "decisions.csv"), ReplayReport.DecisionsCsv(runs));
        File.WriteAllText(Path.Combine(output, "report.md"), ReplayReport.Markdown(summaries,
            [.. settings, $"command: adaptive {string.Join(' ', Environment.GetCommandLineArgs().Skip(1))}".TrimEnd()]));
        ReplayPlots.Write(output, runs);
        PrintTable(summaries, workload);
    }

    static string Ms(double? value) => value is { } ms ? ms.ToString("F1", System.Globalization.CultureInfo.InvariantCulture) : "none";

    static int Fail(PlanningInputException e)
    {
        Console.Error.WriteLine($"adaptive replay: {e.Message}");
        return ExitCodes.InvalidInput;
    }

    static void CheckOverrides(Settings settings)
    {
        if (settings.Forecaster is { } name)
        {
            try { LoadForecasters.Create(name); }
            catch (ArgumentException e) { throw new PlanningInputException("--forecaster", e.Message); }
        }
        if (settings.TargetUtilization is { } u && !(u >= 0.01 && u <= InferencePipelineValidator.MaxTargetUtilization))
            throw new PlanningInputException("--target-utilization", $"must be between 0.01 and {InferencePipelineValidator.MaxTargetUtilization}, got {u}");
    }

    /// <summary>The pipeline with the adaptation settings given on the command line.</summary>
    static ReplayPipeline Override(ReplayPipeline pipeline, Settings settings)
    {
        CheckOverrides(settings);
        return new ReplayPipeline(pipeline.Derive(spec =>
        {
            spec.Adaptation.Forecaster = settings.Forecaster ?? spec.Adaptation.Forecaster;
            spec.Adaptation.TargetUtilization = settings.TargetUtilization ?? spec.Adaptation.TargetUtilization;
        }), pipeline.PodStartSeconds) { SharedMachineProfiles = pipeline.SharedMachineProfiles };
    }

    static void PrintTable(IReadOnlyList<PolicySummary> summaries, Workload workload)
    {
        var table = new Table().Title(Markup.Escape($"{workload.Name}: {workload.Seconds} s, mean {workload.Mean:F1} rps, peak {workload.Peak:F1} rps"))
            .AddColumns("policy", "requests", "SLO violations", "p50 ms", "p99 ms", "accuracy", "cost", "reconfigurations", "decision ms (mean/max)");
        foreach (var s in summaries)
            table.AddRow(s.Policy, $"{s.Requests}", ReplayReport.Percent(s.ViolationRate), ReplayReport.F(s.P50Ms), ReplayReport.F(s.P99Ms),
                $"{s.Accuracy:F4}", ReplayReport.F(s.Cost), $"{s.Reconfigurations}", $"{ReplayReport.F(s.MeanDecisionMs)}/{ReplayReport.F(s.MaxDecisionMs)}");
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Out) });
        if (Console.IsOutputRedirected) console.Profile.Width = 160; // a file or pipe gets the whole table, unwrapped
        console.Write(table);
        foreach (var s in summaries.Where(s => s.Tuning is not null))
            console.WriteLine($"{s.Policy}: {s.Tuning}");
    }
}
