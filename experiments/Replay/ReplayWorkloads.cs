using Adaptive.Core.Planning;
using Adaptive.Core.Workloads;
using Adaptive.Experiments.Workloads;

namespace Adaptive.Experiments.Replay;

/// <summary>A workload to replay and the arrivals per second before it, which the first forecasts read.</summary>
public sealed record ReplayWorkload(Workload Workload, IReadOnlyList<double> PriorArrivals);

/// <summary>The workloads <c>adaptive replay --workload</c> names: a window of the Twitter trace, or a synthetic pattern.</summary>
public static class ReplayWorkloads
{
    public static readonly IReadOnlyList<string> Names = ["twitter", "steady", "fluctuating", "bursty", "spike"];

    /// <summary>The history before the window that the forecasters see: the operator's default 10 minutes.</summary>
    public const int PriorSeconds = 600;

    public static ReplayWorkload Create(string name, string tracePath, int start, int seconds, double damping, int seed)
    {
        if (seconds < 1) throw new PlanningInputException("--seconds", $"must be at least 1, got {seconds}");
        if (!(damping > 0)) throw new PlanningInputException("--damping", $"must be greater than 0, got {damping}");
        if (name == "twitter") return Twitter(tracePath, start, seconds, damping);
        // Synthetic patterns at the IPA window's scale (mean ≈ 12, peak ≈ 34 rps), divided by the damping relative to its default.
        double scale = WorkloadPatterns.IpaDamping / damping;
        var workload = name switch
        {
            "steady" => WorkloadPatterns.Steady(15 * scale, seconds),
            "fluctuating" => WorkloadPatterns.Fluctuating(15 * scale, 10 * scale, 300, seconds, seed),
            "bursty" => WorkloadPatterns.Bursty(8 * scale, 35 * scale, 0.01, seconds, seed),
            "spike" => WorkloadPatterns.Spike(8 * scale, 40 * scale, seconds / 3, Math.Max(1, seconds / 20), seconds),
            _ => throw new PlanningInputException("--workload", $"unknown workload '{name}'; use {string.Join(", ", Names)}"),
        };
        return new ReplayWorkload(workload, [.. Enumerable.Repeat(workload.RatePerSecond[0], PriorSeconds)]);
    }

    static ReplayWorkload Twitter(string tracePath, int start, int seconds, double damping)
    {
        if (!File.Exists(tracePath)) throw new PlanningInputException("--trace", $"no such file: {tracePath}");
        var trace = TwitterTrace.Load(tracePath);
        if (start < 0 || start + (long)seconds > trace.Length)
            throw new PlanningInputException("--start/--seconds", $"the window [{start}, {start + (long)seconds}) is not inside the trace's {trace.Length} seconds");
        var workload = WorkloadPatterns.Window(trace, start, seconds, damping);
        int from = Math.Max(0, start - PriorSeconds);
        var prior = Enumerable.Repeat(workload.RatePerSecond[0], PriorSeconds - (start - from))
            .Concat(Enumerable.Range(from, start - from).Select(s => trace[s] / damping));
        return new ReplayWorkload(workload, [.. prior]);
    }
}
