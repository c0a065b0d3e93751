using Adaptive.Core.Adaptation;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Planning;
using Adaptive.Operator.Metrics;
using Adaptive.Operator.Reconciliation;

namespace Adaptive.Operator.Adaptation;

/// <summary>A surge check: the surge's rate when it calls for a decision now, and the router's scrapes it read (null where it read none).</summary>
public sealed record SurgeCheck(double? Rps, RouterScrapes? Scrapes);

/// <summary>
/// The decision half of reconciling a pipeline, shared by the pipeline's reconciler (a pipeline planned alone) and the
/// pool's (pipelines planned together): the load to plan for, the surge check between decisions, and recording a
/// decision in the pipeline's status with its conditions, metrics and event.
/// </summary>
public sealed class DecisionRecorder(LoadEstimator loads, PipelineClient pipelines, OperatorMetrics metrics, ILogger<DecisionRecorder> log)
{
    public const string StabilizingReason = "ScaleDownStabilization";

    /// <summary>
    /// The load to plan for, from Prometheus. When it cannot be read, Degraded says why and the estimate is the last decision's
    /// load (the least load for a new pipeline, so that it serves); <c>KeepRunning</c> then says that the running decision should
    /// stay as it is, as long as the spec has not changed: without data nothing is scaled, least of all down.
    /// </summary>
    public async Task<(LoadEstimate Load, bool MetricsFailed, bool KeepRunning)> EstimateLoad(InferencePipeline pipeline, InferencePipelineStatus status,
        IReadOnlyList<StagePlan>? previous, DateTimeOffset now, CancellationToken cancellation)
    {
        long? generation = pipeline.Metadata.Generation;
        try
        {
            var load = await loads.Estimate(pipeline, now, cancellation);
            Conditions.Set(status.Conditions, PipelineCondition.Degraded, false, "MetricsAvailable", $"forecasting with {load.Forecaster} from Prometheus; {load.Scrapes!.Describe()}", generation, now);
            return (load, false, false);
        }
        catch (MetricsUnavailableException e)
        {
            metrics.MetricsFailures.WithLabels(e.Failure.ToString()).Inc();
            string reason = e.Failure == MetricsFailure.NoData ? "NoMetrics" : "MetricsUnavailable";
            bool changed = !Conditions.Is(status.Conditions, PipelineCondition.Degraded, reason);
            Conditions.Set(status.Conditions, PipelineCondition.Degraded, true, reason, $"{e.Message}; keeping the running configuration", generation, now);
            if (changed) await pipelines.Event(pipeline, "Warning", reason, e.Message, cancellation);
            bool specChanged = status.ObservedGeneration != generation && previous is not null;
            return (LastLoad(status), true, previous is not null && !specChanged);
        }
    }

    /// <summary>The load the last decision planned for, as a new estimate would give it (the least load for a pipeline not yet planned).</summary>
    public static LoadEstimate LastLoad(InferencePipelineStatus status) =>
        new(new PlanningLoad(status.PredictedLoadRps ?? AdaptationDecider.MinimumLoadRps, 0), status.ObservedLoadRps ?? 0, "none");

    /// <summary>
    /// Between decisions: the surge's rate when the latest one calls for a decision now (<see cref="SurgeRule"/>), else null; and the
    /// router's scrapes the check read, for <see cref="UntilNextCheck"/>. A check that cannot read Prometheus decides nothing; the next
    /// scheduled decision reports why.
    /// </summary>
    public async Task<SurgeCheck> CheckSurge(InferencePipeline pipeline, InferencePipelineStatus status, IReadOnlyList<StagePlan> running, DateTimeOffset now, CancellationToken cancellation)
    {
        if (!SurgeRule.MayDecide(status.LastScaleUpTime, now)) return new(null, null);
        try
        {
            var latest = await loads.Latest(pipeline, now, cancellation);
            return new(SurgeRule.Triggers(pipeline, running, latest.Rps, latest.MissedShare) ? SurgeRule.SurgeRps(latest.PreviousRps, latest.Rps) : null, latest.Scrapes);
        }
        catch (MetricsUnavailableException)
        {
            return new(null, null);
        }
    }

    /// <summary>
    /// Until the next surge check (<see cref="SurgeRule.UntilNextCheck"/>): just after the router's next scrape, or when a surge decision
    /// may come again. Prometheus is not asked while no surge decision may come, nor where <paramref name="metricsFailed"/> this pass, nor
    /// for the scrapes this pass's surge check <paramref name="read"/> at the same <paramref name="now"/>.
    /// </summary>
    public async Task<TimeSpan> UntilNextCheck(InferencePipeline pipeline, InferencePipelineStatus status, bool metricsFailed, RouterScrapes? read, DateTimeOffset now,
        CancellationToken cancellation)
    {
        DateTimeOffset? nextScrape = null;
        if (!metricsFailed && SurgeRule.MayDecide(status.LastScaleUpTime, now))
        {
            try
            {
                nextScrape = (read ?? await loads.Scrapes(pipeline, now, cancellation)) is { } scrapes ? loads.NextScrape(scrapes) : null;
            }
            catch (MetricsUnavailableException)
            {
                // checked at the longest interval
            }
        }
        return SurgeRule.UntilNextCheck(nextScrape, status.LastScaleUpTime, now);
    }

