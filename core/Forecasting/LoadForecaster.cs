namespace Adaptive.Core.Forecasting;

/// <summary>
/// Predicts the peak arrival rate of the next adaptation interval from the recent history, as InfAdapter
/// and IPA do. The history is evenly spaced rates (requests per second), oldest first.
/// </summary>
public interface ILoadForecaster
{
    /// <summary>The name an InferencePipeline's <c>spec.adaptation.forecaster</c> uses.</summary>
    string Name { get; }

    /// <param name="history">Rates, oldest first, at least one.</param>
    /// <param name="horizon">How many steps of the history's spacing the next interval spans.</param>
    double ForecastPeak(IReadOnlyList<double> history, int horizon);
}

public static class LoadForecasters
{
    /// <summary>The forecasters by name; every name the API accepts is here.</summary>
    public static ILoadForecaster Create(string name) => name switch
    {
        "last-value" => new LastValueForecaster(),
        "moving-max" => new MovingMaxForecaster(),
        "ewma-trend" => new EwmaTrendForecaster(),
        "learned" => LearnedForecaster.Shipped,
        _ => throw new ArgumentException($"unknown forecaster '{name}'; use last-value, moving-max, ewma-trend or learned", nameof(name)),
    };

    internal static void Check(IReadOnlyList<double> history, int horizon)
    {
        if (history.Count == 0) throw new ArgumentException("the history is empty: there is nothing to forecast from", nameof(history));
        if (horizon < 1) throw new ArgumentOutOfRangeException(nameof(horizon), horizon, "the horizon must be at least one step");
    }
}

/// <summary>The latest rate: reacts at once, and is late on every rise.</summary>
public sealed class LastValueForecaster : ILoadForecaster
{
    public string Name => "last-value";

    public double ForecastPeak(IReadOnlyList<double> history, int horizon)
    {
        LoadForecasters.Check(history, horizon);
        return history[^1];
    }
}

/// <summary>
/// The highest rate over the last window (by default as long as the horizon, the next interval): a
/// peak that happened recently is assumed to come again, so it rarely under-provisions.
/// </summary>
public sealed class MovingMaxForecaster(int? window = null) : ILoadForecaster
{
    public string Name => "moving-max";

    public double ForecastPeak(IReadOnlyList<double> history, int horizon)
    {
        LoadForecasters.Check(history, horizon);
        int length = Math.Min(history.Count, window ?? horizon);
        double peak = double.MinValue;
        for (int i = history.Count - length; i < history.Count; i++) peak = Math.Max(peak, history[i]);
        return peak;
    }
}

/// <summary>
/// Holt's linear method: an exponentially weighted level and trend. The peak of the next interval is
/// the level carried along a rising trend to its end, or the level when the trend falls.
/// </summary>
public sealed class EwmaTrendForecaster(double levelSmoothing = 0.3, double trendSmoothing = 0.1) : ILoadForecaster
{
    public string Name => "ewma-trend";

    public double ForecastPeak(IReadOnlyList<double> history, int horizon)
    {
        LoadForecasters.Check(history, horizon);
        double level = history[0], trend = 0;
        for (int i = 1; i < history.Count; i++)
        {
            double previous = level;
            level = levelSmoothing * history[i] + (1 - levelSmoothing) * (level + trend);
            trend = trendSmoothing * (level - previous) + (1 - trendSmoothing) * trend;
        }
        return Math.Max(0, level + Math.Max(0, trend) * horizon);
    }
}
