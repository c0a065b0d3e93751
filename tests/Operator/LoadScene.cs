using Adaptive.Experiments.Live;
using Adaptive.Operator.Metrics;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Operator;

/// <summary>
/// The operator against the API server double, and a real Prometheus reading pipelines' arrival rates from counters that
/// grow at the rates the test sets (<see cref="ArrivalCounters"/>): for tests of what the operator decides at loads a router
/// in front of real models cannot carry on 2 cores.
/// </summary>
sealed class LoadScene(ArrivalCounters load, PrometheusServer prometheus, OperatorHarness harness) : IAsyncDisposable
{
    public ArrivalCounters Load => load;
    public OperatorHarness Harness => harness;

    /// <summary>Starts the counters at <paramref name="rates"/>, Prometheus, and, once Prometheus has scraped them, the operator: the pipelines' first decisions see their load.</summary>
    public static async Task<LoadScene> Start(params (string Pipeline, double Rps)[] rates)
    {
        var load = await ArrivalCounters.Start();
        foreach (var (pipeline, rps) in rates) load.SetRate(pipeline, rps);
        var prometheus = await TestPrometheus.Start(load.Address);
        var history = new PrometheusClient(new HttpClient(), prometheus.Address);
        await OperatorHarness.Eventually(async () =>
        {
            try
            {
                var rate = await history.ArrivalRateHistory(rates[0].Pipeline, DateTimeOffset.UtcNow, TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(3),
                    TestContext.Current.CancellationToken);
                return rate[^1];
            }
            catch (MetricsUnavailableException)
            {
                return 0;
            }
        }, rate => rate > 0, "Prometheus to hold the counters' rates", seconds: 30);
        return new LoadScene(load, prometheus, await OperatorHarness.Start(prometheus: prometheus.Address));
    }

    public async ValueTask DisposeAsync()
    {
        await harness.DisposeAsync();
        await prometheus.DisposeAsync();
        await load.DisposeAsync();
    }
}
