namespace Adaptive.Core.Planning;

/// <summary>
/// CP-SAT reasons over integers: these are the units the planner's model uses and the roundings into
/// them. Every rounding is conservative (a configuration that is feasible in the model is feasible in
/// real numbers), and the units are fine enough that what is lost is far below the planning tolerance.
/// </summary>
static class FixedPoint
{
    /// <summary>Latency unit: one nanosecond.</summary>
    public const long NsPerMs = 1_000_000;

    /// <summary>Share unit: a thousandth of a request per second.</summary>
    public const long ShareUnitsPerRps = 1_000;

    /// <summary>Cost unit: a millionth of the cost of a replica.</summary>
    public const long CostUnitsPerReplica = 1_000_000;

    /// <summary>Product-of-accuracies unit: accuracies normalised to [0, 1] in steps of 1e-7.</summary>
    public const long ProductScale = 10_000_000;

    // Profiles and SLOs are written in decimals; a value within this of a unit boundary is taken as on it,
    // so that 29.2 ms is 29,200,000 ns and not one more.
    const double Noise = 1e-6;

    public static long LatencyNs(double ms) => (long)Math.Ceiling(ms * NsPerMs - Noise * 1000);

    public static long SloNs(double ms) => (long)Math.Floor(ms * NsPerMs + Noise * 1000);

    public static long ShareUnits(double rps) => (long)Math.Round(rps * ShareUnitsPerRps);

    public static long ThroughputUnits(double rps) => (long)Math.Floor(rps * ShareUnitsPerRps + Noise);

    public static long CostUnits(double cost) => (long)Math.Round(cost * CostUnitsPerReplica);

    public static long BudgetUnits(double budget) => (long)Math.Floor(budget * CostUnitsPerReplica + Noise);

    /// <summary>Replicas needed to sustain <paramref name="rate"/> at <paramref name="perReplica"/> each.</summary>
    public static int ReplicasFor(double rate, double perReplica) => (int)Math.Ceiling(rate / perReplica - Noise);
}
