using ScottPlot;

namespace Adaptive.Experiments.Replay;

/// <summary>The replay's PNG plots (ScottPlot), one series per policy.</summary>
public static class ReplayPlots
{
    public static void Write(string directory, IReadOnlyList<PolicyRun> runs)
    {
        var timelines = runs.Select(r => (r.Policy, Points: ReplayReport.Timeline(r))).ToList();
        double[] seconds = [.. timelines[0].Points.Select(p => (double)p.Second)];

        var load = new Plot();
        load.Add.Scatter(seconds, [.. timelines[0].Points.Select(p => p.ArrivalRps)]).LegendText = "arrivals";
        foreach (var (policy, points) in timelines.Where(t => !t.Points.All(p => double.IsNaN(p.ForecastRps))))
            load.Add.ScatterLine(seconds, [.. points.Select(p => p.ForecastRps)]).LegendText = $"{policy} plans for";
        Save(load, "Load and the load each policy planned for", "requests per second", Path.Combine(directory, "load.png"));

        Series(timelines, p => p.Replicas, "Replicas", "replicas", Path.Combine(directory, "replicas.png"));
        var latency = new Plot();
        foreach (var (policy, points) in timelines)
        {
            double[] x = [.. points.Select(p => (double)p.Second)];
            var p99 = latency.Add.ScatterLine(x, [.. points.Select(p => p.P99Ms)]);
            p99.LegendText = $"{policy} p99";
            var p50 = latency.Add.ScatterLine(x, [.. points.Select(p => p.P50Ms)]);
            (p50.LegendText, p50.Color, p50.LinePattern) = ($"{policy} p50", p99.Color, LinePattern.Dashed);
        }
        Save(latency, $"p50 (dashed) and p99 latency of the requests arriving in each {ReplayReport.BucketSeconds} s", "ms", Path.Combine(directory, "latency.png"));
        Series(timelines, p => p.Accuracy, "Mean accuracy of the requests served", "accuracy", Path.Combine(directory, "accuracy.png"));
        Series(timelines, p => p.CostPerSecond, "Cost rate (replicas weighted by class cost)", "cost per second", Path.Combine(directory, "cost.png"));

        foreach (var run in runs)
        {
            var plot = new Plot();
            var keys = run.Result.Seconds.SelectMany(s => s.Replicas.Keys).Distinct().Order().ToList();
            double[] everySecond = [.. Enumerable.Range(0, run.Result.Seconds.Count).Select(s => (double)s)];
            foreach (var key in keys)
                plot.Add.ScatterLine(everySecond, [.. run.Result.Seconds.Select(s => (double)s.Replicas.GetValueOrDefault(key))]).LegendText = key;
            Save(plot, $"{run.Policy}: replicas by stage, variant, class and batch", "replicas", Path.Combine(directory, $"variants-{FileName(run.Policy)}.png"));
        }
    }

    /// <summary>"ipa (live)" → "ipa-live".</summary>
    static string FileName(string policy) => string.Join('-', policy.Split([' ', '(', ')'], StringSplitOptions.RemoveEmptyEntries));

    static void Series(List<(string Policy, IReadOnlyList<TimelinePoint> Points)> timelines, Func<TimelinePoint, double> value, string title, string unit, string path)
    {
        var plot = new Plot();
        foreach (var (policy, points) in timelines)
            plot.Add.ScatterLine(points.Select(p => (double)p.Second).ToArray(), points.Select(value).ToArray()).LegendText = policy;
        Save(plot, title, unit, path);
    }

    static void Save(Plot plot, string title, string unit, string path)
    {
        plot.Title(title);
        plot.XLabel("seconds into the window");
        plot.YLabel(unit);
        plot.ShowLegend(Edge.Right);
        plot.SavePng(path, 1200, 600);
    }
}
