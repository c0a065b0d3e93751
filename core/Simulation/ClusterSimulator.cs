using Adaptive.Core.Planning;
using Adaptive.Core.Workloads;

namespace Adaptive.Core.Simulation;

/// <summary>A running (stage, variant, hardware class) in the simulated cluster: replicas that batch, and its share of the stage's load.</summary>
public sealed record SimulatedGroup(string Variant, string Hardware, int Replicas, int Batch, IReadOnlyList<ProfilePoint> Profile, double Weight);

public sealed record SimulatedStage(string Name, IReadOnlyList<SimulatedGroup> Groups);

/// <param name="LatencyNoise">Coefficient of variation of each batch's service time (multiplicative, lognormal).</param>
public sealed record SimulationOptions(double SloMs, double MaxQueueDelayMs, int QueueCapacity, double LatencyNoise, int Seed);

/// <summary>What happened to every request: each is served or rejected exactly once.</summary>
public sealed record SimulationResult(int Arrived, int Served, int Rejected, int Late, IReadOnlyList<double> LatenciesMs, double MeanInSystem, double DurationSeconds)
{
    public double ViolationRate => Arrived == 0 ? 0 : (double)(Rejected + Late) / Arrived;
}

/// <summary>
/// A discrete-event simulation of a pipeline on a fixed configuration: Poisson arrivals at the workload's
/// per-second rate, a weighted split per stage, a bounded queue per group, replicas that take a batch when
/// it is full or its oldest request has waited the max queue delay, and service times from the profile
/// (the smallest profiled batch that holds the requests) with noise. Runs until every request has left.
/// </summary>
public static class ClusterSimulator
{
    sealed class Request(int id, double arrival)
    {
        public int Id { get; } = id;
        public double Arrival { get; } = arrival;
        public int Stage { get; set; }
    }

    sealed class Group(SimulatedGroup spec)
    {
        public SimulatedGroup Spec { get; } = spec;
        public Queue<(Request Request, double Enqueued)> Queue { get; } = new();
        public int Idle { get; set; } = spec.Replicas;
        public bool TimerSet { get; set; }
    }

    public static SimulationResult Run(IReadOnlyList<SimulatedStage> stages, Workload workload, SimulationOptions options)
    {
        var random = new Random(options.Seed);
        var groups = stages.Select(s => s.Groups.Select(g => new Group(g)).ToArray()).ToArray();
        var credit = stages.Select(s => new double[s.Groups.Count]).ToArray();
        var events = new PriorityQueue<Action, (double, long)>();
        long sequence = 0;
        double now = 0;
        void At(double time, Action action) => events.Enqueue(action, (time, sequence++));

        int arrived = 0, served = 0, rejected = 0, late = 0, inSystem = 0;
        double area = 0, lastChange = 0;
        var latencies = new List<double>();
        void Count(int delta)
        {
            area += inSystem * (now - lastChange);
            lastChange = now;
            inSystem += delta;
        }

        // Arrivals: a Poisson process whose rate changes every second.
        for (int second = 0; second < workload.Seconds; second++)
        {
            double rate = workload.RatePerSecond[second];
            if (rate <= 0) continue;
            for (double t = second + Exponential(random, rate); t < second + 1; t += Exponential(random, rate))
            {
                double arrival = t;
                At(arrival, () =>
                {
                    arrived++;
                    Count(+1);
                    Enter(new Request(arrived, arrival), 0);
                });
            }
        }

        void Enter(Request request, int stage)
        {
            request.Stage = stage;
            var group = groups[stage][Choose(stages[stage], credit[stage])];
            if (group.Queue.Count >= options.QueueCapacity)
            {
                rejected++;
                Count(-1);
                return;
            }
            group.Queue.Enqueue((request, now));
            Dispatch(group);
        }

        void Dispatch(Group group)
        {
            while (group.Idle > 0 && group.Queue.Count > 0)
            {
                double waited = (now - group.Queue.Peek().Enqueued) * 1000;
                if (group.Queue.Count < group.Spec.Batch && waited < options.MaxQueueDelayMs - 1e-6) // tolerance: the timer fires at the deadline
                {
                    if (!group.TimerSet)
                    {
                        group.TimerSet = true;
                        At(group.Queue.Peek().Enqueued + options.MaxQueueDelayMs / 1000, () =>
                        {
                            group.TimerSet = false;
                            Dispatch(group);
                        });
                    }
                    return;
                }
                var batch = new List<Request>();
                while (batch.Count < group.Spec.Batch && group.Queue.Count > 0) batch.Add(group.Queue.Dequeue().Request);
                group.Idle--;
                double serviceMs = ServiceMs(group.Spec, batch.Count) * Noise(random, options.LatencyNoise);
                At(now + serviceMs / 1000, () =>
                {
                    group.Idle++;
                    foreach (var request in batch) Leave(request);
                    Dispatch(group);
                });
            }
        }

        void Leave(Request request)
        {
            if (request.Stage + 1 < stages.Count)
            {
                Enter(request, request.Stage + 1);
                return;
            }
            double latencyMs = (now - request.Arrival) * 1000;
            latencies.Add(latencyMs);
            served++;
            if (latencyMs > options.SloMs) late++;
            Count(-1);
        }

        while (events.TryDequeue(out var action, out var key))
        {
            now = key.Item1;
            action();
        }
        return new SimulationResult(arrived, served, rejected, late, latencies, now > 0 ? area / now : 0, now);
    }

    /// <summary>Smooth weighted round-robin, as the router does it.</summary>
    static int Choose(SimulatedStage stage, double[] credit)
    {
        double total = 0;
        int best = 0;
        for (int i = 0; i < credit.Length; i++)
        {
            credit[i] += stage.Groups[i].Weight;
            total += stage.Groups[i].Weight;
            if (credit[i] > credit[best]) best = i;
        }
        credit[best] -= total;
        return best;
    }

    /// <summary>The latency of the smallest profiled batch that holds <paramref name="requests"/> (the largest when none does).</summary>
    static double ServiceMs(SimulatedGroup group, int requests) =>
        (group.Profile.Where(p => p.Batch >= requests).MinBy(p => p.Batch) ?? group.Profile.MaxBy(p => p.Batch)!).LatencyMs;

    static double Exponential(Random random, double rate) => -Math.Log(1 - random.NextDouble()) / rate;

    /// <summary>Lognormal with mean 1 and the given coefficient of variation.</summary>
    static double Noise(Random random, double cv)
    {
        if (cv <= 0) return 1;
        double sigma = Math.Sqrt(Math.Log(1 + cv * cv));
        double normal = Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
        return Math.Exp(sigma * normal - sigma * sigma / 2);
    }
}
