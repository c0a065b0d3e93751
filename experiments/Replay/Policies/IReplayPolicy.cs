using Adaptive.Core.Forecasting;
using Adaptive.Core.Planning;

namespace Adaptive.Experiments.Replay.Policies;

/// <summary>The pipeline's arrival rate up to a decision, as Prometheus gives it to the operator.</summary>
public interface ILoadHistory
{
    /// <summary>
    /// The rate over the last <paramref name="windowSeconds"/> of scrapes (<see cref="ArrivalHistory.RateQueryWindow"/>) every step from
    /// <paramref name="historySeconds"/> before the decision to the decision, oldest first, steps without a point left out.
    /// </summary>
    double[] Rates(int historySeconds, int stepSeconds, int windowSeconds);

    /// <summary>The share of the requests answered between the last two scrapes that missed the SLO (late, refused or expired); 0 when none was answered.</summary>
    double MissedShare();

    /// <summary>How many seconds ago Prometheus last scraped the router; null when it has not yet.</summary>
    double? SecondsSinceScrape();

    /// <summary>How often Prometheus scrapes the router.</summary>
    int ScrapeSeconds { get; }

    /// <summary>The span of the history's rates: two scrapes, as the operator asks (10 s at its default 5 s scrapes).</summary>
    int RateSpanSeconds => 2 * ScrapeSeconds;
}

/// <summary>
/// When Prometheus scrapes the router: every <paramref name="IntervalSeconds"/> (what the operator's
/// <c>--scrape-interval-seconds</c> says), <paramref name="PhaseSeconds"/> into each interval.
/// </summary>
public sealed record ScrapeSchedule(int IntervalSeconds, int PhaseSeconds)
{
    /// <summary>Every <paramref name="seconds"/>, half an interval into it: about the average of a phase nobody chooses.</summary>
    public static ScrapeSchedule Every(int seconds) =>
        seconds >= 1 ? new(seconds, seconds / 2) : throw new ArgumentOutOfRangeException(nameof(seconds), seconds, "the scrape interval must be at least one second");

    /// <summary>As the chart's router PodMonitor scrapes: every 5 s, 2 s into each.</summary>
    public static readonly ScrapeSchedule Default = Every(ArrivalHistory.OperatorScrapeSeconds);
}

/// <summary>
/// The history of a simulated run as every policy sees it, through Prometheus: the router's counters scraped on a
/// <see cref="ScrapeSchedule"/> (5 s by default; the history before the window first) and read with the operator's
/// own queries, evaluated as Prometheus evaluates them (<see cref="ScrapedCounter"/>). Decisions come every 15, 30 or 60 s (hpa's
/// sync, the planners' interval, vpa's), surge checks a second after each scrape; by default the scrapes are half an interval out of phase with the decisions, about the average of a phase nobody chooses
/// (<c>replay --live</c> gives the simulation the phase its Prometheus had).
/// </summary>
/// <param name="scrapes">When the scrapes happen, their phase counted from the history's first second.</param>
/// <param name="answeredPerSecond">Requests answered in each second, aligned with <paramref name="arrivalsPerSecond"/>; none when not given.</param>
/// <param name="missedPerSecond">Of those, the ones that missed the SLO.</param>
public sealed class CountedLoadHistory(IReadOnlyList<double> arrivalsPerSecond, ScrapeSchedule scrapes,
    IReadOnlyList<int>? answeredPerSecond = null, IReadOnlyList<int>? missedPerSecond = null) : ILoadHistory
{
    readonly ScrapedCounter arrivals = new(arrivalsPerSecond, scrapes.IntervalSeconds, scrapes.PhaseSeconds);

    public int ScrapeSeconds => scrapes.IntervalSeconds;

    /// <summary>A window shorter than two scrapes is read as the operator reads the latest rate: <c>irate</c>, between the last two scrapes.</summary>
    public double[] Rates(int historySeconds, int stepSeconds, int windowSeconds)
    {
        Func<int, double?> query = windowSeconds < 2 * ScrapeSeconds
            ? t => arrivals.InstantRate(t, 2 * ScrapeSeconds)
            : t => arrivals.Rate(t, (int)ArrivalHistory.RateQueryWindow(TimeSpan.FromSeconds(windowSeconds), TimeSpan.FromSeconds(ScrapeSeconds)).TotalSeconds);
        return PromQL.Range(query, arrivals.Seconds, historySeconds, stepSeconds);
    }

    public double? SecondsSinceScrape() => arrivals.Seconds - arrivals.LastScrape(arrivals.Seconds);

    /// <summary><c>irate(misses) / irate(requests)</c> as the operator queries it: the share of the requests answered between the last two scrapes that missed the SLO.</summary>
    public double MissedShare()
    {
        if (answeredPerSecond is null || missedPerSecond is null) return 0;
        int now = Math.Min(arrivals.Seconds, answeredPerSecond.Count);
        double? answered = new ScrapedCounter([.. answeredPerSecond.Take(now).Select(a => (double)a)], ScrapeSeconds, scrapes.PhaseSeconds).InstantRate(now, 2 * ScrapeSeconds);
        double? missed = new ScrapedCounter([.. missedPerSecond.Take(now).Select(m => (double)m)], ScrapeSeconds, scrapes.PhaseSeconds).InstantRate(now, 2 * ScrapeSeconds);
        return answered is > 0 && missed is { } m ? m / answered.Value : 0;
    }
}

/// <summary>What a policy sees at a decision.</summary>
/// <param name="NowSeconds">Seconds into the replayed window.</param>
/// <param name="Running">The configuration the policy last chose; <c>null</c> before the first decision.</param>
public sealed record PolicyContext(int NowSeconds, ILoadHistory Load, IReadOnlyList<StagePlan>? Running);

/// <param name="Plan">The configuration to run; <c>null</c> keeps the running one.</param>
/// <param name="PredictedRps">The load the policy planned for.</param>
/// <param name="Recreate">The running replicas are replaced at once rather than make-before-break (a resize by eviction).</param>
public sealed record PolicyDecision(IReadOnlyList<StagePlan>? Plan, double PredictedRps, double SolveMs, bool Recreate = false);

/// <summary>An adaptation policy: Adaptive itself (ipa, infadapter) or a baseline it is compared with.</summary>
public interface IReplayPolicy
{
    string Name { get; }

    /// <summary>Seconds between calls to <see cref="Decide"/>.</summary>
    int IntervalSeconds { get; }

    /// <summary>The decision at this call; null when a check between decisions finds nothing to decide (never at the first call).</summary>
    PolicyDecision? Decide(PolicyContext context);
}
