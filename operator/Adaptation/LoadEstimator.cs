using Adaptive.Core.Adaptation;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Forecasting;
using Adaptive.Operator.Metrics;

namespace Adaptive.Operator.Adaptation;

/// <summary>The load a decision plans for, the latest observed rate, and the forecaster that predicted it.</summary>
public sealed record LoadEstimate(PlanningLoad Planned, double ObservedRps, string Forecaster);

/// <summary>
/// Reads a pipeline's arrival-rate history from its Prometheus, forecasts the next interval's peak with the
/// pipeline's forecaster and finds the highest rate of its scale-down stabilization window. Throws <see cref="MetricsUnavailableException"/> when there is nothing
/// to forecast from; the reconciler then keeps what runs.
/// </summary>
/// <param name="step">History resolution.</param>
/// <param name="scrapeInterval">How often Prometheus scrapes the routers. The history's rates span two scrapes; the latest rate is the one between the last two.</param>
public sealed class LoadEstimator(HttpClient http, Uri? defaultPrometheus, TimeSpan step, TimeSpan scrapeInterval)
{
    readonly TimeSpan rateWindow = ArrivalHistory.RateQueryWindow(2 * scrapeInterval, scrapeInterval);
    readonly TimeSpan latestWindow = 2 * scrapeInterval; // irate: it holds the last two scrapes

    public async Task<LoadEstimate> Estimate(InferencePipeline pipeline, DateTimeOffset now, CancellationToken cancellation)
    {
        var adaptation = pipeline.Spec.Adaptation;
        var history = await Prometheus(pipeline).ArrivalRateHistory(pipeline.Metadata.Name, now,
            TimeSpan.FromSeconds(adaptation.Metrics.HistorySeconds), step, rateWindow, cancellation);
        var forecaster = LoadForecasters.Create(adaptation.Forecaster);
        int horizon = AdaptationDecider.ForecastHorizon(adaptation.IntervalSeconds, step.TotalSeconds);
        var (latest, _) = await LatestRates(pipeline, now, cancellation);
        var planned = new PlanningLoad(forecaster.ForecastPeak(history, horizon),
            PlanningLoad.RecentPeak(history, step.TotalSeconds, adaptation.ScaleDownStabilizationSeconds, LastScaleUp(pipeline.Status), now),
            LatestRps: latest);
        return new LoadEstimate(planned, history[^1], forecaster.Name);
    }

    /// <summary>
    /// The rate between the last two scrapes (Prometheus' irate) and the one a scrape before (a step before, it would often be
    /// the same two scrapes, and a rise would show no trend).
    /// </summary>
    async Task<(double Rps, double PreviousRps)> LatestRates(InferencePipeline pipeline, DateTimeOffset now, CancellationToken cancellation)
    {
        var history = await Prometheus(pipeline).ArrivalRateHistory(pipeline.Metadata.Name, now, scrapeInterval, scrapeInterval, latestWindow, cancellation, latestOnly: true);
        return (history[^1], history.Count > 1 ? history[^2] : history[^1]);
    }

    /// <summary>
    /// For the surge rule between decisions: the rate between the last two scrapes, the one a step before, and the share of the
    /// requests answered between the last two scrapes that missed the SLO.
    /// </summary>
    public async Task<(double Rps, double PreviousRps, double MissedShare)> Latest(InferencePipeline pipeline, DateTimeOffset now, CancellationToken cancellation)
    {
        var (latest, previous) = await LatestRates(pipeline, now, cancellation);
        double missed = await Prometheus(pipeline).LatestMissedShare(pipeline.Metadata.Name, now, latestWindow, cancellation);
        return (latest, previous, missed);
    }

    /// <summary>When the router's next scrape is due: its last one, as Prometheus holds it, plus the scrape interval; null when it holds none.</summary>
    public async Task<DateTimeOffset?> NextScrape(InferencePipeline pipeline, DateTimeOffset now, CancellationToken cancellation) =>
        await Prometheus(pipeline).LastScrape(pipeline.Metadata.Name, now, cancellation) + scrapeInterval;

    static (DateTimeOffset, double)? LastScaleUp(InferencePipelineStatus? status) =>
        status is { LastScaleUpTime: { } time, LastScaleUpLoadRps: { } rps } ? (time, rps) : null;

    PrometheusClient Prometheus(InferencePipeline pipeline)
    {
        var source = pipeline.Spec.Adaptation.Metrics.PrometheusUrl is { Length: > 0 } url ? new Uri(url) : defaultPrometheus
            ?? throw new MetricsUnavailableException(MetricsFailure.Unreachable,
                "no Prometheus configured: set spec.adaptation.metrics.prometheusUrl or the operator's --prometheus-url");
        return new PrometheusClient(http, source);
    }
}
