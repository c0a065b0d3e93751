using Adaptive.Core.Planning;
using Adaptive.Core.Simulation;
using Adaptive.Core.Workloads;

namespace Adaptive.Tests.Simulation;

/// <summary>The simulator under a controller: start-up delay of new replicas, make-before-break, drain, recreation.</summary>
public sealed class ReconfigurationTests
{
    /// <summary>A group of one variant, 30 ms per request, unbatched (33 rps per replica).</summary>
    static SimulatedGroup Group(string variant, int replicas, double startupSeconds, double accuracy = 0.7, double cost = 1) =>
        new(variant, "cpu", replicas, 1, [new ProfilePoint(1, 30, 33.3)], 1)
        {
            Accuracy = accuracy,
            CostPerReplica = cost,
            StartupSeconds = startupSeconds,
        };

    static SimulationOptions Options => new(SloMs: 200, MaxQueueDelayMs: 0, QueueCapacity: 256, Seed: 3);

    static SimulatedStage[] Stage(params SimulatedGroup[] groups) => [new SimulatedStage("s", groups)];

    /// <summary>Asks for <paramref name="change"/> once, at the first interval.</summary>
    static SimulationController Once(Reconfiguration change)
    {
        bool done = false;
        return (_, _) =>
        {
            if (done) return null;
            done = true;
            return change;
        };
    }

    static double ViolationRate(SimulationResult result, double from, double to)
    {
        var requests = result.Requests.Where(r => r.ArrivalSeconds >= from && r.ArrivalSeconds < to).ToList();
        return (double)requests.Count(r => r.Outcome != RequestOutcome.OnTime) / requests.Count;
    }

    [Fact]
    public void New_replicas_serve_only_after_their_start_up_delay()
    {
        // 80 rps against one replica of 33 rps; at 30 s three more are asked for, which take 20 s to start.
        var result = ClusterSimulator.Run(Stage(Group("a", 1, startupSeconds: 20)), WorkloadPatterns.Steady(80, 90), Options,
            Once(new Reconfiguration(Stage(Group("a", 4, startupSeconds: 20)))), intervalSeconds: 30);

        Assert.Equal(1, result.Seconds[29].Replicas.Values.Sum());
        Assert.Equal(4, result.Seconds[31].Replicas.Values.Sum()); // starting replicas are paid for
        Assert.True(ViolationRate(result, 32, 48) > 0.4, $"{ViolationRate(result, 32, 48):P0} violated while the new replicas start");
        Assert.True(ViolationRate(result, 55, 90) < 0.01, $"{ViolationRate(result, 55, 90):P1} violated once they serve");
        Assert.Equal(result.Arrived, result.Served + result.Rejected + result.Expired);
    }

    [Fact]
    public void A_replaced_variant_keeps_serving_until_its_successor_is_ready_then_drains_without_loss()
    {
        // 20 rps on variant a; at 30 s the configuration becomes variant b, which takes 10 s to start.
        var result = ClusterSimulator.Run(Stage(Group("a", 2, 0, accuracy: 0.6)), WorkloadPatterns.Steady(20, 90), Options,
            Once(new Reconfiguration(Stage(Group("b", 2, startupSeconds: 10, accuracy: 0.8)))), intervalSeconds: 30);

        Assert.Equal(0, result.Rejected + result.Expired + result.Late);
        Assert.Equal(result.Arrived, result.Served);
        Assert.All(result.Requests.Where(r => r.ArrivalSeconds < 39.9), r => Assert.Equal(0.6, r.Accuracy, 6));
        Assert.All(result.Requests.Where(r => r.ArrivalSeconds > 40.1), r => Assert.Equal(0.8, r.Accuracy, 6));
        // Both run while b starts (make-before-break), and a is gone soon after b serves.
        Assert.Equal(4, result.Seconds[35].Replicas.Values.Sum());
        Assert.Equal(["s/b@cpu/b1"], result.Seconds[42].Replicas.Keys);
    }

    [Fact]
    public void Traffic_moves_to_a_resized_variant_only_once_all_its_replicas_are_ready()
    {
        // 60 rps split 3:1 over three replicas of a and one of b; at 30 s the plan becomes four of b, three of which take
        // 10 s to start. Moving at once would send all 60 rps to b's one ready replica (33 rps) for those 10 s.
        var result = ClusterSimulator.Run(Stage(Group("a", 3, 0, accuracy: 0.6) with { Weight = 3 }, Group("b", 1, 0, accuracy: 0.8)),
            WorkloadPatterns.Steady(60, 90), Options, Once(new Reconfiguration(Stage(Group("b", 4, startupSeconds: 10, accuracy: 0.8)))), intervalSeconds: 30);

        Assert.True(ViolationRate(result, 30, 90) < 0.01, $"{ViolationRate(result, 30, 90):P1} violated");
        var whileStarting = result.Requests.Where(r => r.ArrivalSeconds is > 30.1 and < 39.9).ToList();
        Assert.InRange(whileStarting.Count(r => Math.Abs(r.Accuracy - 0.6) < 1e-6) / (double)whileStarting.Count, 0.7, 0.8); // a keeps its share, b its own
        Assert.All(result.Requests.Where(r => r.ArrivalSeconds > 40.1), r => Assert.Equal(0.8, r.Accuracy, 6));
    }

