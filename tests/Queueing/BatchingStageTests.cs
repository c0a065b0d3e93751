using Adaptive.Core.Planning;
using Adaptive.Core.Queueing;
using Adaptive.Core.Simulation;
using Adaptive.Core.Workloads;

namespace Adaptive.Tests.Queueing;

/// <summary>
/// The queueing latency model the planner uses, and the service times the simulator draws, checked against
/// each other and against queueing theory.
/// </summary>
public sealed class BatchingStageTests
{
    [Fact]
    public void A_service_time_has_the_profiles_mean_and_p99()
    {
        // resnet152 on CPU in the zoo's sample: 143 ms p99, 8.2 requests/s back to back (mean 122 ms).
        foreach (var (meanMs, p99Ms) in new[] { (122.0, 143.0), (30.0, 40.0), (10.0, 45.0) })
        {
            var service = ServiceTime.Fit(meanMs, p99Ms);
            var random = new Random(5);
            var draws = Enumerable.Range(0, 400_000).Select(_ => service.Sample(random)).Order().ToArray();
            Assert.Equal(meanMs, draws.Average(), meanMs * 0.005);
            Assert.Equal(p99Ms, draws[(int)(0.99 * draws.Length)], p99Ms * 0.01);
        }
        // Measured alone faster than back to back: deterministic at the mean, which is what capacity is.
        var flat = ServiceTime.Of(new ProfilePoint(4, LatencyMs: 30, Throughput: 100));
        Assert.Equal((40, 40, 0), (flat.MeanMs, flat.P99Ms, flat.Sigma));
        Assert.Equal(40, flat.Sample(new Random(1)));
    }

    [Theory]
    [InlineData(1, 0.5)]
    [InlineData(4, 2.9)]
    public void Erlang_c_is_the_probability_of_waiting(int servers, double offered)
    {
        // By definition, from the M/M/c stationary distribution.
        double Term(int k) => Math.Pow(offered, k) / Enumerable.Range(1, k).Aggregate(1.0, (f, i) => f * i);
        double top = Term(servers) * servers / (servers - offered);
        double expected = top / (Enumerable.Range(0, servers).Sum(Term) + top);
        Assert.Equal(expected, BatchingStage.ErlangC(servers, offered), 12);
    }

    /// <summary>
    /// One replica whose service time is lognormal (mean 30 ms, p99 40 ms) under Poisson arrivals at 20/s:
    /// an M/G/1 queue, whose mean time in system is E[S] + λ·E[S²] / (2(1 − ρ)) by Pollaczek–Khinchine.
    /// </summary>
    [Fact]
    public void The_simulator_queues_lognormal_service_as_pollaczek_khinchine_says()
    {
        var point = new ProfilePoint(1, LatencyMs: 40, Throughput: 1000.0 / 30);
        var service = ServiceTime.Of(point);
        Assert.True(service.Sigma > 0.1);
        double rate = 20, mean = service.MeanMs / 1000, secondMoment = mean * mean * (1 + service.SquaredVariation);
        double expectedMs = 1000 * (mean + rate * secondMoment / (2 * (1 - rate * mean)));
        var result = ClusterSimulator.Run([Stage(1, 1, point)], WorkloadPatterns.Steady(rate, 2400), Options(seed: 4));
        Assert.Equal(expectedMs, result.LatenciesMs.Average(), expectedMs * 0.05);
    }

    /// <summary>
    /// At the rate the model says n replicas sustain within a budget, the simulated stage keeps its p99 within
    /// that budget, and not by a wide margin: across one and several replicas, batching and not, deterministic
    /// and noisy service.
    /// </summary>
    [Theory]
    [InlineData(1, 1, 30.0, 30.0, 150.0)]
    [InlineData(1, 1, 30.0, 45.0, 250.0)]
    [InlineData(3, 1, 122.0, 143.0, 250.0)]
    [InlineData(8, 1, 30.0, 40.0, 100.0)]
    [InlineData(2, 4, 60.0, 75.0, 250.0)]
    [InlineData(5, 8, 90.0, 120.0, 400.0)]
    public void At_its_capacity_a_stage_keeps_its_p99_within_the_budget(int replicas, int batch, double meanMs, double p99Ms, double budgetMs)
    {
        const double maxQueueDelayMs = 5;
        var point = new ProfilePoint(batch, p99Ms, 1000.0 * batch / meanMs);
        var service = ServiceTime.Of(point);
        double capacity = BatchingStage.CapacityRps(replicas, batch, service, maxQueueDelayMs, budgetMs);
        Assert.Equal(budgetMs, BatchingStage.P99Ms(capacity, replicas, batch, service, maxQueueDelayMs), budgetMs * 1e-6);
        double saturation = replicas * point.Throughput;
        Assert.InRange(capacity, 0.3 * saturation, saturation);

        int seconds = (int)Math.Clamp(300_000 / capacity, 300, 3000);
        var result = ClusterSimulator.Run([Stage(replicas, batch, point)], WorkloadPatterns.Steady(capacity, seconds),
            Options(seed: replicas * 100 + batch) with { MaxQueueDelayMs = maxQueueDelayMs });
        var latencies = result.LatenciesMs.Order().ToArray();
        double p99 = latencies[(int)(0.99 * latencies.Length)];
        Assert.True(p99 <= budgetMs, $"simulated p99 {p99:F1} ms at {capacity:F1}/s, budget {budgetMs} ms");
        Assert.True(p99 >= 0.6 * budgetMs, $"simulated p99 {p99:F1} ms at {capacity:F1}/s: the model wastes most of the {budgetMs} ms budget");
    }

    static SimulatedStage Stage(int replicas, int batch, ProfilePoint point) =>
        new("s", [new SimulatedGroup("v", "cpu", replicas, batch, [point], 1)]);

    static SimulationOptions Options(int seed) => new(SloMs: 60_000, MaxQueueDelayMs: 0, QueueCapacity: 100_000, seed);
}
