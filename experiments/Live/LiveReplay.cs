using System.Diagnostics;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Forecasting;
using Adaptive.Core.Planning;
using Adaptive.Core.Simulation;
using Adaptive.Core.Workloads;
using Adaptive.Experiments.Bench;
using Adaptive.Experiments.Profiling;
using Adaptive.Experiments.Replay;
using Adaptive.Experiments.Replay.Policies;
using Adaptive.Experiments.Zoo;
using Adaptive.ModelServer.Backend;
using Adaptive.Operator.Metrics;

namespace Adaptive.Experiments.Live;

/// <param name="Resolution">Input size of the zoo ResNets served.</param>
/// <param name="MaxReplicas">Most replica processes at once: this machine's cores bound it.</param>
/// <param name="ProfileSeconds">How long each model is profiled at each batch size and number of busy copies.</param>
/// <param name="ScrapeSeconds">How often the live Prometheus scrapes the router (<c>--scrape-seconds</c>).</param>
/// <param name="CalibrationSeconds">How long each load of the calibration at load is measured, after serving it for half as long again (<c>--calibration-seconds</c>).</param>
public sealed record LiveSettings(int Resolution, double SloMs, int MaxReplicas, int IntervalSeconds, int Seed, double ProfileSeconds, int ScrapeSeconds,
    int CalibrationSeconds);

/// <summary>One policy run for real and in the simulator on the same pipeline, window and seed.</summary>
/// <param name="StartupSeconds">Measured mean time from a replica's process start to its serving; the simulation uses it.</param>
/// <param name="HopMs">What the router and HTTP add to a request at low load, measured; the simulation adds it at the stage.</param>
/// <param name="Replicas">What the live replicas measured themselves, by variant and batch: where the live run's time went.</param>
/// <param name="Calibrated">The simulation at the times the rig measured at load before the window (<see cref="Calibration"/>).</param>
/// <param name="AtLiveTimes">The simulation at the live run's own times: the replicas' calls and the request path's (<see cref="LiveReplay.AtLiveTimes"/>).</param>
/// <param name="PathMs">What the request path took live outside the replicas' queues and calls (<see cref="LiveReplay.PathMs"/>); the simulation at live times adds it at the stage.</param>
/// <param name="SendLag">How late the load generator sent the window's requests: its own delay, which the live latency counts.</param>
public sealed record LiveComparison(string Policy, PolicyRun Measured, PolicyRun Simulated, PolicyRun Calibrated, PolicyRun AtLiveTimes, double StartupSeconds,
    double HopMs, LoadCalibration Calibration, double PathMs, IReadOnlyList<LiveReplicaTimes> Replicas, SendLag SendLag);

/// <summary>The 99th percentile and the largest of how long after its due time the load generator sent each request, ms.</summary>
public sealed record SendLag(double P99Ms, double MaxMs)
{
    public static SendLag Of(IReadOnlyList<double> lagsMs)
    {
        var sorted = lagsMs.Order().ToList();
        return new SendLag(Percentiles.Of(sorted, 0.99), sorted.Count == 0 ? double.NaN : sorted[^1]);
    }
}

/// <summary>
/// What the rig measured at load before the window (<see cref="LiveReplay.Calibrate"/>), for a simulation that predicts the live
/// run instead of fitting it: nothing from the window goes in.
/// </summary>
/// <param name="SlowdownWhenBusy">Per number of copies busy (1, 2, …), how many times longer the replicas' calls took than the simulation's of the same load (<see cref="ReplayPipeline.SlowdownWhenBusy"/>).</param>
/// <param name="PathMs">What the request path took outside the replicas' queues and calls (<see cref="LiveReplay.PathMs"/>) at the window's mean rate.</param>
public sealed record LoadCalibration(IReadOnlyList<double> SlowdownWhenBusy, double PathMs)
{
    /// <summary>What was served to measure it, in words.</summary>
    public string Setup { get; init; } = "";
}

/// <summary>One steady load of the calibration: its rate, its requests and what its replicas, all of one group, measured themselves over it.</summary>
public sealed record CalibrationPhase(double Rps, IReadOnlyList<RequestRecord> Records, ReplicaTimes Replicas);

/// <summary>
/// A live group's ONNX Runtime calls and queue waits, from its replicas' metrics, beside the same group's in the simulation and in
/// the simulation at live times (null where it did not run there), its profile's mean call for one copy alone, and the
/// slowdown the simulation at live times gave it.
/// </summary>
public sealed record LiveReplicaTimes(string Group, ReplicaTimes Live, GroupCalls? Simulated, GroupCalls? AtLiveTimes, double ProfiledCallMs, double Slowdown);

