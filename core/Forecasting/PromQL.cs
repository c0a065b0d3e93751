namespace Adaptive.Core.Forecasting;

/// <summary>
/// PromQL's <c>rate()</c> and <c>irate()</c> of a counter, as Prometheus evaluates them (promql/functions.go:
/// <c>extrapolatedRate</c>, <c>instantValue</c>), over the samples of one series. Counters here never reset (a router's
/// counters start once), so resets are not handled. The window is left-open, (t − window, t], as in Prometheus 3;
/// Prometheus 2 also takes a sample that falls exactly on the window's start, which real scrapes' millisecond offsets make rare.
/// </summary>
public static class PromQL
{
    /// <summary>
    /// <c>rate(counter[window])</c> at <paramref name="t"/>: the increase between the first and last samples in the window,
    /// stretched toward the window's edges (all the way to an edge where a sample is about where one was due, else by half the
    /// average gap; never back past the counter's zero), per second of the window. Null where the window holds fewer than two
    /// samples: Prometheus gives no point.
    /// </summary>
    /// <param name="samples">(time in seconds, value), oldest first.</param>
    public static double? Rate(IReadOnlyList<(double Time, double Value)> samples, double t, double windowSeconds)
    {
        var (first, last, count) = InWindow(samples, t, windowSeconds);
        if (count < 2) return null;
        var (firstTime, firstValue) = samples[first];
        var (lastTime, lastValue) = samples[last];
        double increase = lastValue - firstValue, sampled = lastTime - firstTime;
        double averageGap = sampled / (count - 1), threshold = 1.1 * averageGap;
        double toStart = firstTime - (t - windowSeconds), toEnd = t - lastTime;
        if (toStart >= threshold) toStart = averageGap / 2;
        if (increase > 0 && firstValue >= 0) toStart = Math.Min(toStart, sampled * firstValue / increase);
        if (toEnd >= threshold) toEnd = averageGap / 2;
        return increase * (sampled + toStart + toEnd) / sampled / windowSeconds;
    }

    /// <summary><c>irate(counter[window])</c> at <paramref name="t"/>: the rate between the window's last two samples; null where it holds fewer.</summary>
    public static double? InstantRate(IReadOnlyList<(double Time, double Value)> samples, double t, double windowSeconds)
    {
        var (_, last, count) = InWindow(samples, t, windowSeconds);
        return count < 2 ? null : (samples[last].Value - samples[last - 1].Value) / (samples[last].Time - samples[last - 1].Time);
    }

    /// <summary>
    /// A range query (<c>query_range</c>): <paramref name="query"/> every <paramref name="stepSeconds"/> from <paramref name="end"/> −
    /// <paramref name="lengthSeconds"/> to <paramref name="end"/>, oldest first, the steps without a point left out.
    /// </summary>
    public static double[] Range(Func<int, double?> query, int end, int lengthSeconds, int stepSeconds)
    {
        var points = new List<double>();
        for (int t = end - lengthSeconds / stepSeconds * stepSeconds; t <= end; t += stepSeconds)
            if (query(t) is { } value) points.Add(value);
        return [.. points];
    }

    /// <summary>The indexes of the first and last samples in (t − window, t], and how many there are.</summary>
    static (int First, int Last, int Count) InWindow(IReadOnlyList<(double Time, double Value)> samples, double t, double windowSeconds)
    {
        int first = -1, last = -1;
        for (int i = 0; i < samples.Count; i++)
        {
            if (samples[i].Time <= t - windowSeconds || samples[i].Time > t) continue;
            if (first < 0) first = i;
            last = i;
        }
        return first < 0 ? (0, 0, 0) : (first, last, last - first + 1);
    }
}
