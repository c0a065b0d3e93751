using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Planning;

namespace Adaptive.Core.Adaptation;

/// <summary>
/// Between scheduled decisions the load is checked every <see cref="CheckSeconds"/>: when the latest rate
/// (over the last scrape interval, Prometheus' <c>irate</c>) reaches <see cref="Threshold"/> of what the
/// running configuration sustains within the SLO, a decision is made at once, for at least that rate, instead
/// of at the end of the interval. On the Twitter trace's default window the load rose from 6 to 27 requests/s
/// ten seconds after a decision, and the 30 s until the next one held nearly all of a policy's SLO violations.
/// Such decisions only add capacity, leave the schedule of the others alone, and come no sooner than
/// <see cref="MinimumSecondsBetween"/> after the last decision or the last added capacity, against flapping.
/// The operator and the replay share it.
/// </summary>
public static class SurgeRule
{
    /// <summary>How often the load is checked between decisions: the operator's default scrape interval, when the rate can change.</summary>
    public const int CheckSeconds = 15;

    /// <summary>The window of the latest rate: one scrape interval.</summary>
    public const int RateWindowSeconds = 15;

    /// <summary>The share of the running configuration's sustainable rate that calls for a decision.</summary>
    public const double Threshold = 0.9;

    public const int MinimumSecondsBetween = 15;

    /// <summary>Whether a surge decision may come <paramref name="now"/>: long enough after the last decision and the last added capacity.</summary>
    public static bool MayDecide(DateTimeOffset lastDecision, DateTimeOffset? lastScaleUp, DateTimeOffset now)
    {
        var lastChange = lastScaleUp is { } grew && grew > lastDecision ? grew : lastDecision;
        return now - lastChange >= TimeSpan.FromSeconds(MinimumSecondsBetween);
    }

    /// <summary>Whether <paramref name="latestRps"/> outgrows the <paramref name="running"/> configuration.</summary>
    public static bool Triggers(InferencePipeline pipeline, IReadOnlyList<StagePlan> running, double latestRps)
    {
        if (running.Count == 0 || !(latestRps > 0)) return false;
        var problem = PlanningProblemBuilder.Build(pipeline, Math.Max(latestRps, AdaptationDecider.MinimumLoadRps), []);
        return latestRps >= Threshold * PlanEvaluator.SustainableRps(problem, running);
    }
}