/// <summary>
/// <c>adaptive replay --live</c>: the replay's loop on this machine. The zoo's ResNet-18/34/50 are written and
/// profiled through model servers over REST; each policy then runs the window against real
/// model-server processes behind a real router, deciding every interval from the router's arrival rate in a
/// real Prometheus, while an open-loop generator sends the load. The same window, policy and profiles then
/// go through the simulator, with the measured start-up time, to say how far the simulator is from reality; again at the times
/// the rig measured at load before the window (<see cref="Calibrate"/>), to say how far a simulation given a measurement at load
/// gets; and once more at the times the live run had (<see cref="AtLiveTimes"/>), to say how much of what is left is the
/// simulator and how much its inputs.
/// </summary>
public static class LiveReplay
{
    public const string PipelineName = "live";
    const string Stage = "classify";
    static readonly int[] Depths = [18, 34, 50];
    static readonly int[] Batches = [1, 2, 4];

    /// <param name="configure">Applies the command line's adaptation settings (forecaster, target utilization) to the profiled pipeline.</param>
    public static async Task<IReadOnlyList<LiveComparison>> Run(IReadOnlyList<string> policies, ReplayWorkload replay, LiveSettings settings,
        Func<ReplayPipeline, ReplayPipeline> configure, Action<string> log, CancellationToken cancellation)
    {
        string models = Directory.CreateTempSubdirectory("adaptive-live-models-").FullName;
        try
        {
            var pipeline = configure(Profile(models, settings, log));
            double hopMs = await MeasureHop(pipeline, settings, cancellation);
            log($"the router and HTTP add {hopMs:F2} ms to a request at low load");
            var calibration = await CalibrateAtLoad(pipeline, replay.Workload.Mean, settings, cancellation);
            log($"at load the replicas' calls took {DescribeSlowdowns(calibration.SlowdownWhenBusy)} the simulation's and the request path {calibration.PathMs:F2} ms");
            var comparisons = new List<LiveComparison>();
            foreach (string name in policies)
            {
                log($"{name}: {replay.Workload.Seconds} s live");
                var (measured, startup, scrapePhase, replicas, sendLag) = await RunLive(pipeline, name, replay, settings, cancellation);
                PolicyRun Simulate(IReadOnlyDictionary<(string Variant, int Batch), double>? slowdown, double hopMs, IReadOnlyList<double>? slowdownWhenBusy = null)
                {
                    var simulatedPipeline = Slowed(pipeline, Math.Max(0, startup - pipeline.Spec.Spec.Stages[0].Variants.Average(v => v.Profiles[0].LoadTimeSeconds)), slowdown, slowdownWhenBusy);
                    var policy = ReplayPolicies.Create(name, simulatedPipeline, replay.Workload.Peak, replay.Workload.Mean);
                    return ReplayRunner.Run(simulatedPipeline, policy, replay.Workload, replay.PriorArrivals,
                        simulatedPipeline.SimulationOptions(settings.Seed, hopMs), scrapes: new ScrapeSchedule(settings.ScrapeSeconds, scrapePhase));
                }
                var simulated = Simulate(null, hopMs);
                var calibrated = Simulate(null, calibration.PathMs, calibration.SlowdownWhenBusy);
                double pathMs = PathMs(measured.Result.Requests, replicas.Values);
                var liveCalls = replicas.Where(r => r.Value.Calls > 0).ToDictionary(r => r.Key, r => r.Value.MeanCallMs);
                var (atLiveTimes, slowdown) = AtLiveTimes(s => Simulate(s, pathMs), Simulate(null, pathMs), liveCalls);
                comparisons.Add(new LiveComparison(name, measured, simulated, calibrated, atLiveTimes, startup, hopMs, calibration, pathMs,
                    Describe(pipeline, replicas, simulated, atLiveTimes, slowdown), sendLag));
            }
            return comparisons;
        }
        finally
        {
            Directory.Delete(models, recursive: true);
        }
    }

