using System.Collections.Concurrent;

namespace Adaptive.Core.Queueing;

/// <summary>
/// The 99th-percentile time a request spends in a stage whose n replicas take batches of up to b requests
/// from one queue, under Poisson arrivals: the latency model of the planner's queueing mode
/// (docs/planning-format.md, "latencyModel"). It is the sum of three parts, each a p99 of its own, so that
/// it errs on the long side:
/// <list type="bullet">
/// <item>batch formation: the stage's max queue delay T when b > 1 (a batch leaves full, or when its oldest request has waited T);</item>
/// <item>waiting for a replica, in an M/D^b/n bulk-service queue: P(W > t) ≈ C·e^(−θt), with C the Erlang C
/// probability of waiting for n servers at offered load a = λ·D/b, and θ = b·n·ln z / D the decay rate of its
/// embedded chain, z > 1 the root of z^(b·n) = e^(λ·D·(z − 1)); θ is divided by 1 + c², c the service time's
/// coefficient of variation, as Kingman's formula scales a queue's wait from deterministic service;</item>
/// <item>service: the batch's p99 (the profile's <c>latencyMs</c>).</item>
/// </list>
/// The p99 grows with the rate, so what n replicas sustain within a latency budget (<see cref="CapacityRps"/>) is
/// found by bisection.
/// </summary>
public static class BatchingStage
{
    public const double TailProbability = 0.01;

    /// <summary>
    /// The waiting part is computed for a tail this many times smaller than <see cref="TailProbability"/>:
    /// with the exact probability of waiting in front, the exponential tail still falls short of a
    /// deterministic queue's (the simulated p99 of M/D/1 and M/D^4/2 at the model's capacity came out 3 %
    /// over the budget without it; BatchingStageTests).
    /// </summary>
    const double WaitingTailMargin = 1.5;

    /// <summary>The p99 time in the stage, ms; infinite when the replicas cannot keep up with <paramref name="rate"/>.</summary>
    public static double P99Ms(double rate, int replicas, int batch, ServiceTime service, double maxQueueDelayMs)
    {
        if (replicas < 1) return double.PositiveInfinity;
        double formation = batch > 1 ? maxQueueDelayMs : 0;
        if (rate <= 0) return formation + service.P99Ms;
        double meanSeconds = service.MeanMs / 1000;
        double offered = rate * meanSeconds / batch;
        if (offered >= replicas) return double.PositiveInfinity;
        double probabilityOfWaiting = ErlangC(replicas, offered);
        double waitingMs = 0;
        const double waitingTail = TailProbability / WaitingTailMargin;
        if (probabilityOfWaiting > waitingTail)
        {
            int servedAtOnce = batch * replicas;
            double decay = servedAtOnce * Math.Log(DecayRoot(rate * meanSeconds, servedAtOnce)) / meanSeconds / (1 + service.SquaredVariation);
            waitingMs = 1000 * Math.Log(probabilityOfWaiting / waitingTail) / decay;
        }
        return formation + waitingMs + service.P99Ms;
    }

    /// <summary>The largest rate (requests per second) whose p99 stays within <paramref name="budgetMs"/>; 0 when none does.</summary>
    public static double CapacityRps(int replicas, int batch, ServiceTime service, double maxQueueDelayMs, double budgetMs)
    {
        if (replicas < 1) return 0;
        var table = Capacities.GetOrAdd(new CapacityKey(batch, service, maxQueueDelayMs, budgetMs), _ =>
        {
            if (Capacities.Count > MaxCachedTables) Capacities.Clear(); // profiles and SLOs change rarely; bound it anyway
            return new CapacityTable();
        });
        return table.At(replicas, batch, service, maxQueueDelayMs, budgetMs);
    }

    const int MaxCachedTables = 1 << 14;
    static readonly ConcurrentDictionary<CapacityKey, CapacityTable> Capacities = new();

    readonly record struct CapacityKey(int Batch, ServiceTime Service, double MaxQueueDelayMs, double BudgetMs);

    /// <summary>
    /// The capacities of 1, 2, … replicas of one (batch, service, delay, budget), found in order: n replicas
    /// sustain at least what n − 1 do and less than their saturation, so each search starts from the last.
    /// </summary>
    sealed class CapacityTable
    {
        readonly List<double> capacities = [0];
        readonly Lock gate = new();

        public double At(int replicas, int batch, ServiceTime service, double maxQueueDelayMs, double budgetMs)
        {
            lock (gate)
            {
                while (capacities.Count <= replicas)
                {
                    int n = capacities.Count;
                    double low = capacities[^1], high = n * batch * 1000 / service.MeanMs; // saturation: never within a budget
                    if (P99Ms(0, n, batch, service, maxQueueDelayMs) > budgetMs) high = low = 0;
                    for (int i = 0; i < 64 && high - low > 1e-7 * high; i++)
                    {
                        double middle = (low + high) / 2;
                        if (P99Ms(middle, n, batch, service, maxQueueDelayMs) <= budgetMs) low = middle;
                        else high = middle;
                    }
                    capacities.Add(low);
                }
                return capacities[replicas];
            }
        }
    }

    /// <summary>
    /// Erlang C: the probability that an arrival waits, for <paramref name="servers"/> servers at offered load
    /// <paramref name="offered"/> &lt; servers, through the Erlang B recursion, which stays stable for large n.
    /// </summary>
    public static double ErlangC(int servers, double offered)
    {
        double blocking = 1;
        for (int k = 1; k <= servers; k++) blocking = offered * blocking / (k + offered * blocking);
        return servers * blocking / (servers - offered * (1 - blocking));
    }

    /// <summary>
    /// The root z > 1 of g(z) = m·ln z − x·(z − 1) = 0, for x &lt; m (a stable queue). g is concave with g(1) = 0,
    /// so Newton's method from a point beyond the root (where g ≤ 0) stays beyond it and converges.
    /// </summary>
    static double DecayRoot(double x, int m)
    {
        double z = Math.Max(2, 2.0 * m / x);
        while (m * Math.Log(z) - x * (z - 1) > 0) z *= 2;
        for (int i = 0; i < 100; i++)
        {
            double step = (m * Math.Log(z) - x * (z - 1)) / (m / z - x);
            z -= step;
            if (Math.Abs(step) <= 1e-14 * z) break;
        }
        return z;
    }
}
