using Adaptive.Core.Planning;
using Adaptive.Core.Queueing;
using Adaptive.Core.Simulation;
using Adaptive.Core.Workloads;

namespace Adaptive.Tests.Simulation;

/// <summary>Invariants of the discrete-event simulator that `adaptive replay` builds on.</summary>
public sealed class ClusterSimulatorTests
{
    static SimulatedStage Stage(int replicas, double latencyMs, int batch = 1, double weight = 1, string variant = "v") =>
        new("s", [new SimulatedGroup(variant, "cpu", replicas, batch, [new ProfilePoint(batch, latencyMs, 1000 * batch / latencyMs)], weight)]);

    static SimulationOptions Options(double sloMs = 200, int queueCapacity = 1000, int seed = 1) =>
        new(sloMs, MaxQueueDelayMs: 0, queueCapacity, seed);

    [Fact]
    public void Every_request_is_served_rejected_or_expired_exactly_once()
    {
        // Overloaded: 60 rps against 33 rps of capacity, with a short queue.
        var result = ClusterSimulator.Run([Stage(1, 30)], WorkloadPatterns.Steady(60, 120), Options(queueCapacity: 10));
        Assert.InRange(result.Arrived, 6800, 7600);
        Assert.Equal(result.Arrived, result.Served + result.Rejected + result.Expired);
        // Capacity is 33 rps × 120 s of the ≈ 7,200 that arrive.
        Assert.True(result.Rejected > 1000 && result.Rejected + result.Expired > 2800, $"{result.Rejected} rejected, {result.Expired} expired");
        Assert.Equal(result.Served, result.LatenciesMs.Count);
        Assert.Equal(result.Arrived, result.Requests.Count);
        Assert.Equal(result.Arrived, result.ArrivalsPerSecond.Sum());

        // With room to queue, the server refuses at admission what the work ahead would make miss its deadline,
        // so that what it takes is served on time: all it can, 33 of the 60 rps.
        var queued = ClusterSimulator.Run([Stage(1, 30)], WorkloadPatterns.Steady(60, 120), Options(queueCapacity: 10_000));
        Assert.Equal(queued.Arrived, queued.Served + queued.Rejected + queued.Expired);
        double onTime = queued.Requests.Count(r => r.Outcome == RequestOutcome.OnTime) / (double)queued.Arrived;
        Assert.InRange(onTime, 0.5, 1000.0 / 30 / 60 + 0.005);
        Assert.True(queued.Late + queued.Expired < 0.01 * queued.Arrived, $"{queued.Late} late, {queued.Expired} expired");
        Assert.All(queued.Requests.Where(r => r.Outcome == RequestOutcome.OnTime), r => Assert.True(r.LatencyMs <= 200));
    }

    /// <summary>
    /// Two stages, the second overloaded (60 rps against 33): it gets only what is left of the SLO, as the router
    /// gives it, so it refuses what it could not serve in time and what it serves is on time.
    /// </summary>
    [Fact]
    public void A_later_stage_keeps_to_what_is_left_of_the_slo()
    {
        var stages = new[] { Stage(6, 30), new SimulatedStage("t", [new SimulatedGroup("w", "cpu", 1, 1, [new ProfilePoint(1, 30, 1000 / 30.0)], 1)]) };
        var result = ClusterSimulator.Run(stages, WorkloadPatterns.Steady(60, 120), Options(queueCapacity: 10_000));
        double onTime = result.Requests.Count(r => r.Outcome == RequestOutcome.OnTime) / (double)result.Arrived;
        Assert.InRange(onTime, 0.5, 1000.0 / 30 / 60 + 0.005);
        Assert.True(result.Late + result.Expired < 0.01 * result.Arrived, $"{result.Late} late, {result.Expired} expired");
    }