    /// <summary>
    /// Writes the zoo models and measures them into a one-stage pipeline of this machine's profiles, each through model
    /// servers on loopback over REST, as the router reaches the replicas, so that the throughput counts what HTTP costs a
    /// replica's cores (two copies of resnet50 busy: 87–99 requests/s over REST, 91–107 in process; README, "Live"). The
    /// policies plan with each model measured alone; the simulation also gets each measured with 2, 3, … copies busy at
    /// once, since the replicas share this machine's cores.
    /// </summary>
    static ReplayPipeline Profile(string directory, LiveSettings settings, Action<string> log)
    {
        var zoo = ModelZoo.Write(directory, settings.Resolution, Depths, ModelZoo.DefaultSeed);
        var variants = new List<VariantSpec>();
        var shared = new Dictionary<string, IReadOnlyList<IReadOnlyList<ProfilePoint>>>();
        foreach (var model in zoo.Models)
        {
            var profiles = Enumerable.Range(1, settings.MaxReplicas).Select(replicas => Profiler.Profile(Path.Combine(directory, model.File),
                new ProfileOptions(Batches, 1, Device.Cpu, TimeSpan.FromSeconds(settings.ProfileSeconds)) { Replicas = replicas, Transport = ProfileTransport.Rest }, log)).ToList();
            var profile = profiles[0];
            for (int busy = 1; busy <= profiles.Count; busy++)
                log($"profiled {profile.Name} with {busy} busy: " + string.Join(", ", profiles[busy - 1].Batches.Select(b => $"batch {b.Batch} p99 {b.P99Ms:F1} ms {b.ThroughputRps:F0} rps")));
            shared[profile.Name] = [.. profiles.Select(p => (IReadOnlyList<ProfilePoint>)[.. p.Batches.Select(b => new ProfilePoint(b.Batch, b.P99Ms, b.ThroughputRps))])];
            variants.Add(new VariantSpec
            {
                Name = profile.Name,
                ModelUri = "file://" + profile.Path,
                Accuracy = profile.Accuracy ?? model.Top1Accuracy / 100,
                Profiles = [new VariantProfileSpec
                {
                    HardwareClass = "cpu",
                    LoadTimeSeconds = profile.LoadTimeSeconds,
                    Threads = 1,
                    Batches = [.. profile.Batches.Select(b => new BatchProfileSpec { Batch = b.Batch, LatencyMs = b.P99Ms, ThroughputRps = b.ThroughputRps })],
                }],
            });
        }
        var spec = new InferencePipeline
        {
            ApiVersion = InferencePipeline.ApiVersionString,
            Kind = InferencePipeline.KindName,
            Metadata = new ObjectMetadata { Name = PipelineName },
            Spec = new InferencePipelineSpec
            {
                SloMs = settings.SloMs,
                Objective = new ObjectiveSpec { AccuracyMethod = "sum", Weights = new WeightsSpec { Accuracy = 1, Cost = 0.003, Batch = 0.0005, Loading = 0.05 } },
                HardwareClasses = [new HardwareClassSpec { Name = "cpu", CostPerReplica = 1, MaxReplicas = settings.MaxReplicas }],
                Stages = [new StageSpec { Name = Stage, Mode = "mixed", BatchSizes = [.. Batches], MinReplicas = 1, MaxReplicas = settings.MaxReplicas, MaxQueueDelayMs = 5, Variants = variants }],
                Adaptation = new AdaptationSpec { IntervalSeconds = settings.IntervalSeconds },
            },
        };
        return new ReplayPipeline(spec, podStartSeconds: 0) { SharedMachineProfiles = shared };
    }

    static LiveCluster Cluster(ReplayPipeline pipeline, LiveSettings settings)
    {
        var stage = pipeline.Spec.Spec.Stages[0];
        return new LiveCluster(new LiveClusterOptions(PipelineName, Stage,
            stage.Variants.ToDictionary(v => v.Name, v => new Uri(v.ModelUri).LocalPath), settings.SloMs, stage.MaxQueueDelayMs ?? StageSpec.DefaultMaxQueueDelayMs,
            TimeSpan.FromSeconds(settings.ScrapeSeconds)));
    }

    /// <summary>The load generator's requests: one image, binary tensor data.</summary>
    static LoadGenerator Generator(LiveCluster cluster, LiveSettings settings, int maxInFlight)
    {
        long[] shape = [1, 3, settings.Resolution, settings.Resolution];
        var data = new float[shape.Aggregate(1L, (a, b) => a * b)];
        for (int i = 0; i < data.Length; i++) data[i] = i % 255 / 255f;
        return new LoadGenerator(cluster.RouterAddress, PipelineName, V2Requests.Binary(ResNet.InputName, shape, data),
            V2Requests.BinaryHeader(ResNet.InputName, shape, data).Length, settings.SloMs, maxInFlight);
    }

    /// <summary>
    /// How long the cluster serves the window's first rate before the window, as a warm-up. At a steady 160 requests/s on two
    /// replicas, 5 s left the processes slower in the window's first 10 s than after: 1.4–1.8 % of those requests missed live,
    /// none simulated; after 15 s, none missed (README, "Live").
    /// </summary>
    const int ClusterWarmUpSeconds = 15;

