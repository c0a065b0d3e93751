using Adaptive.Core.Adaptation;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Planning;
using Adaptive.Core.Simulation;
using Adaptive.Core.Workloads;
using Adaptive.Experiments.Replay;
using Adaptive.Experiments.Replay.Policies;
using Adaptive.Experiments.Workloads;
using Adaptive.Experiments.Live;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Replay;

/// <summary><c>adaptive replay --live</c>: real model-server processes, router and Prometheus on this machine.</summary>
[Collection("serving")]
public sealed class LiveReplayTests
{
    /// <summary>
    /// The live loop checks the load at whole seconds, at least <see cref="SurgeRule.CheckLagSeconds"/> after a scrape: one at
    /// 158.4 s is acted on at 160 s. The simulation beside it scrapes at whole seconds, a second before its check: at 159 s.
    /// </summary>
    [Theory]
    [InlineData(158.4, 4)]
    [InlineData(157.6, 3)]
    [InlineData(158.0, 3)]
    [InlineData(4.2, 0)]
    public void The_simulation_checks_the_load_at_the_second_the_live_loop_does(double liveScrapeSeconds, int phase)
    {
        Assert.Equal(phase, LiveReplay.ScrapePhase(TimeSpan.FromSeconds(liveScrapeSeconds), 5));
        int liveCheck = (int)Math.Ceiling(liveScrapeSeconds + SurgeRule.CheckLagSeconds);
        Assert.Equal(liveCheck % 5, (phase + SurgeRule.CheckLagSeconds) % 5);
    }

    [Fact]
    public void A_replicas_times_sum_its_metrics_over_their_labels()
    {
        var times = ReplicaTimes.Parse("""
            # TYPE adaptive_model_inference_duration_seconds histogram
            adaptive_model_inference_duration_seconds_sum{model="classify",variant="resnet50"} 1.5
            adaptive_model_inference_duration_seconds_count{model="classify",variant="resnet50"} 150
            adaptive_model_inference_duration_seconds_bucket{model="classify",variant="resnet50",le="0.01"} 100
            adaptive_model_queue_wait_seconds_sum{model="classify",variant="resnet50"} 2
            adaptive_model_queue_wait_seconds_sum{model="classify",variant="other"} 1
            adaptive_model_queue_wait_seconds_count{model="classify",variant="resnet50"} 300
            """);
        Assert.Equal(150, times.Calls);
        Assert.Equal(10, times.MeanCallMs, 9);
        Assert.Equal(10, times.MeanQueueWaitMs, 9);
        Assert.Equal(300 + 150, times.Plus(times with { Requests = 150 }).Requests);
    }

    [Fact]
    public void The_request_paths_time_is_the_live_latency_less_what_the_replicas_took()
    {
        RequestRecord[] measured = [new(0.1, 30, 0, RequestOutcome.OnTime), new(0.2, 40, 0, RequestOutcome.Late), new(0.3, 500, 0, RequestOutcome.Rejected)];
        // 10 requests waited 10 ms each for 10 ms calls; 10 more waited 20 ms each, two to a 20 ms call: 30 ms a request in the replicas.
        ReplicaTimes[] replicas = [new(Calls: 10, CallSeconds: 0.1, Requests: 10, QueueWaitSeconds: 0.1), new(Calls: 5, CallSeconds: 0.1, Requests: 10, QueueWaitSeconds: 0.2)];
        Assert.Equal(35 - 30, LiveReplay.PathMs(measured, replicas), 9);
        Assert.Equal(0, LiveReplay.PathMs(measured, []));
    }

