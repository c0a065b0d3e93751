namespace Adaptive.Experiments.Bench;

public static class Percentiles
{
    /// <summary>The nearest-rank percentile (q in 0..1) of an ascending list; NaN when it is empty.</summary>
    public static double Of(IReadOnlyList<double> sorted, double q) =>
        sorted.Count == 0 ? double.NaN : sorted[Math.Clamp((int)Math.Ceiling(q * sorted.Count) - 1, 0, sorted.Count - 1)];
}
