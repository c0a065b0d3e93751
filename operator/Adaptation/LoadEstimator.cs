using Adaptive.Core.Adaptation;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Forecasting;
using Adaptive.Operator.Metrics;

namespace Adaptive.Operator.Adaptation;

/// <summary>The load a decision plans for, the latest observed rate, the forecaster that predicted it, and how often the router is scraped.</summary>
public sealed record LoadEstimate(PlanningLoad Planned, double ObservedRps, string Forecaster, ScrapeInterval? Scrapes = null);

/// <summary>What the surge rule reads between decisions: the rate between the last two scrapes, the one a scrape before, the share of the requests answered between the last two scrapes that missed the SLO, and the scrapes they were read from.</summary>
public sealed record LatestLoad(double Rps, double PreviousRps, double MissedShare, RouterScrapes Scrapes);

/// <summary>How often Prometheus scrapes a pipeline's router: measured from its samples, or assumed until there are two.</summary>
public sealed record ScrapeInterval(TimeSpan Every, bool Measured)
{
    public string Describe() => Measured ? $"Prometheus scrapes the router every {Every.TotalSeconds:0.#} s"
        : $"the router's scrape interval is not measured yet (fewer than two scrapes); assuming {Every.TotalSeconds:0.#} s";
}

/// <summary>
/// Reads a pipeline's arrival-rate history from its Prometheus, forecasts the next interval's peak with the
/// pipeline's forecaster and finds the highest rate of its scale-down stabilization window. Throws <see cref="MetricsUnavailableException"/> when there is nothing
/// to forecast from; the reconciler then keeps what runs. The windows of its rate queries follow the router's scrape interval, which
/// it measures each time (<see cref="PrometheusClient.Scrapes"/>): the history's rates span two scrapes, the latest rate is the one between the last two.
/// </summary>
/// <param name="step">History resolution.</param>
/// <param name="assumedScrapeInterval">The scrape interval until Prometheus holds two scrapes of the router to measure it from.</param>
public sealed class LoadEstimator(HttpClient http, Uri? defaultPrometheus, TimeSpan step, TimeSpan assumedScrapeInterval)
{
    public async Task<LoadEstimate> Estimate(InferencePipeline pipeline, DateTimeOffset now, CancellationToken cancellation)
    {
        var adaptation = pipeline.Spec.Adaptation;
        var prometheus = Prometheus(pipeline);
        var interval = Interval(await prometheus.Scrapes(pipeline.Metadata.Name, now, cancellation));
        var scrape = interval.Every;
        var history = await prometheus.ArrivalRateHistory(pipeline.Metadata.Name, now, TimeSpan.FromSeconds(adaptation.Metrics.HistorySeconds), step,
            ArrivalHistory.RateQueryWindow(2 * scrape, scrape), cancellation);
        var forecaster = LoadForecasters.Create(adaptation.Forecaster);
        int horizon = AdaptationDecider.ForecastHorizon(adaptation.IntervalSeconds, step.TotalSeconds);
        var (latest, _) = await LatestRates(prometheus, pipeline, now, scrape, cancellation);
        var planned = new PlanningLoad(forecaster.ForecastPeak(history, horizon),
            PlanningLoad.RecentPeak(history, step.TotalSeconds, adaptation.ScaleDownStabilizationSeconds, adaptation.IntervalSeconds, LastScaleUp(pipeline.Status), now),
            LatestRps: latest);
        return new LoadEstimate(planned, history[^1], forecaster.Name, interval);
    }

    /// <summary>
    /// The rate between the last two scrapes (Prometheus' irate) and the one a scrape before (a step before, it would often be
    /// the same two scrapes, and a rise would show no trend).
    /// </summary>
    static async Task<(double Rps, double PreviousRps)> LatestRates(PrometheusClient prometheus, InferencePipeline pipeline, DateTimeOffset now, TimeSpan scrape,
        CancellationToken cancellation)
    {
        var history = await prometheus.ArrivalRateHistory(pipeline.Metadata.Name, now, scrape, scrape, LatestWindow(scrape), cancellation, latestOnly: true);
        return (history[^1], history.Count > 1 ? history[^2] : history[^1]);
    }

    /// <summary>The window of an <c>irate</c> query: it holds the last two scrapes.</summary>
    static TimeSpan LatestWindow(TimeSpan scrape) => 2 * scrape;

    /// <summary>For the surge rule between decisions (<see cref="LatestLoad"/>).</summary>
    public async Task<LatestLoad> Latest(InferencePipeline pipeline, DateTimeOffset now, CancellationToken cancellation)
    {
        var prometheus = Prometheus(pipeline);
        string name = pipeline.Metadata.Name;
        var scrapes = await prometheus.Scrapes(name, now, cancellation)
            ?? throw new MetricsUnavailableException(MetricsFailure.NoData, $"Prometheus holds no scrape of pipeline '{name}'s router");
        var scrape = Interval(scrapes).Every;
        var (latest, previous) = await LatestRates(prometheus, pipeline, now, scrape, cancellation);
        double missed = await prometheus.LatestMissedShare(name, now, LatestWindow(scrape), cancellation);
        return new LatestLoad(latest, previous, missed, scrapes);
    }

    /// <summary>When and how often Prometheus scrapes the pipeline's router (<see cref="PrometheusClient.Scrapes"/>); null when it holds no scrape.</summary>
    public Task<RouterScrapes?> Scrapes(InferencePipeline pipeline, DateTimeOffset now, CancellationToken cancellation) =>
        Prometheus(pipeline).Scrapes(pipeline.Metadata.Name, now, cancellation);

    /// <summary>When the router's next scrape is due: its last one plus the scrape interval.</summary>
    public DateTimeOffset NextScrape(RouterScrapes scrapes) => scrapes.Last + Interval(scrapes).Every;

    ScrapeInterval Interval(RouterScrapes? scrapes) => scrapes is { Interval: { } measured } ? new(measured, true) : new(assumedScrapeInterval, false);

    /// <summary>The last scale-up the status records; a status written before it recorded the planned load holds the held one.</summary>
    static ScaleUp? LastScaleUp(InferencePipelineStatus? status) =>
        status is { LastScaleUpTime: { } time, LastScaleUpLoadRps: { } held } ? new ScaleUp(time, held, status.LastScaleUpPlannedRps ?? held) : null;

    PrometheusClient Prometheus(InferencePipeline pipeline)
    {
        var source = pipeline.Spec.Adaptation.Metrics.PrometheusUrl is { Length: > 0 } url ? new Uri(url) : defaultPrometheus
            ?? throw new MetricsUnavailableException(MetricsFailure.Unreachable,
                "no Prometheus configured: set spec.adaptation.metrics.prometheusUrl or the operator's --prometheus-url");
        return new PrometheusClient(http, source);
    }
}