    /// <summary>The resnet sample on CPU alone, each variant measured with 1, 2 and 3 copies busy at once, as on one shared machine.</summary>
    static (InferencePipeline Spec, Dictionary<string, IReadOnlyList<IReadOnlyList<ProfilePoint>>> Shared) SharedMachinePipeline()
    {
        var spec = ReplayPipeline.Load("resnet", podStartSeconds: 5).Derive(s =>
        {
            s.HardwareClasses = [.. s.HardwareClasses.Where(c => c.Name == "cpu")];
            foreach (var variant in s.Stages[0].Variants) variant.Profiles = [.. variant.Profiles.Where(p => p.HardwareClass == "cpu")];
        });
        var shared = spec.Spec.Stages[0].Variants.ToDictionary(v => v.Name, v => (IReadOnlyList<IReadOnlyList<ProfilePoint>>)[.. new[] { 1, 1.3, 1.6 }.Select(
            slower => (IReadOnlyList<ProfilePoint>)[.. v.Profiles[0].Batches.Select(b => new ProfilePoint(b.Batch, b.LatencyMs * slower, b.ThroughputRps / slower))])]);
        return (spec, shared);
    }

    /// <summary>
    /// Before the window, the rig serves steady loads: here simulations of one replica, then two, each at 70 % of what they
    /// sustain, with calls 5 % slower than the profiles while one copy is busy and 20 % while two are, and 4 ms on the path at
    /// the first load, 6 ms at the second. From their requests and the replicas' metrics, the calibration finds both slowdowns
    /// again (the simulation it compares with draws other arrivals), and the path on the line between at the rate asked for.
    /// </summary>
    [Fact]
    public void The_calibration_at_load_finds_how_much_slower_the_replicas_ran_by_copies_busy_and_what_the_path_took()
    {
        var (spec, shared) = SharedMachinePipeline();
        var variant = spec.Spec.Stages[0].Variants[1];
        var loads = new[] { 1, 2 }.Select(replicas => (Plan: (IReadOnlyList<StagePlan>)[new StagePlan("classify", [new Allocation(variant.Name, "cpu", replicas, 1, 1)])],
            Rps: 0.7 * replicas * shared[variant.Name][replicas - 1].First(b => b.Batch == 1).Throughput)).ToList();
        GroupCalls? Steady(IReadOnlyList<double> slowdownWhenBusy, int phase, double hopMs, int seed, Action<SimulationResult>? result = null)
        {
            var pipeline = new ReplayPipeline(spec, podStartSeconds: 5) { SharedMachineProfiles = shared, SlowdownWhenBusy = slowdownWhenBusy };
            var run = ClusterSimulator.Run(pipeline.Simulate(loads[phase].Plan), WorkloadPatterns.Steady(loads[phase].Rps, 120), pipeline.SimulationOptions(seed, hopMs));
            result?.Invoke(run);
            return Assert.Single(run.Calls).Value;
        }
        var phases = loads.Select((_, phase) =>
        {
            IReadOnlyList<RequestRecord> records = [];
            var calls = Steady([1.05, 1.2], phase, hopMs: 4 + 2 * phase, seed: 5, run => records = run.Requests)!;
            return new CalibrationPhase(loads[phase].Rps, records, new ReplicaTimes(calls.Calls, calls.ServiceMs / 1000, calls.Requests, calls.QueueWaitMs / 1000));
        }).ToList();

        double between = (loads[0].Rps + 3 * loads[1].Rps) / 4;
        var calibration = LiveReplay.Calibrate(phases, between, (slowdownWhenBusy, phase) => Steady(slowdownWhenBusy, phase, hopMs: 1, seed: 3));
        Assert.Equal(2, calibration.SlowdownWhenBusy.Count);
        Assert.InRange(calibration.SlowdownWhenBusy[0], 1.05 * 0.98, 1.05 * 1.02);
        Assert.InRange(calibration.SlowdownWhenBusy[1], 1.2 * 0.96, 1.2 * 1.04);
        Assert.InRange(calibration.PathMs, 5.5 * 0.95, 5.5 * 1.05);
        Assert.Equal("×1.05 with 1 busy, ×1.20 with 2", LiveReplay.DescribeSlowdowns([1.05, 1.2]));
    }

