using Adaptive.Operator.Reconciliation;

namespace Adaptive.Operator.Hosting;

/// <param name="Namespace">The namespace to watch; all when empty.</param>
/// <param name="MetricsStep">The resolution of the arrival-rate history.</param>
/// <param name="ScrapeInterval">How often Prometheus scrapes the routers, assumed for a router until it is measured from two of its scrapes: it sets the windows of the rate queries.</param>
/// <param name="LeaderElection">Whether to take a Lease before reconciling, so that several replicas can run.</param>
/// <param name="Identity">This replica's name in the Lease (its pod's name).</param>
public sealed record OperatorOptions(
    string Host,
    int Port,
    string? Namespace,
    Uri? DefaultPrometheus,
    TimeSpan MetricsStep,
    TimeSpan ScrapeInterval,
    ReconcilerSettings Reconciler,
    int Workers,
    bool LeaderElection,
    string LeaseNamespace,
    string Identity)
{
    /// <summary>How long a Lease holder that stops renewing keeps it; a standby takes over after that.</summary>
    public TimeSpan LeaseDuration { get; init; } = TimeSpan.FromSeconds(15);
}