    /// <summary>How long the simulation of each of the calibration's steady loads runs: at their 77–136 requests/s here, 9,000–16,000 calls.</summary>
    const int CalibrationSimulationSeconds = 120;

    /// <summary>
    /// How busy each phase of the calibration keeps its replicas, by the profile for that many copies busy: busy enough that
    /// they are often busy at once, with room for the Poisson bursts of a steady load.
    /// </summary>
    const double CalibrationUtilization = 0.7;

    /// <summary>Requests per second of the hop measurement: low enough that none waits for another.</summary>
    const double HopMeasurementRps = 4;

    /// <summary>
    /// Requests per second, for 4 s, that warm the request path up before the hop is measured. Until .NET's tiered JIT has
    /// compiled the router's, the server's and the generator's code for speed, a request takes longer: measured cold, the hop
    /// came to 6.3–7.8 ms; after this, 1.7–4.2 ms, as at 160 requests/s outside the replicas (p50 3.2–3.8 ms; README, "Live").
    /// </summary>
    const double HopWarmUpRps = 60;

    /// <summary>
    /// What the request path adds to the model's time: one replica of the fastest variant at batch 1 behind the router,
    /// warmed up, then 12 s at <see cref="HopMeasurementRps"/>, the median latency after the first 2 s less the profile's
    /// mean time of one request.
    /// </summary>
    static async Task<double> MeasureHop(ReplayPipeline pipeline, LiveSettings settings, CancellationToken cancellation)
    {
        var fastest = pipeline.Spec.Spec.Stages[0].Variants.Select(v => (v.Name, Point: v.Profiles[0].Batches.First(b => b.Batch == 1)))
            .MinBy(v => v.Point.LatencyMs);
        await using var cluster = Cluster(pipeline, settings);
        await cluster.Start(new StagePlan(Stage, [new Allocation(fastest.Name, "cpu", 1, 1, HopMeasurementRps)]), warmUp: null, cancellation);
        var generator = Generator(cluster, settings, maxInFlight: 16);
        await generator.Run(WorkloadPatterns.Steady(HopWarmUpRps, 4), settings.Seed + 1, Stopwatch.StartNew(), cancellation);
        var records = await generator.Run(WorkloadPatterns.Steady(HopMeasurementRps, 12), settings.Seed, Stopwatch.StartNew(), cancellation);
        var latencies = records.Where(r => r.Served && r.ArrivalSeconds >= 2).Select(r => r.LatencyMs).Order().ToList();
        if (latencies.Count == 0) throw new InvalidOperationException("no request was served while measuring the router's hop");
        return Math.Max(0, Percentiles.Of(latencies, 0.5) - 1000 / fastest.Point.ThroughputRps);
    }

