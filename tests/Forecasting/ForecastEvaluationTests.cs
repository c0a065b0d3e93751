using Adaptive.Core.Forecasting;
using Adaptive.Experiments.Workloads;

namespace Adaptive.Tests.Forecasting;

public sealed class ForecastEvaluationTests
{
    [Fact]
    public void A_steady_load_is_forecast_exactly_by_every_forecaster()
    {
        var steady = Enumerable.Repeat(40.0, 3600).ToArray();
        foreach (var name in new[] { "last-value", "moving-max", "ewma-trend" })
        {
            var score = ForecastEvaluation.Evaluate(LoadForecasters.Create(name), steady, 600, 3600, 30, 600);
            Assert.Equal(100, score.Decisions);
            Assert.Equal(0, score.MaeRps, 6);
            Assert.Equal(0, score.UnderPredictionRate);
        }
    }

    /// <summary>
    /// On a held-out day of the real trace (day 21 of 22), decisions every 30 s from 10 minutes of history:
    /// the moving max under-predicts far less often than the last value, at the price of some error.
    /// </summary>
    [Fact]
    public void On_a_held_out_day_of_the_twitter_trace_moving_max_under_predicts_less_than_last_value()
    {
        double[] rates = [.. TwitterTrace.Load(TwitterTrace.DefaultPath).Select(c => (double)c)];
        int day = 86_400, start = 20 * day, end = 21 * day;
        var lastValue = ForecastEvaluation.Evaluate(new LastValueForecaster(), rates, start, end, 30, 600);
        var movingMax = ForecastEvaluation.Evaluate(new MovingMaxForecaster(window: 60), rates, start, end, 30, 600);
        var ewma = ForecastEvaluation.Evaluate(new EwmaTrendForecaster(), rates, start, end, 30, 600);

        Assert.Equal(2880, lastValue.Decisions);
        Assert.True(movingMax.UnderPredictionRate < lastValue.UnderPredictionRate / 2,
            $"moving max under-predicts {movingMax.UnderPredictionRate:P1}, last value {lastValue.UnderPredictionRate:P1}");
        Assert.True(lastValue.UnderPredictionRate > 0.5, $"the next 30 s usually peak above the last second: {lastValue.UnderPredictionRate:P1}");
        Assert.All(new[] { lastValue, movingMax, ewma }, s => Assert.InRange(s.MapePercent, 1, 100));
    }

    [Fact]
    public void A_window_without_enough_history_is_refused()
    {
        var rates = new double[1000];
        Assert.Throws<ArgumentOutOfRangeException>(() => ForecastEvaluation.Evaluate(new LastValueForecaster(), rates, 100, 1000, 30, 600));
        Assert.Throws<ArgumentOutOfRangeException>(() => ForecastEvaluation.Evaluate(new LastValueForecaster(), rates, 600, 2000, 30, 600));
    }
}
