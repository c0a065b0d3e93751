using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Planning;

namespace Adaptive.Core.Adaptation;

/// <summary>
/// Between scheduled decisions the load is checked once after each scrape, <see cref="CheckLagSeconds"/> after it: when the latest rate
/// (over the last scrape interval, Prometheus' <c>irate</c>) reaches <see cref="Threshold"/> of what the
/// running configuration sustains within the SLO, or more than <see cref="MissedShareThreshold"/> of the requests
/// answered in that interval missed the SLO (the observed p99 is past it), a decision is made at once, for at
/// least that rate, instead of at the end of the interval. On the Twitter trace's default window the load rose
/// from 6 to 27 requests/s ten seconds after a decision, and the 30 s until the next one held nearly all of a
/// policy's SLO violations. Such decisions only add capacity, weigh the time it takes to load by what the running
/// configuration cannot serve (<see cref="WeighLoadTime"/>), leave the schedule of the others alone, and come no
/// sooner than <see cref="MinimumSecondsBetween"/> after the last added capacity, against flapping.
/// The operator and the replay share it.
/// </summary>
public static class SurgeRule
{
    /// <summary>
    /// The longest time between checks: where the time of the last scrape is unknown, or the next one is late (Prometheus scrapes
    /// less often than assumed), the load is checked this often (three Prometheus queries of a pipeline each time).
    /// </summary>
    public const int CheckSeconds = 5;

    /// <summary>How long after a scrape its check comes: time for Prometheus to store what it scraped.</summary>
    public const int CheckLagSeconds = 1;

    /// <summary>
    /// Until the next check: <see cref="CheckLagSeconds"/> after <paramref name="nextScrape"/> (the last scrape's time plus the
    /// scrape interval), or, while a surge decision may not come yet (<see cref="MayDecide"/>), the moment it may; never more
    /// than <see cref="CheckSeconds"/> away. A scrape shows a rise up to one scrape interval after it began; checking every 5 s
    /// acted on it up to 5 s after that scrape.
    /// </summary>
    public static TimeSpan UntilNextCheck(DateTimeOffset? nextScrape, DateTimeOffset? lastScaleUp, DateTimeOffset now)
    {
        var longest = TimeSpan.FromSeconds(CheckSeconds);
        var until = !MayDecide(lastScaleUp, now) ? lastScaleUp!.Value + TimeSpan.FromSeconds(MinimumSecondsBetween) - now
            : nextScrape is { } next ? next + TimeSpan.FromSeconds(CheckLagSeconds) - now
            : longest;
        return until > TimeSpan.Zero && until < longest ? until : longest;
    }

    /// <summary>The share of the running configuration's sustainable rate that calls for a decision.</summary>
    public const double Threshold = 0.9;

    /// <summary>The time for added capacity to start and show in the rate and the latency before more is added.</summary>
    public const int MinimumSecondsBetween = 15;

    /// <summary>Whether a surge decision may come <paramref name="now"/>: long enough after the last added capacity, which needs the time to show in the rate and the latency.</summary>
    public static bool MayDecide(DateTimeOffset? lastScaleUp, DateTimeOffset now) =>
        lastScaleUp is not { } grew || now - grew >= TimeSpan.FromSeconds(MinimumSecondsBetween);

    /// <summary>The share of the requests answered between the last two scrapes that missed the SLO which calls for a decision: the observed p99 is past the SLO.</summary>
    public const double MissedShareThreshold = 0.01;

    /// <summary>
    /// The share of a surge's rate (<see cref="PlanningLoad.SurgeRps"/>, before headroom) that the <paramref name="running"/>
    /// configuration cannot serve within the SLO; 0 for a scheduled decision, or a surge called as the load only nears what runs
    /// (<see cref="Threshold"/>).
    /// </summary>
    public static double ExcessShare(InferencePipeline pipeline, IReadOnlyList<StagePlan>? running, PlanningLoad load) =>
        load.SurgeRps is > 0 and var surge && running is { Count: > 0 } ? Math.Max(0, 1 - 1 / ShareOfSustainable(pipeline, running, surge)) : 0;

    /// <summary>
    /// The problem of a surge decision whose rate outruns what runs by <paramref name="excessShare"/>: until its new replicas
    /// serve, that share of the requests misses the SLO, each second <paramref name="excessShare"/> / the interval of the requests
    /// until the next scheduled decision (which plans with the spec's weights, and has the time to load slower variants). So each
    /// second the new replicas take to load their models weighs at least that, as accuracy (the spec's <c>weights.loading</c>
    /// counts the slowest model's load time as 1): capacity that serves sooner is worth some accuracy in proportion to what the
    /// running configuration misses.
    /// </summary>
    public static PipelineProblem WeighLoadTime(PipelineProblem problem, double excessShare, int intervalSeconds)
    {
        double perSecond = problem.Weights.Accuracy * excessShare / intervalSeconds;
        return perSecond <= 0 ? problem : problem with { Weights = problem.Weights with { Loading = Math.Max(problem.Weights.Loading, perSecond * problem.MaxLoadTimeS) } };
    }

    /// <summary>
    /// The rate a surge decision plans for (before <see cref="PlanningLoad.SurgeHeadroom"/>): the latest rate, carried on by its
    /// rise over the scrape interval before it for one more interval, about the time the added replicas take to start and load.
    /// On the video sample's surge that took the violations from 1.1 % to 0.8 %.
    /// </summary>
    public static double SurgeRps(double previousRps, double latestRps) => latestRps + Math.Max(0, latestRps - previousRps);

    /// <summary>
    /// Whether <paramref name="latestRps"/> outgrows the <paramref name="running"/> configuration, or <paramref name="missedShare"/> of the
    /// latest requests missed the SLO. The rate is read over the target utilization, as a plan reads the forecast, so that
    /// a plan for less (or more) than the load is not called short at once.
    /// </summary>
    public static bool Triggers(InferencePipeline pipeline, IReadOnlyList<StagePlan> running, double latestRps, double missedShare)
    {
        if (running.Count == 0 || !(latestRps > 0)) return false;
        return missedShare > MissedShareThreshold || ShareOfSustainable(pipeline, running, latestRps) >= Threshold;
    }

    /// <summary><paramref name="rps"/>, read over the target utilization as a plan reads the forecast, as a share of what <paramref name="running"/> sustains within the SLO.</summary>
    static double ShareOfSustainable(InferencePipeline pipeline, IReadOnlyList<StagePlan> running, double rps)
    {
        var problem = PlanningProblemBuilder.Build(pipeline, Math.Max(rps, AdaptationDecider.MinimumLoadRps), []);
        return rps / pipeline.Spec.Adaptation.TargetUtilization / PlanEvaluator.SustainableRps(problem, running);
    }
}