    /// <summary>
    /// The policy on real processes. Returns the run, the replicas' mean start-up time, when in each scrape interval from the
    /// window's start Prometheus scraped, what the replicas measured themselves, and how late the generator sent.
    /// </summary>
    static async Task<(PolicyRun Run, double StartupSeconds, int ScrapePhaseSeconds, IReadOnlyDictionary<(string Variant, int Batch), ReplicaTimes> Replicas, SendLag SendLag)> RunLive(
        ReplayPipeline pipeline, string name, ReplayWorkload replay, LiveSettings settings, CancellationToken cancellation)
    {
        var policy = ReplayPolicies.Create(name, pipeline, replay.Workload.Peak, replay.Workload.Mean);
        var stage = pipeline.Spec.Spec.Stages[0];
        await using var cluster = Cluster(pipeline, settings);
        var first = policy.Decide(new PolicyContext(0, new CountedLoadHistory(replay.PriorArrivals, ScrapeSchedule.Every(settings.ScrapeSeconds)), null))!;
        var running = first.Plan!;
        // A cluster in the middle of its life has served before the window: its router and replicas are past their first requests,
        // as the simulation's are. Without it, both policies missed 0.3–1.3 % of the window's first 10 s live (none simulated).
        await cluster.Start(running[0], () => Generator(cluster, settings, maxInFlight: 64)
            .Run(WorkloadPatterns.Steady(replay.Workload.RatePerSecond[0], ClusterWarmUpSeconds), settings.Seed + 1, Stopwatch.StartNew(), cancellation), cancellation);
        var decisions = new List<DecisionRecord> { new(0, first.PredictedRps, first.SolveMs, false, running) };
        var generator = Generator(cluster, settings, maxInFlight: 512);

        var clock = Stopwatch.StartNew();
        var started = DateTimeOffset.UtcNow;
        var samples = new List<SecondSample>();
        var load = generator.Run(replay.Workload, settings.Seed, clock, cancellation);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        var prometheus = new PrometheusClient(http, cluster.Prometheus!.Address);
        for (int second = 0; second < replay.Workload.Seconds; second++)
        {
            double wait = second - clock.Elapsed.TotalSeconds;
            if (wait > 0) await Task.Delay(TimeSpan.FromSeconds(wait), cancellation);
            var replicas = cluster.Replicas();
            samples.Add(new SecondSample(replicas.Values.Sum(), replicas));
            if (second == 0 || second % policy.IntervalSeconds != 0) continue;
            var history = new PrometheusLoadHistory(prometheus, PipelineName, DateTimeOffset.UtcNow, replay.PriorArrivals, settings.ScrapeSeconds);
            if (policy.Decide(new PolicyContext(second, history, running)) is not { } decision) continue;
            bool reconfigured = decision.Plan is { } plan && ReplayRunner.Describe(plan) != ReplayRunner.Describe(running);
            if (decision.Plan is { } next)
            {
                running = next;
                await cluster.Apply(next[0], cancellation);
            }
            decisions.Add(new DecisionRecord(second, decision.PredictedRps, decision.SolveMs, reconfigured, running));
        }
        var records = await load;
        var replicaTimes = await cluster.CollectReplicaTimes();
        var result = Measured(records, decisions, stage, samples, replay.Workload.Seconds);
        double startup = cluster.StartupSeconds.Count == 0 ? 0 : cluster.StartupSeconds.Average();
        return (new PolicyRun(name, result, decisions), startup, ScrapePhase(await cluster.Prometheus!.LastScrape() - started, settings.ScrapeSeconds), replicaTimes,
            SendLag.Of(generator.SendLagsMs));
    }

    /// <summary>
    /// The rig at load, before the policies run (<see cref="Calibrate"/>): the fixed-variant baselines' variant at batch 1 on 1,
    /// then 2, … replicas (as many as cores), each phase at <see cref="CalibrationUtilization"/> of what that many copies busy
    /// sustain by the profiles, served for 1.5 × <see cref="LiveSettings.CalibrationSeconds"/>, rounded down (by default the cluster's
    /// <see cref="ClusterWarmUpSeconds"/>) and then measured for <see cref="LiveSettings.CalibrationSeconds"/>.
    /// Measured first at the window's first rate (31 requests/s on one replica), the request path took 3.1–3.3 ms against
    /// 5.5–8.3 ms over the window, and one slowdown for every number of copies busy made hpa's lone replica at 150–170 s miss
    /// about twice what it did live (one copy busy measured ×1.00 since, two ×1.08): the path's time and its CPU's toll on the
    /// replicas grow with how busy the cores are. The path is taken at <paramref name="meanRps"/>, the window's mean rate.
    /// </summary>
    static async Task<LoadCalibration> CalibrateAtLoad(ReplayPipeline pipeline, double meanRps, LiveSettings settings, CancellationToken cancellation)
    {
        var variant = ReplayPipeline.FixedVariant(pipeline.Spec.Spec.Stages[0]);
        var whenBusy = pipeline.SharedMachineProfiles![variant.Name];
        var loads = Enumerable.Range(1, Math.Min(Environment.ProcessorCount, whenBusy.Count)).Select(replicas => (
            Plan: (IReadOnlyList<StagePlan>)[new StagePlan(Stage, [new Allocation(variant.Name, "cpu", replicas, 1, 1)])],
            Rps: CalibrationUtilization * replicas * whenBusy[replicas - 1].First(b => b.Batch == 1).Throughput)).ToList();
        var phases = new List<CalibrationPhase>();
        foreach (var (plan, rps) in loads) phases.Add(await MeasureAtLoad(pipeline, plan[0], rps, settings, cancellation));
        var calibration = Calibrate(phases, meanRps, (slowdownWhenBusy, phase) =>
        {
            var simulated = Slowed(pipeline, podStartSeconds: 0, slowdown: null, slowdownWhenBusy);
            return ClusterSimulator.Run(simulated.Simulate(loads[phase].Plan), WorkloadPatterns.Steady(loads[phase].Rps, CalibrationSimulationSeconds),
                simulated.SimulationOptions(settings.Seed, hopMs: 0)).Calls.Values.SingleOrDefault();
        });
        return calibration with
        {
            Setup = $"{variant.Name} at batch 1 on " + string.Join(", then ", loads.Select(l => $"{l.Plan[0].Allocations[0].Replicas} at {l.Rps:F0} requests/s")) +
                $" ({CalibrationUtilization:P0} busy by the profiles), each measured for {settings.CalibrationSeconds} s after {3 * settings.CalibrationSeconds / 2} s",
        };
    }

