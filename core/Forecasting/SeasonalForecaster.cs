namespace Adaptive.Core.Forecasting;

/// <summary>
/// Seasonal naive with a level correction: the next interval's peak one season ago (a day, for the Twitter
/// trace's daily cycle), scaled by how the last <see cref="LevelSteps"/> compare with the same steps a season ago.
/// It needs a season of history, which is more than the operator keeps (Prometheus range queries are capped at
/// 11,000 points), so it serves the forecast evaluation, not <c>spec.adaptation.forecaster</c>.
/// </summary>
public sealed class SeasonalForecaster(int seasonSteps) : ILoadForecaster
{
    const int LevelSteps = 12;

    public string Name => "seasonal";

    /// <summary>The history a forecast needs, in steps.</summary>
    public int RequiredHistory(int horizon) => seasonSteps + LevelSteps + horizon;

    public double ForecastPeak(IReadOnlyList<double> history, int horizon)
    {
        LoadForecasters.Check(history, horizon);
        if (history.Count < seasonSteps + LevelSteps)
            throw new ArgumentException($"the seasonal forecaster needs {seasonSteps + LevelSteps} steps of history, got {history.Count}", nameof(history));
        int n = history.Count;
        double peakThen = 0;
        for (int i = n - seasonSteps; i < Math.Min(n, n - seasonSteps + horizon); i++) peakThen = Math.Max(peakThen, history[i]);
        double levelNow = 0, levelThen = 0;
        for (int i = 0; i < LevelSteps; i++)
        {
            levelNow += history[n - 1 - i];
            levelThen += history[n - 1 - seasonSteps - i];
        }
        return levelThen > 0 ? peakThen * levelNow / levelThen : levelNow / LevelSteps;
    }
}
