using Adaptive.Core.Planning;

namespace Adaptive.Core.Queueing;

/// <summary>
/// How long one replica takes to run one batch, as a distribution fitted to the two numbers a profile gives:
/// its mean is <c>batch / throughput</c> (what one replica sustains back to back) and its 99th percentile is
/// <c>latencyMs</c>. A lognormal is fixed by those two: with σ its shape, p99 / mean = e^(z₉₉·σ − σ²/2),
/// z₉₉ = 2.3263, whose smaller root is σ = z₉₉ − √(z₉₉² − 2·ln(p99 / mean)). A profile whose p99 is not above
/// its mean (a batch measured alone can be faster than back to back) is deterministic at the mean, and a
/// ratio beyond what a lognormal can reach (about 15) takes the largest σ, z₉₉.
/// </summary>
public sealed record ServiceTime(double MeanMs, double P99Ms, double Sigma)
{
    public const double Z99 = 2.3263478740408408;

    public static ServiceTime Of(ProfilePoint point)
    {
        if (!(point.Throughput > 0) || !(point.LatencyMs > 0))
            throw new ArgumentException($"batch {point.Batch}: latency ({point.LatencyMs} ms) and throughput ({point.Throughput}/s) must be greater than 0", nameof(point));
        return Fit(1000.0 * point.Batch / point.Throughput, point.LatencyMs);
    }

    public static ServiceTime Fit(double meanMs, double p99Ms)
    {
        if (p99Ms <= meanMs) return new ServiceTime(meanMs, meanMs, 0);
        double logRatio = Math.Log(p99Ms / meanMs);
        double discriminant = Z99 * Z99 - 2 * logRatio;
        double sigma = discriminant > 0 ? Z99 - Math.Sqrt(discriminant) : Z99;
        return new ServiceTime(meanMs, meanMs * Math.Exp(Z99 * sigma - sigma * sigma / 2), sigma);
    }

    /// <summary>The squared coefficient of variation, Var/mean².</summary>
    public double SquaredVariation => Math.Exp(Sigma * Sigma) - 1;

    /// <summary>One draw, in milliseconds.</summary>
    public double Sample(Random random)
    {
        if (Sigma == 0) return MeanMs;
        double normal = Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
        return MeanMs * Math.Exp(Sigma * normal - Sigma * Sigma / 2);
    }
}