    /// <summary><paramref name="plan"/> served <paramref name="rps"/> for 1.5 × <see cref="LiveSettings.CalibrationSeconds"/>, then measured for as long as that setting.</summary>
    static async Task<CalibrationPhase> MeasureAtLoad(ReplayPipeline pipeline, StagePlan plan, double rps, LiveSettings settings, CancellationToken cancellation)
    {
        await using var cluster = Cluster(pipeline, settings);
        // The cluster counts the replicas' own times from the end of its warm-up, as for the window.
        await cluster.Start(plan, () => Generator(cluster, settings, maxInFlight: 64)
            .Run(WorkloadPatterns.Steady(rps, 3 * settings.CalibrationSeconds / 2), settings.Seed + 2, Stopwatch.StartNew(), cancellation), cancellation);
        var records = await Generator(cluster, settings, maxInFlight: 64)
            .Run(WorkloadPatterns.Steady(rps, settings.CalibrationSeconds), settings.Seed + 3, Stopwatch.StartNew(), cancellation);
        var times = await cluster.CollectReplicaTimes();
        return new CalibrationPhase(rps, records, times.GetValueOrDefault((plan.Allocations[0].Variant, plan.Allocations[0].Batch)) ?? new ReplicaTimes(0, 0, 0, 0));
    }

    /// <summary>The profiled pipeline as the simulation runs it: on this machine's shared-core profiles, its batches slowed by group and by copies busy.</summary>
    static ReplayPipeline Slowed(ReplayPipeline pipeline, double podStartSeconds, IReadOnlyDictionary<(string Variant, int Batch), double>? slowdown,
        IReadOnlyList<double>? slowdownWhenBusy) =>
        new(pipeline.Spec, podStartSeconds) { SharedMachineProfiles = pipeline.SharedMachineProfiles, ServiceSlowdown = slowdown, SlowdownWhenBusy = slowdownWhenBusy };

    /// <summary>
    /// The rig at load, phase by phase: phase i ran i + 1 replicas of one group, busy enough that i + 1 are often busy at once.
    /// Phase 1's mean call gives how much slower one copy busy ran than the simulation of that load (<paramref name="simulate"/>,
    /// given the slowdowns by copies busy and the phase, returns its group's calls); phase 2's, given that, two copies busy; and
    /// so on, each repeated until the simulated call is within 1 % of the measured, at most <see cref="ServiceTimePasses"/>
    /// times. The request path (<see cref="PathMs"/>) grows with the load: it is taken at <paramref name="pathRps"/> on the
    /// least-squares line through the phases' paths by rate (one phase: its path; a phase whose replicas did not answer their
    /// metrics counts for neither).
    /// </summary>
    public static LoadCalibration Calibrate(IReadOnlyList<CalibrationPhase> phases, double pathRps, Func<IReadOnlyList<double>, int, GroupCalls?> simulate)
    {
        var slowdowns = new List<double>();
        for (int phase = 0; phase < phases.Count; phase++)
        {
            slowdowns.Add(1);
            for (int pass = 0; pass < ServiceTimePasses && phases[phase].Replicas.Calls > 0; pass++)
            {
                double ratio = simulate(slowdowns, phase) is { Calls: > 0 } calls ? phases[phase].Replicas.MeanCallMs / calls.MeanMs : 1;
                if (Math.Abs(ratio - 1) <= 0.01) break;
                slowdowns[phase] *= ratio;
            }
        }
        var paths = phases.Where(p => p.Replicas.Requests > 0).Select(p => (p.Rps, Ms: PathMs(p.Records, [p.Replicas]))).ToList();
        return new LoadCalibration(slowdowns, paths.Count == 0 ? 0 : Math.Max(0, OnLine(paths, pathRps)));
    }

    /// <summary>The least-squares line through <paramref name="points"/> at <paramref name="x"/>; their mean where they share one x.</summary>
    static double OnLine(IReadOnlyList<(double X, double Y)> points, double x)
    {
        double meanX = points.Average(p => p.X), meanY = points.Average(p => p.Y);
        double spread = points.Sum(p => (p.X - meanX) * (p.X - meanX));
        return spread == 0 ? meanY : meanY + (x - meanX) * points.Sum(p => (p.X - meanX) * (p.Y - meanY)) / spread;
    }

