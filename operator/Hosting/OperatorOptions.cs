using Adaptive.Operator.Reconciliation;

namespace Adaptive.Operator.Hosting;

/// <param name="Namespace">The namespace to watch; all when empty.</param>
/// <param name="LeaderElection">Whether to take a Lease before reconciling, so that several replicas can run.</param>
public sealed record OperatorOptions(
    string Host,
    int Port,
    string? Namespace,
    Uri? DefaultPrometheus,
    TimeSpan MetricsStep,
    TimeSpan MetricsRateWindow,
    ReconcilerSettings Reconciler,
    int Workers,
    bool LeaderElection,
    string LeaseNamespace,
    string Identity);
