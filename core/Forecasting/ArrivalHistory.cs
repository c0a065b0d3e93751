namespace Adaptive.Core.Forecasting;

/// <summary>
/// The arrival-rate history as the operator reads it from Prometheus — <c>rate(arrivals[window])</c> evaluated
/// every step — computed from per-second arrival counts, so that a replay or an evaluation forecasts from what
/// the operator would see.
/// </summary>
public static class ArrivalHistory
{
    /// <summary>The operator's history step, and the span of the rates the learned forecaster was trained and is judged on (two scrapes at 15 s).</summary>
    public const int OperatorStepSeconds = 5;
    public const int OperatorWindowSeconds = 30;

    /// <summary>
    /// How often Prometheus scrapes the routers where the project deploys them (the chart's <c>routerMonitor</c>), as the replay assumes
    /// and the operator until it has measured a router's interval: every 5 s, a surge shows within 5 s of its start rather than 15.
    /// </summary>
    public const int OperatorScrapeSeconds = 5;

    /// <summary>
    /// The window of a <c>rate()</c> query for the rate over the last <paramref name="span"/> of scrapes. rate() stretches the
    /// increase between the first and last samples in its window to the window's length, so that over 15 s scrapes
    /// <c>rate(c[30s])</c> is the rate of the last scrape interval alone (twice as quick to swing as a 30 s rate, and
    /// live it was: 35 requests/s where the 30 s rate was 24); a window one scrape interval longer holds the samples that
    /// span the last <paramref name="span"/>.
    /// </summary>
    public static TimeSpan RateQueryWindow(TimeSpan span, TimeSpan scrapeInterval) => span + scrapeInterval;

    /// <param name="arrivalsPerSecond">Requests counted in each second, oldest first.</param>
    /// <param name="endSecond">The decision's time: seconds [0, endSecond) are known.</param>
    /// <returns>The rates at endSecond − historySeconds + step, …, endSecond, oldest first; windows reaching before the data are cut at its start.</returns>
    public static double[] PrometheusRates(IReadOnlyList<double> arrivalsPerSecond, int endSecond, int historySeconds, int stepSeconds, int windowSeconds)
    {
        if (endSecond < 1 || endSecond > arrivalsPerSecond.Count)
            throw new ArgumentOutOfRangeException(nameof(endSecond), endSecond, $"must be within the {arrivalsPerSecond.Count} s of data, after its first second");
        if (historySeconds < 1 || stepSeconds < 1 || windowSeconds < 1)
            throw new ArgumentOutOfRangeException(nameof(historySeconds), "the history, step and window must be at least one second");
        int first = endSecond - (historySeconds - stepSeconds) / stepSeconds * stepSeconds;
        while (first < 1) first += stepSeconds;
        // Prefix sums over the seconds the windows cover: each rate is then one subtraction.
        int from = Math.Max(0, first - windowSeconds);
        var prefix = new double[endSecond - from + 1];
        for (int s = from; s < endSecond; s++) prefix[s - from + 1] = prefix[s - from] + arrivalsPerSecond[s];
        var rates = new double[(endSecond - first) / stepSeconds + 1];
        for (int i = 0, t = first; i < rates.Length; i++, t += stepSeconds)
        {
            int start = Math.Max(0, t - windowSeconds);
            rates[i] = (prefix[t - from] - prefix[start - from]) / (t - start);
        }
        return rates;
    }

    /// <summary>The highest rate the operator would see in (startSecond, startSecond + seconds]: the peak a forecast is judged against.</summary>
    public static double PeakRate(IReadOnlyList<double> arrivalsPerSecond, int startSecond, int seconds, int stepSeconds, int windowSeconds)
    {
        var rates = PrometheusRates(arrivalsPerSecond, startSecond + seconds, seconds, stepSeconds, windowSeconds);
        return rates.Max();
    }
}