    [Fact]
    public void A_shrinking_variant_keeps_its_replicas_until_the_traffic_moves()
    {
        // 60 rps on three replicas of a; at 30 s the plan becomes three of b (10 s to start) and one of a, split 3:1.
        // Shrinking a at once would leave its one replica (33 rps) with all 60 rps for those 10 s.
        var result = ClusterSimulator.Run(Stage(Group("a", 3, 0, accuracy: 0.6)), WorkloadPatterns.Steady(60, 90), Options,
            Once(new Reconfiguration(Stage(Group("b", 3, startupSeconds: 10, accuracy: 0.8) with { Weight = 3 }, Group("a", 1, 0, accuracy: 0.6)))), intervalSeconds: 30);

        Assert.True(ViolationRate(result, 30, 90) < 0.01, $"{ViolationRate(result, 30, 90):P1} violated");
        Assert.Equal(6, result.Seconds[35].Replicas.Values.Sum());
        Assert.Equal(4, result.Seconds[45].Replicas.Values.Sum());
    }

    [Fact]
    public void Recreating_the_replicas_leaves_the_stage_without_service_while_they_start()
    {
        var result = ClusterSimulator.Run(Stage(Group("a", 2, 0)), WorkloadPatterns.Steady(20, 90), Options,
            Once(new Reconfiguration(Stage(Group("a", 3, startupSeconds: 10)), Recreate: true)), intervalSeconds: 30);

        var outage = result.Requests.Where(r => r.ArrivalSeconds is > 30.05 and < 39.95).ToList();
        Assert.NotEmpty(outage);
        Assert.All(outage, r => Assert.Equal(RequestOutcome.Rejected, r.Outcome));
        Assert.True(ViolationRate(result, 41, 90) < 0.01);
        Assert.Equal(result.Arrived, result.Served + result.Rejected + result.Expired);
    }

    [Fact]
    public void Under_random_reconfigurations_every_request_still_leaves_exactly_once()
    {
        var random = new Random(11);
        SimulationController controller = (_, _) => random.Next(3) == 0 ? null : new Reconfiguration(
            Stage([.. Enumerable.Range(0, random.Next(1, 4)).Select(i => Group($"v{random.Next(3)}", random.Next(1, 5), random.Next(0, 8)) with { Weight = random.Next(1, 5) })
                .DistinctBy(g => g.Key)]),
            Recreate: random.Next(4) == 0);
        var result = ClusterSimulator.Run(Stage(Group("v0", 2, 0)), WorkloadPatterns.Bursty(20, 90, 0.05, 300, seed: 4), Options, controller, intervalSeconds: 7);

        Assert.Equal(result.Arrived, result.Requests.Count);
        Assert.Equal(result.Arrived, result.Served + result.Rejected + result.Expired);
        Assert.Equal(result.Served, result.Requests.Count(r => r.Served));
        Assert.True(result.Served > result.Arrived / 2);
    }

    /// <summary>
    /// Where the replicas share one machine, a starting replica (its process and model load) takes CPU as a busy one
    /// does: while two more start, the one serving runs at the profile for three busy, and after, at its own again.
    /// </summary>
    [Fact]
    public void Starting_replicas_slow_the_serving_ones_on_a_shared_machine()
    {
        static SimulatedGroup Shared(int replicas) => Group("a", replicas, startupSeconds: 20) with
        {
            ProfilesWhenBusy = [[new ProfilePoint(1, 30, 33.3)], [new ProfilePoint(1, 45, 22.2)], [new ProfilePoint(1, 60, 16.7)]],
        };
        // 5 rps, one replica; at 30 s two more are asked for, which take 20 s to start.
        var result = ClusterSimulator.Run(Stage(Shared(1)), WorkloadPatterns.Steady(5, 90), Options with { Seed = 5 },
            Once(new Reconfiguration(Stage(Shared(3)))), intervalSeconds: 30);

        double Median(double from, double to) => result.Requests.Where(r => r.ArrivalSeconds >= from && r.ArrivalSeconds < to)
            .Select(r => r.LatencyMs).Order().ElementAt(result.Requests.Count(r => r.ArrivalSeconds >= from && r.ArrivalSeconds < to) / 2);
        Assert.InRange(Median(5, 29), 29, 40);  // alone
        Assert.InRange(Median(32, 48), 59, 75); // beside two starting
        Assert.InRange(Median(55, 90), 29, 40); // three serving, rarely at once at 5 rps
    }
}
