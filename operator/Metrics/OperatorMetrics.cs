using Prometheus;

namespace Adaptive.Operator.Metrics;

/// <summary>The operator's own metrics at <c>/metrics</c>.</summary>
public sealed class OperatorMetrics(CollectorRegistry registry)
{
    readonly MetricFactory factory = Prometheus.Metrics.WithCustomRegistry(registry);

    public Counter Reconciles => field ??= factory.CreateCounter("adaptive_operator_reconciles_total", "Reconciles by result (success; conflict: another writer got there first; error)", "result");
    public Histogram ReconcileSeconds => field ??= factory.CreateHistogram("adaptive_operator_reconcile_duration_seconds", "Time of one reconcile",
        new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.001, 2, 14) });
    public Counter Decisions => field ??= factory.CreateCounter("adaptive_operator_decisions_total", "Planning decisions by planner status", "status");
    public Histogram SolveSeconds => field ??= factory.CreateHistogram("adaptive_operator_solve_duration_seconds", "Planner solve time",
        new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.001, 2, 14) });
    public Gauge ForecastRps => field ??= factory.CreateGauge("adaptive_operator_forecast_rps", "Forecast peak arrival rate of the next interval", "pipeline");
    public Gauge ObservedRps => field ??= factory.CreateGauge("adaptive_operator_observed_rps", "Latest observed arrival rate", "pipeline");
    public Gauge ExpectedAccuracy => field ??= factory.CreateGauge("adaptive_operator_expected_accuracy", "Accuracy the running decision is expected to deliver", "pipeline");
    public Gauge ExpectedCost => field ??= factory.CreateGauge("adaptive_operator_expected_cost", "Cost of the running decision, in the classes' cost unit per replica", "pipeline");
    public Gauge PlannedReplicas => field ??= factory.CreateGauge("adaptive_operator_planned_replicas", "Replicas of the running decision", "pipeline", "stage", "variant", "hardware_class");
    public Gauge PoolReplicas => field ??= factory.CreateGauge("adaptive_operator_pool_replicas",
        "An InferencePool's replicas: its capacity, those held back because members' pods could not be scheduled, and those the last joint decision gave out", "pool", "kind");
    public Counter MetricsFailures => field ??= factory.CreateCounter("adaptive_operator_metrics_failures_total", "Failed reads of the arrival-rate history, by failure", "failure");
}
