namespace Adaptive.Core.Forecasting;

/// <summary>
/// The arrival-rate history as the operator reads it from Prometheus — <c>rate(arrivals[window])</c> evaluated
/// every step — computed from per-second arrival counts, so that a replay forecasts from what the operator would see.
/// </summary>
public static class ArrivalHistory
{
    /// <param name="arrivalsPerSecond">Requests counted in each second, oldest first.</param>
    /// <param name="endSecond">The decision's time: seconds [0, endSecond) are known.</param>
    /// <returns>The rates at endSecond − historySeconds + step, …, endSecond, oldest first; windows reaching before the data are cut at its start.</returns>
    public static double[] PrometheusRates(IReadOnlyList<double> arrivalsPerSecond, int endSecond, int historySeconds, int stepSeconds, int windowSeconds)
    {
        if (endSecond < 1 || endSecond > arrivalsPerSecond.Count)
            throw new ArgumentOutOfRangeException(nameof(endSecond), endSecond, $"must be within the {arrivalsPerSecond.Count} s of data, after its first second");
        if (historySeconds < 1 || stepSeconds < 1 || windowSeconds < 1)
            throw new ArgumentOutOfRangeException(nameof(historySeconds), "the history, step and window must be at least one second");
        var rates = new List<double>();
        for (int t = endSecond - historySeconds + stepSeconds; t <= endSecond; t += stepSeconds)
        {
            if (t < 1) continue;
            int from = Math.Max(0, t - windowSeconds);
            double sum = 0;
            for (int s = from; s < t; s++) sum += arrivalsPerSecond[s];
            rates.Add(sum / (t - from));
        }
        return [.. rates];
    }
}
