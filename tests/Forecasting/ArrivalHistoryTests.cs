using Adaptive.Core.Forecasting;

namespace Adaptive.Tests.Forecasting;

public sealed class ArrivalHistoryTests
{
    [Fact]
    public void Rates_are_windowed_means_every_step_ending_now()
    {
        double[] arrivals = [.. Enumerable.Range(0, 100).Select(s => (double)(s < 50 ? 10 : 30))];
        var rates = ArrivalHistory.PrometheusRates(arrivals, 100, historySeconds: 60, stepSeconds: 10, windowSeconds: 20);
        Assert.Equal([10, 20, 30, 30, 30, 30], rates); // at 50, 60, …, 100
    }

    [Fact]
    public void A_window_reaching_before_the_data_is_cut_at_its_start()
    {
        var rates = ArrivalHistory.PrometheusRates([4, 8], 2, historySeconds: 600, stepSeconds: 1, windowSeconds: 30);
        Assert.Equal([4, 6], rates);
        Assert.Throws<ArgumentOutOfRangeException>(() => ArrivalHistory.PrometheusRates([4, 8], 3, 10, 1, 1));
    }
}