    /// <summary>
    /// Records <paramref name="decided"/> in the status: the stages, what they are expected to give, SLOFeasible, the metrics, and
    /// an Event when the configuration changes. A scheduled decision restarts the interval; a surge decision leaves the schedule
    /// as it was. Returns, when the stabilization window holds the plan above the forecast, why.
    /// </summary>
    public async Task<string?> Record(InferencePipeline pipeline, InferencePipelineStatus status, IReadOnlyList<StagePlan>? previous, LoadEstimate load,
        PlanningLoad planned, AdaptationDecision decided, bool scheduled, DateTimeOffset now, CancellationToken cancellation)
    {
        long? generation = pipeline.Metadata.Generation;
        string name = pipeline.Metadata.Name;
        var (problem, result, plan) = (decided.Problem, decided.Result, decided.Plan);
        metrics.Decisions.WithLabels(result.Status.ToString().ToLowerInvariant()).Inc();
        metrics.SolveSeconds.Observe(result.SolveMs / 1000);
        metrics.ForecastRps.WithLabels(name).Set(planned.ForecastRps);
        metrics.ObservedRps.WithLabels(name).Set(load.ObservedRps);
        if (decided.ScalesUp)
            (status.LastScaleUpTime, status.LastScaleUpLoadRps, status.LastScaleUpPlannedRps) = (now, Math.Round(planned.HeldAfterScaleUpRps, 3), Math.Round(planned.Rps, 3));

        bool feasible = result.Status != PlanStatus.Infeasible;
        Conditions.Set(status.Conditions, PipelineCondition.SloFeasible, feasible, feasible ? "PlanFound" : "Infeasible",
            feasible ? $"a configuration meets the {pipeline.Spec.SloMs} ms SLO at {planned.Rps:F1} rps ({result.Status.ToString().ToLowerInvariant()})"
                     : $"no configuration meets the {pipeline.Spec.SloMs} ms SLO at {planned.Rps:F1} rps within the replica and budget limits; running the most capacity they allow",
            generation, now);
        var evaluated = PlanEvaluator.Evaluate(problem, plan);
        status.Stages = [.. plan.Select((s, i) => new StageStatus
        {
            Name = s.Name,
            LatencyMs = Finite(evaluated.StageLatencyMs[i]),
            Allocations = [.. s.Allocations.Select(a => new AllocationStatus { Variant = a.Variant, HardwareClass = a.Hardware, Replicas = a.Replicas, Batch = a.Batch, ShareRps = Math.Round(a.Share, 3) })],
        })];
        status.Summary = Summary(plan);
        status.PredictedLoadRps = Math.Round(planned.Rps, 3);
        status.ObservedLoadRps = Math.Round(load.ObservedRps, 3);
        status.ExpectedAccuracy = Math.Round(evaluated.Accuracy, 5);
        status.ExpectedCost = Math.Round(evaluated.Cost, 3);
        status.ExpectedLatencyMs = Finite(evaluated.LatencyMs);
        status.PlanStatus = result.Status.ToString().ToLowerInvariant();
        status.SolveTimeMs = Math.Round(result.SolveMs, 3);
        status.ObservedGeneration = generation;
        if (scheduled) status.LastDecisionTime = now;
        metrics.ExpectedAccuracy.WithLabels(name).Set(evaluated.Accuracy);
        metrics.ExpectedCost.WithLabels(name).Set(evaluated.Cost);
        foreach (var s in previous ?? [])
            foreach (var a in s.Allocations) // gone from the plan unless set again below
                metrics.PlannedReplicas.WithLabels(name, s.Name, a.Variant, a.Hardware).Set(0);
        foreach (var s in plan)
            foreach (var a in s.Allocations)
                metrics.PlannedReplicas.WithLabels(name, s.Name, a.Variant, a.Hardware).Set(a.Replicas);

        string before = previous is null ? "nothing" : Summary(previous);
        if (before != status.Summary)
        {
            string message = $"{before} → {status.Summary}: {planned.Describe(load.Forecaster, pipeline.Spec.Adaptation.TargetUtilization)}, observed {load.ObservedRps:F1} rps; "
                + $"expected accuracy {evaluated.Accuracy:F4}, cost {evaluated.Cost:F2}, latency {evaluated.LatencyMs:F1} ms of {pipeline.Spec.SloMs} ms ({status.PlanStatus})";
            log.LogInformation("Reconfiguring {Pipeline}: {Message}", $"{pipeline.Metadata.Namespace}/{name}", message);
            await pipelines.Event(pipeline, feasible ? "Normal" : "Warning", "Reconfigured", message, cancellation);
        }
        return planned.Stabilizing
            ? $"the forecast fell to {planned.ForecastRps:F1} rps; plans hold {planned.RecentPeakRps:F1} rps, the highest load of the last {pipeline.Spec.Adaptation.ScaleDownStabilizationSeconds} s, until it leaves that window"
            : null;
    }

    /// <summary>A latency for status, to the microsecond; none when it is unbounded (a stage its load saturates: infeasible plans run the most capacity allowed).</summary>
    static double? Finite(double ms) => double.IsFinite(ms) ? Math.Round(ms, 3) : null;

    static string Summary(IReadOnlyList<StagePlan> plan) =>
        string.Join(" ", plan.Select(s => $"{s.Name}={string.Join("+", s.Allocations.Where(a => a.Replicas > 0).Select(a => $"{a.Variant}x{a.Replicas}"))}"));
}