    /// <summary>
    /// One replica, deterministic 30 ms service, Poisson arrivals at 20 rps: an M/D/1 queue, whose mean time in
    /// system is 1/μ + ρ/(2μ(1−ρ)) = 30 + 22.5 ms. Little's law links it to the mean number in the system.
    /// </summary>
    [Fact]
    public void A_steady_load_queues_as_queueing_theory_and_littles_law_say()
    {
        var result = ClusterSimulator.Run([Stage(1, 30)], WorkloadPatterns.Steady(20, 1200), Options(sloMs: 60_000));
        double meanLatency = result.LatenciesMs.Average();
        Assert.InRange(meanLatency, 52.5 * 0.92, 52.5 * 1.08);
        double throughput = result.Served / result.DurationSeconds;
        Assert.Equal(throughput * meanLatency / 1000, result.MeanInSystem, 0.02);
        Assert.Equal(0, result.Rejected);
    }

    [Fact]
    public void An_over_provisioned_configuration_has_no_violations_and_runs_are_reproducible()
    {
        var workload = WorkloadPatterns.Fluctuating(40, 20, 120, 600, seed: 2);
        var stages = new[] { Stage(6, 30, batch: 1), new SimulatedStage("t", [
            new SimulatedGroup("a", "cpu", 3, 2, [new ProfilePoint(1, 20, 50), new ProfilePoint(2, 30, 66)], 3),
            new SimulatedGroup("b", "cpu", 2, 1, [new ProfilePoint(1, 25, 40)], 1)]) };
        var options = Options(sloMs: 250, seed: 7) with { MaxQueueDelayMs = 10 };
        var result = ClusterSimulator.Run(stages, workload, options);
        Assert.Equal(0, result.Late + result.Rejected + result.Expired);
        Assert.Equal(result.Arrived, result.Served);
        Assert.Equal(result.LatenciesMs, ClusterSimulator.Run(stages, workload, options).LatenciesMs);
        Assert.NotEqual(result.LatenciesMs, ClusterSimulator.Run(stages, workload, options with { Seed = 8 }).LatenciesMs);
    }

    /// <summary>The router's hop adds its time at every stage: the M/D/1 queue's mean above, plus two hops for two stages.</summary>
    [Fact]
    public void The_router_hop_adds_its_time_at_every_stage()
    {
        var stages = new[] { Stage(1, 30), new SimulatedStage("t", [new SimulatedGroup("w", "cpu", 50, 1, [new ProfilePoint(1, 10, 100)], 1)]) };
        var without = ClusterSimulator.Run(stages, WorkloadPatterns.Steady(20, 600), Options(sloMs: 60_000));
        var with = ClusterSimulator.Run(stages, WorkloadPatterns.Steady(20, 600), Options(sloMs: 60_000) with { HopMs = 4 });
        Assert.InRange(with.LatenciesMs.Min() - without.LatenciesMs.Min(), 8 - 1e-6, 8 + 1e-6);
        Assert.InRange(with.LatenciesMs.Average() - without.LatenciesMs.Average(), 8 * 0.9, 8 * 1.1);
        Assert.Equal(with.Arrived, with.Served);
    }

