using Adaptive.Core.Adaptation;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Forecasting;
using Adaptive.Core.Planning;

namespace Adaptive.Experiments.Replay.Policies;

/// <summary>
/// The operator's loop on a pipeline: every interval, the arrival rate over the last two scrapes every 5 s (what the operator
/// reads from Prometheus) goes through the pipeline's forecaster, and
/// <see cref="PlanningLoad"/> and <see cref="AdaptationDecider"/> — the operator's own code — decide; between
/// intervals, <see cref="SurgeRule"/>, checked after each scrape, calls a decision early when the load outgrows the running
/// configuration. The baselines that plan (fa2, model-switching, rim) run it on a pipeline restricted as
/// their papers describe them.
/// </summary>
public sealed class PlannerPolicy(string name, InferencePipeline pipeline) : IReplayPolicy
{
    static readonly DateTimeOffset Epoch = DateTimeOffset.UnixEpoch;
    readonly ILoadForecaster forecaster = LoadForecasters.Create(pipeline.Spec.Adaptation.Forecaster);
    ScaleUp? lastScaleUp;
    int lastScheduled;
    int nextCheck; // the second of the next surge check

    public string Name => name;

    /// <summary>Every second: a surge check comes a second after each scrape (<see cref="SurgeRule.UntilNextCheck"/>).</summary>
    public int IntervalSeconds => 1;

    public PolicyDecision? Decide(PolicyContext context)
    {
        if (Due(context) is not { } due) return null;
        return Take(context, due, AdaptationDecider.Decide(pipeline, due.Load.Rps, Running(context.Running), SurgeRule.ExcessShare(pipeline, context.Running, due.Load)));
    }

    /// <summary>A decision this call calls for: the load to plan for, and whether its interval came (else a surge called it); null when none.</summary>
    public DueDecision? Due(PolicyContext context)
    {
        var adaptation = pipeline.Spec.Adaptation;
        var now = Epoch.AddSeconds(context.NowSeconds);
        bool scheduled = context.Running is null || context.NowSeconds - lastScheduled >= adaptation.IntervalSeconds;
        if (!scheduled && context.NowSeconds < nextCheck) return null;
        int scrape = context.Load.ScrapeSeconds; // the latest rate spans one scrape interval
        var lastTwo = context.Load.Rates(2 * scrape, scrape, scrape);
        double latest = lastTwo[^1], previous = lastTwo.Length > 1 ? lastTwo[^2] : latest;
        // As the operator: the next check comes just after the next scrape, or when a surge decision may come again.
        bool mayDecide = SurgeRule.MayDecide(lastScaleUp?.Time, now);
        DateTimeOffset? nextScrape = mayDecide && context.Load.SecondsSinceScrape() is { } ago ? now.AddSeconds(scrape - ago) : null;
        nextCheck = context.NowSeconds + (int)Math.Ceiling(SurgeRule.UntilNextCheck(nextScrape, lastScaleUp?.Time, now).TotalSeconds);
        bool surge = !scheduled && mayDecide && SurgeRule.Triggers(pipeline, context.Running!, latest, context.Load.MissedShare());
        if (!scheduled && !surge) return null;

        var history = context.Load.Rates(adaptation.Metrics.HistorySeconds, ArrivalHistory.OperatorStepSeconds, context.Load.RateSpanSeconds);
        var load = new PlanningLoad(
            forecaster.ForecastPeak(history, AdaptationDecider.ForecastHorizon(adaptation.IntervalSeconds, ArrivalHistory.OperatorStepSeconds)),
            PlanningLoad.RecentPeak(history, ArrivalHistory.OperatorStepSeconds, adaptation.ScaleDownStabilizationSeconds, adaptation.IntervalSeconds, lastScaleUp, now),
            surge ? SurgeRule.SurgeRps(previous, latest) : null, latest);
        return new DueDecision(load, scheduled);
    }

    /// <summary>
    /// Takes <paramref name="decision"/>, planned for <paramref name="due"/>'s load (or, <paramref name="due"/> null, a plan
    /// others' decisions changed between this pipeline's own, for the load it last planned for): its schedule and
    /// stabilization go on from it. Null when a surge decision adds no capacity, which keeps what runs.
    /// </summary>
    public PolicyDecision? Take(PolicyContext context, DueDecision? due, AdaptationDecision decision)
    {
        bool surge = due is { Scheduled: false };
        if (surge && !decision.ScalesUp) return null; // a surge decision only adds capacity
        var now = Epoch.AddSeconds(context.NowSeconds);
        if (due is { Scheduled: true }) lastScheduled = context.NowSeconds;
        double planned = due?.Load.Rps ?? LastPlannedRps;
        if (decision.ScalesUp) lastScaleUp = new ScaleUp(now, due?.Load.HeldAfterScaleUpRps ?? planned, planned);
        LastPlannedRps = planned;
        return new PolicyDecision(decision.Plan, planned, decision.Result.SolveMs);
    }

    /// <summary>The load the last decision taken planned for.</summary>
    public double LastPlannedRps { get; private set; } = AdaptationDecider.MinimumLoadRps;

    /// <summary>What runs, as the planner's loading term reads it.</summary>
    public static List<RunningAllocation> Running(IReadOnlyList<StagePlan>? plan) =>
        plan is null ? [] : [.. plan.SelectMany(s => s.Allocations.Select(a => new RunningAllocation(s.Name, a.Variant, a.Hardware, a.Replicas, a.Batch)))];
}

/// <param name="Load">What to plan for.</param>
/// <param name="Scheduled">Its interval came; else a surge called it.</param>
public sealed record DueDecision(PlanningLoad Load, bool Scheduled);
