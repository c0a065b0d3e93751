using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Planning;

namespace Adaptive.Core.Adaptation;

/// <summary>
/// Between scheduled decisions the load is checked every <see cref="CheckSeconds"/>: when the latest rate
/// (over the last scrape interval, Prometheus' <c>irate</c>) reaches <see cref="Threshold"/> of what the
/// running configuration sustains within the SLO, or more than <see cref="MissedShareThreshold"/> of the requests
/// answered in that interval missed the SLO (the observed p99 is past it), a decision is made at once, for at
/// least that rate, instead of at the end of the interval. On the Twitter trace's default window the load rose
/// from 6 to 27 requests/s ten seconds after a decision, and the 30 s until the next one held nearly all of a
/// policy's SLO violations. Such decisions only add capacity, leave the schedule of the others alone, and come no
/// sooner than <see cref="MinimumSecondsBetween"/> after the last added capacity, against flapping.
/// The operator and the replay share it.
/// </summary>
public static class SurgeRule
{
    /// <summary>
    /// How often the load is checked between decisions. A scrape shows a rise at most one scrape interval (15 s) after it began;
    /// checking every 5 s acts on it within 5 s of the scrape rather than 15 (one Prometheus query of a pipeline each time).
    /// </summary>
    public const int CheckSeconds = 5;

    /// <summary>The window of the latest rate: one scrape interval.</summary>
    public const int RateWindowSeconds = 15;

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
        if (missedShare > MissedShareThreshold) return true;
        var problem = PlanningProblemBuilder.Build(pipeline, Math.Max(latestRps, AdaptationDecider.MinimumLoadRps), []);
        return latestRps / pipeline.Spec.Adaptation.TargetUtilization >= Threshold * PlanEvaluator.SustainableRps(problem, running);
    }
}