    /// <summary>
    /// Replicas sharing a machine: each variant measured with 1, 2 and 3 copies busy at once. A "live" run is the simulation with
    /// every batch 25 % slower than that; from its mean calls alone, the simulation at live times finds the 25 % again,
    /// though slower batches overlap more and so run at the profiles for more copies busy.
    /// </summary>
    [Fact]
    public void The_simulation_at_live_times_finds_how_much_slower_the_replicas_ran()
    {
        var (spec, shared) = SharedMachinePipeline();
        var replay = ReplayWorkloads.Create("twitter", TwitterTrace.DefaultPath, WorkloadPatterns.IpaWindowStart + 240, 300, WorkloadPatterns.IpaDamping, seed: 1);
        PolicyRun Simulate(IReadOnlyDictionary<(string Variant, int Batch), double>? slowdown)
        {
            var pipeline = new ReplayPipeline(spec, podStartSeconds: 5) { SharedMachineProfiles = shared, ServiceSlowdown = slowdown };
            var policy = ReplayPolicies.Create("hpa", pipeline, replay.Workload.Peak, replay.Workload.Mean);
            return ReplayRunner.Run(pipeline, policy, replay.Workload, replay.PriorArrivals, pipeline.SimulationOptions(seed: 3, hopMs: 1));
        }
        var groups = spec.Spec.Stages[0].Variants.SelectMany(v => v.Profiles[0].Batches.Select(b => (v.Name, b.Batch))).ToList();
        var live = Simulate(groups.ToDictionary(g => g, _ => 1.25));
        static GroupCalls? CallsOf(PolicyRun run, (string Variant, int Batch) group) =>
            run.Result.Calls.GetValueOrDefault($"classify/{SimulatedGroup.KeyOf(group.Variant, "cpu", group.Batch)}");
        var liveCalls = groups.Where(g => CallsOf(live, g) is not null).ToDictionary(g => g, g => CallsOf(live, g)!.MeanMs);
        Assert.NotEmpty(liveCalls);

        var atProfiles = Simulate(null);
        var (atLiveTimes, slowdown) = LiveReplay.AtLiveTimes(Simulate, atProfiles, liveCalls);
        foreach (var (group, liveMs) in liveCalls)
        {
            double profiledMs = CallsOf(atProfiles, group)!.MeanMs;
            double calibratedMs = CallsOf(atLiveTimes, group)!.MeanMs;
            Assert.True(liveMs > profiledMs * 1.15, $"{group}: {liveMs:F2} ms live, {profiledMs:F2} at the profiles");
            Assert.InRange(calibratedMs / liveMs, 0.98, 1.02);
            Assert.InRange(slowdown[group], 1.25 * 0.95, 1.25 * 1.05);
        }
        Assert.Equal(live.Result.Arrived, atLiveTimes.Result.Arrived);
        double P99(PolicyRun run) => ReplayReport.Summarize(run).P99Ms;
        Assert.True(Math.Abs(P99(atLiveTimes) / P99(live) - 1) < Math.Abs(P99(atProfiles) / P99(live) - 1),
            $"p99 {P99(live):F1} ms live, {P99(atLiveTimes):F1} at live times, {P99(atProfiles):F1} at the profiles");
    }

