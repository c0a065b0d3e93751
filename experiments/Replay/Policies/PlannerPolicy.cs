using Adaptive.Core.Adaptation;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Forecasting;
using Adaptive.Core.Planning;

namespace Adaptive.Experiments.Replay.Policies;

/// <summary>
/// The operator's loop on a pipeline: every interval, the 30 s arrival rate every 5 s (what the operator
/// reads from Prometheus at its default 15 s scrape interval) goes through the pipeline's forecaster, and
/// <see cref="PlanningLoad"/> and <see cref="AdaptationDecider"/> — the operator's own code — decide; between
/// intervals, <see cref="SurgeRule"/> calls a decision early when the load outgrows the running
/// configuration. The baselines that plan (fa2, model-switching, rim) run it on a pipeline restricted as
/// their papers describe them.
/// </summary>
public sealed class PlannerPolicy(string name, InferencePipeline pipeline) : IReplayPolicy
{
    static readonly DateTimeOffset Epoch = DateTimeOffset.UnixEpoch;
    readonly ILoadForecaster forecaster = LoadForecasters.Create(pipeline.Spec.Adaptation.Forecaster);
    (DateTimeOffset Time, double HeldRps)? lastScaleUp;
    int lastScheduled;

    public string Name => name;
    public int IntervalSeconds => Math.Min(SurgeRule.CheckSeconds, pipeline.Spec.Adaptation.IntervalSeconds);

    public PolicyDecision? Decide(PolicyContext context)
    {
        var adaptation = pipeline.Spec.Adaptation;
        var now = Epoch.AddSeconds(context.NowSeconds);
        bool scheduled = context.Running is null || context.NowSeconds - lastScheduled >= adaptation.IntervalSeconds;
        var lastTwo = context.Load.Rates(2 * SurgeRule.RateWindowSeconds, SurgeRule.RateWindowSeconds, SurgeRule.RateWindowSeconds);
        double latest = lastTwo[^1], previous = lastTwo.Length > 1 ? lastTwo[^2] : latest;
        bool surge = !scheduled && SurgeRule.MayDecide(lastScaleUp?.Time, now)
            && SurgeRule.Triggers(pipeline, context.Running!, latest, context.Load.MissedShare());
        if (!scheduled && !surge) return null;

        var history = context.Load.Rates(adaptation.Metrics.HistorySeconds, ArrivalHistory.OperatorStepSeconds, ArrivalHistory.OperatorWindowSeconds);
        var load = new PlanningLoad(
            forecaster.ForecastPeak(history, AdaptationDecider.ForecastHorizon(adaptation.IntervalSeconds, ArrivalHistory.OperatorStepSeconds)),
            PlanningLoad.RecentPeak(history, ArrivalHistory.OperatorStepSeconds, adaptation.ScaleDownStabilizationSeconds, lastScaleUp, now),
            surge ? SurgeRule.SurgeRps(previous, latest) : null, latest);
        var decision = AdaptationDecider.Decide(pipeline, load.Rps, context.Running is null ? [] : Running(context.Running));
        if (surge && !decision.ScalesUp) return null; // a surge decision only adds capacity
        if (scheduled) lastScheduled = context.NowSeconds;
        if (decision.ScalesUp) lastScaleUp = (now, load.HeldAfterScaleUpRps);
        return new PolicyDecision(decision.Plan, load.Rps, decision.Result.SolveMs);
    }

    static List<RunningAllocation> Running(IReadOnlyList<StagePlan> plan) =>
        [.. plan.SelectMany(s => s.Allocations.Select(a => new RunningAllocation(s.Name, a.Variant, a.Hardware, a.Replicas, a.Batch)))];
}
