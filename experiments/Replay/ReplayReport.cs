using System.Globalization;
using System.Text;
using Adaptive.Core.Simulation;
using Adaptive.Experiments.Bench;
using Adaptive.Experiments.Replay.Policies;

namespace Adaptive.Experiments.Replay;

/// <param name="ViolationRate">Late, rejected and expired requests over all that arrived.</param>
/// <param name="Accuracy">Mean accuracy of the requests served.</param>
/// <param name="Cost">Replica-seconds weighted by each class's cost per replica.</param>
/// <param name="Tuning">The settings a search tuned for the run (<see cref="PolicyRun.Tuning"/>).</param>
public sealed record PolicySummary(string Policy, int Requests, double ViolationRate, double P50Ms, double P99Ms, double Accuracy,
    double Cost, int Reconfigurations, double MeanDecisionMs, double MaxDecisionMs, string? Tuning = null);

/// <summary>One bucket of a policy's run over time.</summary>
public sealed record TimelinePoint(int Second, double ArrivalRps, double ForecastRps, int Replicas, double CostPerSecond,
    double P50Ms, double P99Ms, double Accuracy, double ViolationRate);

/// <summary>Summaries and time series of replayed runs, and their CSV and markdown forms.</summary>
public static class ReplayReport
{
    public const int BucketSeconds = 10;

    public static PolicySummary Summarize(PolicyRun run)
    {
        var result = run.Result;
        var sorted = result.LatenciesMs.Order().ToList();
        var served = result.Requests.Where(r => r.Served).ToList();
        var solves = run.Decisions.Select(d => d.SolveMs).ToList();
        return new PolicySummary(run.Policy, result.Arrived, result.ViolationRate, Percentiles.Of(sorted, 0.5), Percentiles.Of(sorted, 0.99),
            served.Count == 0 ? 0 : served.Average(r => r.Accuracy), result.Cost, run.Decisions.Count(d => d.Reconfigured),
            solves.Average(), solves.Max(), run.Tuning);
    }

    /// <summary>The run in <see cref="BucketSeconds"/> buckets; latency, accuracy and violations by the requests' arrival.</summary>
    public static IReadOnlyList<TimelinePoint> Timeline(PolicyRun run)
    {
        var result = run.Result;
        var byBucket = result.Requests.ToLookup(r => (int)r.ArrivalSeconds / BucketSeconds);
        var points = new List<TimelinePoint>();
        for (int start = 0; start < result.Seconds.Count; start += BucketSeconds)
        {
            int end = Math.Min(start + BucketSeconds, result.Seconds.Count);
            var requests = byBucket[start / BucketSeconds].ToList();
            var latencies = requests.Where(r => r.Served).Select(r => r.LatencyMs).Order().ToList();
            var forecast = run.Decisions.LastOrDefault(d => d.Second <= start)?.PredictedRps ?? double.NaN;
            points.Add(new TimelinePoint(start,
                Enumerable.Range(start, end - start).Average(s => result.ArrivalsPerSecond[s]),
                forecast,
                result.Seconds[start].Replicas.Values.Sum(),
                Enumerable.Range(start, end - start).Average(s => result.Seconds[s].CostPerSecond),
                Percentiles.Of(latencies, 0.5), Percentiles.Of(latencies, 0.99),
                latencies.Count == 0 ? double.NaN : requests.Where(r => r.Served).Average(r => r.Accuracy),
                requests.Count == 0 ? 0 : (double)requests.Count(r => r.Outcome != RequestOutcome.OnTime) / requests.Count));
        }
        return points;
    }

    public static string Csv(IReadOnlyList<PolicySummary> summaries)
    {
        var text = new StringBuilder("policy,requests,slo_violation_rate,p50_ms,p99_ms,accuracy,cost,reconfigurations,mean_decision_ms,max_decision_ms\n");
        foreach (var s in summaries)
            text.AppendLine(Join(s.Policy, s.Requests, s.ViolationRate, s.P50Ms, s.P99Ms, s.Accuracy, s.Cost, s.Reconfigurations, s.MeanDecisionMs, s.MaxDecisionMs));
        return text.ToString();
    }

    public static string TimelineCsv(IReadOnlyList<PolicyRun> runs)
    {
        var text = new StringBuilder("policy,second,arrival_rps,forecast_rps,replicas,cost_per_second,p50_ms,p99_ms,accuracy,violation_rate\n");
        foreach (var run in runs)
            foreach (var p in Timeline(run))
                text.AppendLine(Join(run.Policy, p.Second, p.ArrivalRps, p.ForecastRps, p.Replicas, p.CostPerSecond, p.P50Ms, p.P99Ms, p.Accuracy, p.ViolationRate));
        return text.ToString();
    }

    public static string DecisionsCsv(IReadOnlyList<PolicyRun> runs)
    {
        var text = new StringBuilder("policy,second,predicted_rps,solve_ms,reconfigured,configuration\n");
        foreach (var run in runs)
            foreach (var d in run.Decisions)
                text.AppendLine(Join(run.Policy, d.Second, d.PredictedRps, d.SolveMs, d.Reconfigured ? 1 : 0, $"\"{d.Configuration}\""));
        return text.ToString();
    }

    /// <param name="settings">Lines describing the run: command, pipeline, workload, seed.</param>
    public static string Markdown(IReadOnlyList<PolicySummary> summaries, IReadOnlyList<string> settings)
    {
        var text = new StringBuilder("# adaptive replay\n\n");
        foreach (var line in settings) text.AppendLine($"- {line}");
        text.AppendLine();
        text.AppendLine("| policy | requests | SLO violations | p50 ms | p99 ms | accuracy | cost | reconfigurations | decision ms (mean / max) |");
        text.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var s in summaries)
            text.AppendLine($"| {s.Policy} | {s.Requests} | {Percent(s.ViolationRate)} | {F(s.P50Ms)} | {F(s.P99Ms)} | {s.Accuracy.ToString("0.0000", CultureInfo.InvariantCulture)} | {F(s.Cost)} | {s.Reconfigurations} | {F(s.MeanDecisionMs)} / {F(s.MaxDecisionMs)} |");
        text.AppendLine();
        foreach (var s in summaries.Where(s => ReplayPolicies.Descriptions.ContainsKey(s.Policy)))
            text.AppendLine($"- {s.Policy}: {ReplayPolicies.Descriptions[s.Policy]}");
        if (summaries.Any(s => s.Policy.Contains('@')))
            text.AppendLine($"- P@B: policy P with its cost weight, scale-down stabilization window and target utilization tuned to spend {-IsoCost.Below:P0} … +{IsoCost.Above:P0} of what baseline B spends; of those runs, the most accurate that keeps its violations within max(1 %, B's)");
        foreach (var s in summaries.Where(s => s.Tuning is not null))
            text.AppendLine($"  - {s.Policy}: {s.Tuning}");
        text.AppendLine();
        text.AppendLine("Plots: load.png (load and forecasts), replicas.png, variants-POLICY.png, latency.png (p99), accuracy.png, cost.png. Data: report.csv, timeline.csv, decisions.csv.");
        return text.ToString();
    }

    public static string Percent(double rate) => (100 * rate).ToString("0.00", CultureInfo.InvariantCulture) + " %";

    public static string F(double value) => double.IsNaN(value) ? "-" : value.ToString("0.0", CultureInfo.InvariantCulture);

    static string Join(params object[] values) => string.Join(',', values.Select(v => v switch
    {
        double d => double.IsNaN(d) ? "" : d.ToString("0.######", CultureInfo.InvariantCulture),
        _ => Convert.ToString(v, CultureInfo.InvariantCulture),
    }));
}
