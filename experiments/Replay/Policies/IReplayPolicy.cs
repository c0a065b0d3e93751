using Adaptive.Core.Forecasting;
using Adaptive.Core.Planning;

namespace Adaptive.Experiments.Replay.Policies;

/// <summary>The pipeline's arrival rate up to a decision, as Prometheus gives it to the operator.</summary>
public interface ILoadHistory
{
    /// <summary><c>rate(arrivals[window])</c> every step over the last <paramref name="historySeconds"/>, oldest first, the last at the decision.</summary>
    double[] Rates(int historySeconds, int stepSeconds, int windowSeconds);

    /// <summary>The share of the requests answered between the last two scrapes that missed the SLO (late, refused or expired); 0 when none was answered.</summary>
    double MissedShare();
}

/// <summary>
/// The history of a simulated run as every policy sees it, through Prometheus: requests counted in each
/// second up to now (the history before the window first), known only up to the last scrape, every
/// <see cref="ArrivalHistory.OperatorScrapeSeconds"/>. Decisions come every 15 or 30 s, in step with the
/// scrapes; by default the scrapes are half an interval out of phase with them, the average of a phase nobody
/// chooses (<c>replay --live</c> gives the simulation the phase its Prometheus had).
/// </summary>
/// <param name="scrapePhaseSeconds">Seconds after each multiple of the scrape interval, counted from the history's first second, that a scrape happens.</param>
/// <param name="answeredPerSecond">Requests answered in each second, aligned with <paramref name="arrivalsPerSecond"/>; none when not given.</param>
/// <param name="missedPerSecond">Of those, the ones that missed the SLO.</param>
public sealed class CountedLoadHistory(IReadOnlyList<double> arrivalsPerSecond, int scrapePhaseSeconds = CountedLoadHistory.DefaultScrapePhase,
    IReadOnlyList<int>? answeredPerSecond = null, IReadOnlyList<int>? missedPerSecond = null) : ILoadHistory
{
    public const int DefaultScrapePhase = ArrivalHistory.OperatorScrapeSeconds / 2;

    public double[] Rates(int historySeconds, int stepSeconds, int windowSeconds) =>
        ArrivalHistory.PrometheusRates(arrivalsPerSecond, LastScrape(), historySeconds, stepSeconds, windowSeconds);

    public double MissedShare()
    {
        if (answeredPerSecond is null || missedPerSecond is null) return 0;
        int to = Math.Min(LastScrape(), answeredPerSecond.Count);
        int from = Math.Max(0, to - ArrivalHistory.OperatorScrapeSeconds);
        int answered = 0, missed = 0;
        for (int s = from; s < to; s++)
        {
            answered += answeredPerSecond[s];
            missed += missedPerSecond[s];
        }
        return answered == 0 ? 0 : (double)missed / answered;
    }

    /// <summary>How many seconds of the history the last scrape saw.</summary>
    int LastScrape()
    {
        const int interval = ArrivalHistory.OperatorScrapeSeconds;
        int lastScrape = (arrivalsPerSecond.Count - scrapePhaseSeconds) / interval * interval + scrapePhaseSeconds;
        return Math.Clamp(lastScrape, 1, arrivalsPerSecond.Count);
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