    [Fact]
    public void A_live_run_serves_the_window_for_real_and_sets_the_simulator_beside_it()
    {
        if (PrometheusServer.Binary is null) Assert.Skip("prometheus is not installed; ./test.sh installs it (apt-get install prometheus)");
        string dir = Directory.CreateTempSubdirectory("adaptive-live-test-").FullName;
        var run = AdaptiveCli.Run("replay", "--live", "--seconds", "45", "--resolution", "32", "--profile-seconds", "0.5", "--calibration-seconds", "2", "--out", dir);
        Assert.True(run.ExitCode == 0, run.Stderr + run.Stdout);

        var rows = File.ReadAllLines(Path.Combine(dir, "report.csv")).Skip(1).Select(r => r.Split(',')).ToDictionary(r => r[0]);
        Assert.Equal(["ipa (live)", "ipa (simulated)", "ipa (simulated at calibrated times)", "ipa (simulated at live times)"], rows.Keys);
        // The generator and the simulator draw the same Poisson arrivals from the same seed.
        Assert.Equal(rows["ipa (simulated)"][1], rows["ipa (live)"][1]);
        Assert.Equal(rows["ipa (simulated at calibrated times)"][1], rows["ipa (live)"][1]);
        Assert.Equal(rows["ipa (simulated at live times)"][1], rows["ipa (live)"][1]);
        Assert.InRange(int.Parse(rows["ipa (live)"][1]), 150, 600);
        double liveViolations = double.Parse(rows["ipa (live)"][2], System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(liveViolations, 0, 0.2);
        // A decision at 30 s, from the router's arrival rate in Prometheus.
        var decisions = File.ReadAllLines(Path.Combine(dir, "decisions.csv")).Where(l => l.StartsWith("ipa (live),", StringComparison.Ordinal)).ToList();
        Assert.Equal(["0", "30"], decisions.Select(d => d.Split(',')[1]));
        string report = File.ReadAllText(Path.Combine(dir, "report.md"));
        Assert.Contains("measured replica start-up", report);
        // What the router and HTTP add, measured before the window and given to the simulation.
        var hop = System.Text.RegularExpressions.Regex.Match(report, @"measured router hop, used by the simulation: (\d+\.\d\d) ms");
        Assert.True(hop.Success, report);
        Assert.InRange(double.Parse(hop.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), 0, 100);
        // The rig measured at load before the policies, for the simulation at calibrated times.
        var calibration = System.Text.RegularExpressions.Regex.Match(report, @"calibrated at load before the policies .*: the replicas' calls ×(\d+\.\d\d) with 1 busy, .* the simulation's of that load, the request path (\d+\.\d\d) ms");
        Assert.True(calibration.Success, report);
        Assert.InRange(double.Parse(calibration.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), 0.2, 5);
        Assert.InRange(double.Parse(calibration.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture), 0, 1000);
        // And what it took under load, outside the replicas, for the simulation at live times.
        var path = System.Text.RegularExpressions.Regex.Match(report, @"measured request path under load .*: ipa (\d+\.\d\d) ms");
        Assert.True(path.Success, report);
        Assert.InRange(double.Parse(path.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), 0, 1000);
        // The replicas' own metrics, read as each left and at the end: their calls served at least every request the
        // generator had answered, at most 4 to a call; and no more calls than the window's requests, since the warm-ups' are not counted.
        var groups = System.Text.RegularExpressions.Regex.Matches(report, @"resnet\d+/b(\d) call (\d+\.\d) / (?:\d+\.\d|none) / (?:\d+\.\d|none) ms \(×\d+\.\d\d; \d+\.\d alone\), wait \d+\.\d / (?:\d+\.\d|none) / (?:\d+\.\d|none) ms, (\d+) calls live");
        Assert.NotEmpty(groups);
        double servedRows = groups.Sum(g => int.Parse(g.Groups[3].Value) * int.Parse(g.Groups[1].Value));
        double answered = int.Parse(rows["ipa (live)"][1]) * (1 - liveViolations);
        Assert.True(servedRows >= answered, $"{servedRows} rows in the replicas' calls, {answered} requests answered: {report}");
        Assert.InRange(groups.Sum(g => int.Parse(g.Groups[3].Value)), 1, int.Parse(rows["ipa (live)"][1]));
        Assert.All(groups, g => Assert.InRange(double.Parse(g.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture), 0.1, 1000));
        Assert.True(File.Exists(Path.Combine(dir, "variants-ipa-live.png")));
        // The generator kept to its schedule: what it counts as latency is the servers', not its own delay.
        var lag = System.Text.RegularExpressions.Regex.Match(report, @"the load generator's own delay .*: ipa p99 (-?\d+\.\d) ms, at most (-?\d+\.\d) ms");
        Assert.True(lag.Success, report);
        double lagP99 = double.Parse(lag.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(lagP99, -1, 150); // a request may leave up to 1 ms early: shorter waits are not slept
        Assert.InRange(double.Parse(lag.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture), lagP99, 10_000);
    }
}
