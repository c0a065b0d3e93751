namespace Adaptive.Core.Workloads;

/// <summary>An arrival pattern: the request rate of each second, in requests per second.</summary>
public sealed record Workload(string Name, IReadOnlyList<double> RatePerSecond)
{
    public int Seconds => RatePerSecond.Count;
    public double Mean => RatePerSecond.Count == 0 ? 0 : RatePerSecond.Average();
    public double Peak => RatePerSecond.Count == 0 ? 0 : RatePerSecond.Max();
}

/// <summary>
/// Windows of a recorded trace and the synthetic patterns the experiments replay. Deterministic: the same
/// arguments (and seed) give the same workload.
/// </summary>
public static class WorkloadPatterns
{
    /// <summary>IPA's Twitter window: seconds 1,301,160 to 1,302,360 with the load divided by 8.</summary>
    public const int IpaWindowStart = 1_301_160;
    public const int IpaWindowSeconds = 1_200;
    public const double IpaDamping = 8;

    /// <summary>Seconds [start, start + length) of a per-second trace, each count divided by <paramref name="damping"/>.</summary>
    public static Workload Window(IReadOnlyList<int> trace, int start, int length, double damping, string name = "twitter")
    {
        if (start < 0 || length < 1 || start + (long)length > trace.Count)
            throw new ArgumentOutOfRangeException(nameof(start), $"the window [{start}, {start + (long)length}) is not inside the trace's {trace.Count} seconds");
        if (!(damping > 0)) throw new ArgumentOutOfRangeException(nameof(damping), damping, "the damping factor must be greater than 0");
        var rates = new double[length];
        for (int i = 0; i < length; i++) rates[i] = trace[start + i] / damping;
        return new Workload($"{name}[{start}+{length}]/{damping:G}", rates);
    }

    public static Workload Steady(double rate, int seconds) =>
        new($"steady {rate:G} rps", [.. Enumerable.Repeat(Check(rate), CheckSeconds(seconds))]);

    /// <summary>A sine around <paramref name="mean"/> with the given amplitude and period, plus ±10 % noise.</summary>
    public static Workload Fluctuating(double mean, double amplitude, double periodSeconds, int seconds, int seed)
    {
        var random = new Random(seed);
        var rates = new double[CheckSeconds(seconds)];
        for (int t = 0; t < rates.Length; t++)
            rates[t] = Math.Max(0, (Check(mean) + amplitude * Math.Sin(2 * Math.PI * t / periodSeconds)) * (0.9 + 0.2 * random.NextDouble()));
        return new Workload($"fluctuating {mean:G}±{amplitude:G} rps", rates);
    }

    /// <summary>A base rate with bursts: each second starts a burst with probability <paramref name="burstProbability"/>, lasting 5–20 s.</summary>
    public static Workload Bursty(double baseRate, double burstRate, double burstProbability, int seconds, int seed)
    {
        var random = new Random(seed);
        var rates = new double[CheckSeconds(seconds)];
        int burstLeft = 0;
        for (int t = 0; t < rates.Length; t++)
        {
            if (burstLeft == 0 && random.NextDouble() < burstProbability) burstLeft = random.Next(5, 21);
            rates[t] = burstLeft > 0 ? Check(burstRate) : Check(baseRate);
            if (burstLeft > 0) burstLeft--;
        }
        return new Workload($"bursty {baseRate:G}/{burstRate:G} rps", rates);
    }

    /// <summary>A base rate with one spike to <paramref name="spikeRate"/> from <paramref name="spikeStart"/> for <paramref name="spikeSeconds"/>.</summary>
    public static Workload Spike(double baseRate, double spikeRate, int spikeStart, int spikeSeconds, int seconds)
    {
        var rates = new double[CheckSeconds(seconds)];
        for (int t = 0; t < rates.Length; t++)
            rates[t] = t >= spikeStart && t < spikeStart + spikeSeconds ? Check(spikeRate) : Check(baseRate);
        return new Workload($"spike {baseRate:G}→{spikeRate:G} rps", rates);
    }

    static double Check(double rate) =>
        rate >= 0 && double.IsFinite(rate) ? rate : throw new ArgumentOutOfRangeException(nameof(rate), rate, "a rate must be a non-negative number");

    static int CheckSeconds(int seconds) =>
        seconds >= 1 ? seconds : throw new ArgumentOutOfRangeException(nameof(seconds), seconds, "a workload lasts at least one second");
}