    /// <summary>
    /// Where the replicas share one machine (<c>replay --live</c>), a batch takes the profile measured with as many
    /// replicas busy as are busy when it starts: here 10 ms alone, 20 ms each with two at once.
    /// </summary>
    [Fact]
    public void Replicas_sharing_a_machine_slow_each_other_as_measured()
    {
        SimulatedStage Stage(bool shared) => new("s", [new SimulatedGroup("v", "cpu", 2, 1, [new ProfilePoint(1, 10, 100)], 1)
        {
            ProfilesWhenBusy = shared ? [[new ProfilePoint(1, 10, 100)], [new ProfilePoint(1, 20, 50)]] : null,
        }]);
        var quiet = ClusterSimulator.Run([Stage(shared: true)], WorkloadPatterns.Steady(2, 600), Options(sloMs: 10_000));
        Assert.Equal(10, quiet.LatenciesMs.Order().ElementAt(quiet.LatenciesMs.Count / 2), 6);

        // At 80 rps each replica is busy 40 % of the time alone, so batches often start beside another.
        var own = ClusterSimulator.Run([Stage(shared: false)], WorkloadPatterns.Steady(80, 300), Options(sloMs: 10_000));
        var shared = ClusterSimulator.Run([Stage(shared: true)], WorkloadPatterns.Steady(80, 300), Options(sloMs: 10_000));
        double SlowShare(SimulationResult result) => result.LatenciesMs.Count(l => l >= 20 - 1e-9) / (double)result.LatenciesMs.Count;
        Assert.True(SlowShare(shared) > SlowShare(own) + 0.2, $"{SlowShare(shared):P1} took 20 ms or more shared, {SlowShare(own):P1} on cores of their own");
        Assert.True(shared.LatenciesMs.Average() > own.LatenciesMs.Average() + 3, $"mean {shared.LatenciesMs.Average():F1} ms shared, {own.LatenciesMs.Average():F1} ms on their own");
        Assert.Equal(shared.Arrived, shared.Served);
    }

    /// <summary>What a model server's metrics count: each group's batches and their service time, by "stage/variant@hardware/bN".</summary>
    [Fact]
    public void Each_groups_batches_are_counted_with_their_service_time()
    {
        var stage = new SimulatedStage("s", [
            new SimulatedGroup("one", "cpu", 1, 1, [new ProfilePoint(1, 15, 100)], 1),
            new SimulatedGroup("four", "cpu", 1, 4, [new ProfilePoint(1, 15, 100), new ProfilePoint(4, 40, 200)], 1)]);
        var result = ClusterSimulator.Run([stage], WorkloadPatterns.Steady(40, 300), Options(sloMs: 10_000));

        Assert.Equal(["s/four@cpu/b4", "s/one@cpu/b1"], result.Calls.Keys.Order(StringComparer.Ordinal));
        var one = result.Calls["s/one@cpu/b1"];
        var four = result.Calls["s/four@cpu/b4"];
        Assert.Equal(result.Arrived, result.Served);
        // The split sends each group half the requests; batch 1 runs one to a call, at the profile's mean (batch / throughput).
        Assert.InRange(one.Calls, result.Served * 0.45, result.Served * 0.55);
        Assert.InRange(one.MeanMs, 10 * 0.97, 10 * 1.03);
        // Batch 4 serves the other half in fewer calls, each at batch 1's time or batch 4's (20 ms).
        long servedByFour = result.Served - one.Calls;
        Assert.InRange(four.Calls, servedByFour / 4.0, servedByFour - 1);
        Assert.InRange(four.MeanMs, 10, 20);
        Assert.Equal(one.Calls, one.Requests);
        Assert.Equal(servedByFour, four.Requests);

        // One replica alone at 40 rps: the mean wait is Pollaczek–Khinchine's λ·E[S²] / 2(1 − ρ), 3.44 ms for this profile's lognormal.
        var alone = ClusterSimulator.Run([new SimulatedStage("s", [stage.Groups[0]])], WorkloadPatterns.Steady(40, 600), Options(sloMs: 10_000)).Calls["s/one@cpu/b1"];
        var service = ServiceTime.Of(new ProfilePoint(1, 15, 100));
        double expectedMs = 40 * service.MeanMs * service.MeanMs * (1 + service.SquaredVariation) / 1000 / (2 * (1 - 40 * service.MeanMs / 1000));
        Assert.InRange(alone.MeanQueueWaitMs, expectedMs * 0.85, expectedMs * 1.15);
    }

    [Fact]
    public void An_under_provisioned_configuration_violates_the_slo()
    {
        var result = ClusterSimulator.Run([Stage(1, 30)], WorkloadPatterns.Spike(10, 60, 60, 30, 180), Options(sloMs: 100));
        Assert.True(result.ViolationRate > 0.05, $"violation rate {result.ViolationRate:P1}");
    }
}
