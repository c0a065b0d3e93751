namespace Adaptive.Core.Forecasting;

/// <summary>How well a forecaster predicted the peak of each next interval.</summary>
/// <param name="UnderPredictionRate">Share of decisions whose forecast was below the interval's actual peak:
/// those are the intervals that start under-provisioned.</param>
public sealed record ForecastScore(string Forecaster, int Decisions, double MaeRps, double MapePercent, double UnderPredictionRate);

/// <summary>
/// Replays decisions over a per-second trace as the operator makes them: every interval, forecast the next
/// interval's peak from the rate history before it, then compare with the peak that came. The history and
/// the peak are rates over <c>windowSeconds</c> every <c>stepSeconds</c>, as the operator reads them from
/// Prometheus; with 1 and 1 they are the per-second counts themselves.
/// </summary>
public static class ForecastEvaluation
{
    public static ForecastScore Evaluate(ILoadForecaster forecaster, IReadOnlyList<double> rates, int start, int end, int intervalSeconds, int historySeconds,
        int stepSeconds = 1, int windowSeconds = 1)
    {
        if (intervalSeconds < 1 || historySeconds < 1) throw new ArgumentOutOfRangeException(nameof(intervalSeconds), "the interval and the history must be at least one second");
        if (start < historySeconds + windowSeconds - 1 || end > rates.Count || end - start < intervalSeconds)
            throw new ArgumentOutOfRangeException(nameof(start), $"[{start}, {end}) must leave {historySeconds} s of history before it and fit the {rates.Count} s of the trace");
        double absoluteError = 0, percentError = 0;
        int decisions = 0, withLoad = 0, under = 0;
        int horizon = Math.Max(1, (int)Math.Ceiling((double)intervalSeconds / stepSeconds));
        for (int t = start; t + intervalSeconds <= end; t += intervalSeconds)
        {
            var history = ArrivalHistory.PrometheusRates(rates, t, historySeconds, stepSeconds, windowSeconds);
            double forecast = forecaster.ForecastPeak(history, horizon);
            double actual = ArrivalHistory.PeakRate(rates, t, intervalSeconds, stepSeconds, windowSeconds);
            decisions++;
            absoluteError += Math.Abs(forecast - actual);
            if (actual > 0)
            {
                withLoad++;
                percentError += Math.Abs(forecast - actual) / actual;
            }
            if (forecast < actual) under++;
        }
        return new ForecastScore(forecaster.Name, decisions, absoluteError / decisions, withLoad == 0 ? 0 : 100 * percentError / withLoad, (double)under / decisions);
    }
}