    /// <summary>Slowdowns by copies busy in words: "×1.02 with 1 busy, ×1.09 with 2".</summary>
    public static string DescribeSlowdowns(IReadOnlyList<double> slowdownWhenBusy) =>
        string.Join(", ", slowdownWhenBusy.Select((slowdown, index) => $"×{slowdown:F2} with {index + 1}" + (index == 0 ? " busy" : "")));

    /// <summary>Each live group's own times beside the simulations', its profile's mean call alone (batch / throughput) and its slowdown.</summary>
    static IReadOnlyList<LiveReplicaTimes> Describe(ReplayPipeline pipeline, IReadOnlyDictionary<(string Variant, int Batch), ReplicaTimes> replicas,
        PolicyRun simulated, PolicyRun atLiveTimes, IReadOnlyDictionary<(string Variant, int Batch), double> slowdown) =>
        [.. replicas.OrderBy(r => r.Key.Variant, StringComparer.Ordinal).ThenBy(r => r.Key.Batch).Select(r =>
        {
            var (variant, batch) = r.Key;
            var point = pipeline.Spec.Spec.Stages[0].Variants.First(v => v.Name == variant).Profiles[0].Batches.First(b => b.Batch == batch);
            return new LiveReplicaTimes($"{variant}/b{batch}", r.Value, SimulatedCalls(simulated, r.Key), SimulatedCalls(atLiveTimes, r.Key),
                1000.0 * batch / point.ThroughputRps, slowdown.GetValueOrDefault(r.Key, 1));
        })];

    static GroupCalls? SimulatedCalls(PolicyRun run, (string Variant, int Batch) group) =>
        run.Result.Calls.GetValueOrDefault($"{Stage}/{SimulatedGroup.KeyOf(group.Variant, "cpu", group.Batch)}") is { Calls: > 0 } calls ? calls : null;

    /// <summary>Passes of <see cref="AtLiveTimes"/> and <see cref="Calibrate"/> at most: each pass's slowdowns moved the simulated calls to within 1 % in tests.</summary>
    const int ServiceTimePasses = 4;

    /// <summary>
    /// What the request path took live outside the replicas, on average: the generator's mean latency of the answered requests
    /// less the replicas' mean wait in the batching queue and mean call per request (their metrics; the call a request's batch
    /// took is counted at the group's mean call). At load this is more than the hop measured at 4 requests/s, since the router,
    /// the generator and the servers' HTTP then share the cores with busy replicas.
    /// </summary>
    public static double PathMs(IEnumerable<RequestRecord> requests, IEnumerable<ReplicaTimes> replicas)
    {
        var groups = replicas.Where(r => r.Requests > 0).ToList();
        var served = requests.Where(r => r.Served).ToList();
        if (groups.Count == 0 || served.Count == 0) return 0;
        double inReplicasMs = groups.Sum(g => 1000 * g.QueueWaitSeconds + g.Requests * g.MeanCallMs) / groups.Sum(g => g.Requests);
        return Math.Max(0, served.Average(r => r.LatencyMs) - inReplicasMs);
    }

    /// <summary>
    /// The simulation again, at the times the live run had: given the request path's live time (in <paramref name="simulate"/>), each
    /// (variant, batch) group's batches slowed by its live mean call over its simulated one. Slower batches overlap more and so
    /// run at the profile for more copies busy, so this repeats, from the last pass's simulated calls, until every group's is
    /// within 1 % of live, at most <see cref="ServiceTimePasses"/> times. A group that ran live and not simulated keeps its
    /// profiles. This tells the simulator's queueing and control apart from its inputs: where it agrees with live at live's
    /// times, what is left between live and the simulation at the profiles is how much slower the replicas and the path ran.
    /// </summary>
    /// <param name="simulate">The simulation with the given slowdowns.</param>
    /// <param name="simulated">The simulation without slowdowns.</param>
    /// <param name="liveMeanCallMs">Each live group's mean ONNX Runtime call, from its replicas' metrics.</param>
    public static (PolicyRun Run, IReadOnlyDictionary<(string Variant, int Batch), double> Slowdown) AtLiveTimes(
        Func<IReadOnlyDictionary<(string Variant, int Batch), double>, PolicyRun> simulate, PolicyRun simulated,
        IReadOnlyDictionary<(string Variant, int Batch), double> liveMeanCallMs)
    {
        var slowdown = new Dictionary<(string Variant, int Batch), double>();
        var run = simulated;
        for (int pass = 0; pass < ServiceTimePasses; pass++)
        {
            var ratios = liveMeanCallMs.Select(live => (Group: live.Key, Ratio: SimulatedCalls(run, live.Key) is { } calls ? live.Value / calls.MeanMs : 1)).ToList();
            if (ratios.All(r => Math.Abs(r.Ratio - 1) <= 0.01)) break;
            foreach (var (group, ratio) in ratios) slowdown[group] = slowdown.GetValueOrDefault(group, 1) * ratio;
            run = simulate(slowdown);
        }
        return (run, slowdown);
    }

