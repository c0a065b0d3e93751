using Adaptive.Core.Forecasting;

namespace Adaptive.Tests.Forecasting;

public sealed class ForecasterTests
{
    static readonly double[] Ramp = [.. Enumerable.Range(0, 120).Select(i => 10.0 + i)]; // +1 rps per step

    [Fact]
    public void Last_value_and_moving_max_follow_their_definitions()
    {
        double[] history = [5, 9, 3, 7, 4];
        Assert.Equal(4, new LastValueForecaster().ForecastPeak(history, 30));
        Assert.Equal(7, new MovingMaxForecaster().ForecastPeak(history, 2));   // window = horizon: the last two
        Assert.Equal(9, new MovingMaxForecaster().ForecastPeak(history, 30));  // the whole history when shorter
        Assert.Equal(7, new MovingMaxForecaster(window: 3).ForecastPeak(history, 30));
    }

    [Fact]
    public void Ewma_trend_carries_a_rise_to_the_end_of_the_interval_and_never_forecasts_below_zero()
    {
        double forecast = new EwmaTrendForecaster().ForecastPeak(Ramp, 30);
        double truePeak = Ramp[^1] + 30;
        Assert.InRange(forecast, truePeak * 0.9, truePeak * 1.1);
        Assert.True(forecast > new LastValueForecaster().ForecastPeak(Ramp, 30), "a rising load should be forecast above its last value");

        Assert.Equal(50, new EwmaTrendForecaster().ForecastPeak([.. Enumerable.Repeat(50.0, 60)], 30), 6);
        double[] falling = [.. Enumerable.Range(0, 60).Select(i => 100.0 - i)];
        double afterFall = new EwmaTrendForecaster().ForecastPeak(falling, 30);
        Assert.InRange(afterFall, 0, falling[^1] + 10);
        Assert.Equal(0, new EwmaTrendForecaster().ForecastPeak([0, 0, 0], 30));
    }

    [Fact]
    public void Every_forecaster_the_api_names_exists_and_bad_input_is_refused()
    {
        foreach (var name in Adaptive.Core.Api.V1Alpha1.InferencePipelineValidator.Forecasters)
            Assert.Equal(name, LoadForecasters.Create(name).Name);
        Assert.Contains("unknown forecaster 'arima'", Assert.Throws<ArgumentException>(() => LoadForecasters.Create("arima")).Message);
        Assert.Contains("the history is empty", Assert.Throws<ArgumentException>(() => new MovingMaxForecaster().ForecastPeak([], 30)).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new LastValueForecaster().ForecastPeak([1], 0));
    }
}
