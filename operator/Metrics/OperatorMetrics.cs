using Prometheus;

namespace Adaptive.Operator.Metrics;

/// <summary>The operator's own metrics at <c>/metrics</c>.</summary>
public sealed class OperatorMetrics(CollectorRegistry registry)
{
    readonly MetricFactory factory = Prometheus.Metrics.WithCustomRegistry(registry);

    public Counter Reconciles => field ??= factory.CreateCounter("adaptive_operator_reconciles_total", "Reconciles by result (success, error)", "result");
    public Histogram ReconcileSeconds => field ??= factory.CreateHistogram("adaptive_operator_reconcile_duration_seconds", "Time of one reconcile",
        new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.001, 2, 14) });
    public Counter Decisions => field ??= factory.CreateCounter("adaptive_operator_decisions_total", "Planning decisions by planner status", "status");
    public Histogram SolveSeconds => field ??= factory.CreateHistogram("adaptive_operator_solve_duration_seconds", "Planner solve time",
        new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.001, 2, 14) });
    public Gauge ForecastRps => field ??= factory.CreateGauge("adaptive_operator_forecast_rps", "Forecast peak arrival rate of the next interval", "pipeline");
    public Gauge ObservedRps => field ??= factory.CreateGauge("adaptive_operator_observed_rps", "Latest observed arrival rate", "pipeline");
    public Counter MetricsFailures => field ??= factory.CreateCounter("adaptive_operator_metrics_failures_total", "Failed reads of the arrival-rate history, by failure", "failure");
}