    /// <summary>
    /// The whole second into each scrape interval at which the simulation scrapes, from a live scrape <paramref name="sinceStart"/>
    /// after the window began: rounded up, since the live loop checks the load at whole seconds, a second or more after a scrape,
    /// so a scrape at 158.4 s is acted on at 160 s, as the simulation's at 159 s is. Rounded to the nearest, the simulation
    /// checked a second before the live run at half the phases: in the twelfth live run ipa's surge decision came at 159 s
    /// simulated and 160 s live, and the live run missed 39 requests more in that second's ten.
    /// </summary>
    public static int ScrapePhase(TimeSpan sinceStart, int intervalSeconds)
    {
        int phase = (int)Math.Ceiling(sinceStart.TotalSeconds) % intervalSeconds;
        return (phase + intervalSeconds) % intervalSeconds;
    }

    /// <summary>
    /// The measured run in the simulator's terms. A response does not say which variant served it, so each
    /// served request is credited with the accuracy of the configuration in force when it arrived, weighted by
    /// the variants' shares.
    /// </summary>
    static SimulationResult Measured(IReadOnlyList<RequestRecord> records, List<DecisionRecord> decisions, StageSpec stage,
        List<SecondSample> samples, int seconds)
    {
        double AccuracyAt(double time)
        {
            var allocations = decisions.Last(d => d.Second <= time).Running[0].Allocations;
            double total = allocations.Sum(a => a.Share);
            return allocations.Sum(a => a.Share / total * stage.Variants.First(v => v.Name == a.Variant).Accuracy);
        }
        var credited = records.Select(r => r.Served ? r with { Accuracy = AccuracyAt(r.ArrivalSeconds) } : r).ToList();
        var arrivals = new int[seconds];
        foreach (var r in credited) arrivals[Math.Min(seconds - 1, (int)r.ArrivalSeconds)]++;
        return new SimulationResult(credited, meanInSystem: double.NaN, seconds, arrivals, samples);
    }
}

/// <summary>
/// The load history from Prometheus, as the operator reads it (its own client). Before the window the
/// replay's prior history stands in, since Prometheus has only seen the window so far. A window shorter than
/// two scrapes is read as the operator reads the latest rate: <c>irate</c>, between the last two scrapes.
/// </summary>
sealed class PrometheusLoadHistory(PrometheusClient prometheus, string pipeline, DateTimeOffset now, IReadOnlyList<double> prior, int scrapeSeconds) : ILoadHistory
{
    public double[] Rates(int historySeconds, int stepSeconds, int windowSeconds)
    {
        bool latest = windowSeconds < 2 * scrapeSeconds;
        IReadOnlyList<double> measured;
        try
        {
            var scrape = TimeSpan.FromSeconds(scrapeSeconds);
            measured = prometheus.ArrivalRateHistory(pipeline, now, TimeSpan.FromSeconds(historySeconds), TimeSpan.FromSeconds(stepSeconds),
                latest ? 2 * scrape : ArrivalHistory.RateQueryWindow(TimeSpan.FromSeconds(windowSeconds), scrape), CancellationToken.None, latestOnly: latest).GetAwaiter().GetResult();
        }
        catch (MetricsUnavailableException e) when (e.Failure == MetricsFailure.NoData)
        {
            measured = []; // the first scrapes of the window are not in yet
        }
        int missing = historySeconds / stepSeconds + 1 - measured.Count;
        if (missing <= 0) return [.. measured];
        var before = new CountedLoadHistory(prior, ScrapeSchedule.Every(scrapeSeconds)).Rates(missing * stepSeconds, stepSeconds, windowSeconds);
        return [.. before.TakeLast(missing), .. measured];
    }

    public int ScrapeSeconds => scrapeSeconds;

    public double? SecondsSinceScrape() =>
        prometheus.Scrapes(pipeline, now, CancellationToken.None).GetAwaiter().GetResult() is { } scrapes ? (now - scrapes.Last).TotalSeconds : null;

    public double MissedShare() => prometheus.LatestMissedShare(pipeline, now, TimeSpan.FromSeconds(2 * scrapeSeconds), CancellationToken.None)
        .GetAwaiter().GetResult();
}
