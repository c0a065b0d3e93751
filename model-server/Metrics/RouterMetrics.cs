using Prometheus;

namespace Adaptive.ModelServer.Metrics;

/// <summary>
/// The router's metrics. <c>adaptive_pipeline_requests_total</c> is the pipeline's arrival counter the
/// operator forecasts from (its rate), the duration histogram its end-to-end latency, and
/// <c>adaptive_pipeline_slo_misses_total</c> (with the SLO in the configuration) what the operator's surge rule watches.
/// </summary>
public sealed class RouterMetrics
{
    static readonly double[] LatencyBuckets = [.. Histogram.ExponentialBuckets(0.0005, 2, 16)];

    readonly Counter requests;
    readonly Counter sloMisses;
    readonly Histogram duration;
    readonly Counter stageRequests;
    readonly Counter reloads;
    readonly Counter retries;
    readonly Counter ejections;

    public Gauge InFlight { get; }
    public Gauge ConfigGeneration { get; }

    public RouterMetrics(CollectorRegistry registry)
    {
        var factory = Prometheus.Metrics.WithCustomRegistry(registry);
        requests = factory.CreateCounter("adaptive_pipeline_requests_total", "Pipeline requests by outcome (success, bad_request, not_found, too_large, client_closed, timeout, queue_full, error)", "pipeline", "outcome");
        sloMisses = factory.CreateCounter("adaptive_pipeline_slo_misses_total",
            "Pipeline requests that missed the pipeline's SLO: answered after it, refused, timed out or failed (client errors and clients that left are not counted)", "pipeline");
        duration = factory.CreateHistogram("adaptive_pipeline_request_duration_seconds", "End-to-end latency of pipeline requests through the router",
            new HistogramConfiguration { LabelNames = ["pipeline"], Buckets = LatencyBuckets });
        stageRequests = factory.CreateCounter("adaptive_pipeline_stage_requests_total", "Requests the router sent to each stage's variants, by HTTP status class", "pipeline", "stage", "variant", "code");
        reloads = factory.CreateCounter("adaptive_router_config_reloads_total", "Configuration reloads by result (success, failure)", "result");
        retries = factory.CreateCounter("adaptive_router_retries_total", "Stage requests retried on another variant after a failure", "pipeline", "stage");
        ejections = factory.CreateCounter("adaptive_router_ejections_total", "Times a variant was taken out of its stage's traffic after failing in a row", "pipeline", "stage", "variant");
        InFlight = factory.CreateGauge("adaptive_router_inflight_requests", "Pipeline requests in progress");
        ConfigGeneration = factory.CreateGauge("adaptive_router_config_generation", "How many configurations the router has loaded");
    }

    public void Request(string pipeline, string outcome, double seconds)
    {
        requests.WithLabels(pipeline, outcome).Inc();
        duration.WithLabels(pipeline).Observe(seconds);
    }

    public void SloMiss(string pipeline) => sloMisses.WithLabels(pipeline).Inc();

    public void StageRequest(string pipeline, string stage, string variant, int statusCode) =>
        stageRequests.WithLabels(pipeline, stage, variant, $"{statusCode / 100}xx").Inc();

    public void Retry(string pipeline, string stage) => retries.WithLabels(pipeline, stage).Inc();

    public void Ejection(string pipeline, string stage, string variant) => ejections.WithLabels(pipeline, stage, variant).Inc();

    public void Reload(bool success) => reloads.WithLabels(success ? "success" : "failure").Inc();
}
