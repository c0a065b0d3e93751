using Adaptive.Experiments.Replay.Policies;

namespace Adaptive.Tests.Replay;

/// <summary>The replay's view of the router's counters, as Prometheus gives it to the operator.</summary>
public sealed class LoadHistoryTests
{
    /// <summary>The share of SLO misses is the one between the last two scrapes: what came after the last scrape is not known yet.</summary>
    [Fact]
    public void The_missed_share_is_what_the_last_scrape_interval_shows()
    {
        // 60 s at 10 requests/s, scraped at 7, 22, 37 and 52 s; 1 of 10 missed from 40 s on, all from 50 s.
        var arrivals = Enumerable.Repeat(10.0, 60).ToList();
        var answered = Enumerable.Repeat(10, 60).ToList();
        var missed = Enumerable.Range(0, 60).Select(s => s >= 50 ? 10 : s >= 40 ? 1 : 0).ToList();
        var history = new CountedLoadHistory(arrivals, scrapePhaseSeconds: 7, answered, missed);
        // The scrape at 52 s adds seconds 37–51 to what the one at 37 s saw: 150 answered, 10 × 1 + 2 × 10 missed.
        Assert.Equal(30 / 150.0, history.MissedShare(), 9);
        Assert.Equal(0, new CountedLoadHistory(arrivals, scrapePhaseSeconds: 7).MissedShare());
        Assert.Equal(0, new CountedLoadHistory(arrivals, 7, new int[60], new int[60]).MissedShare()); // nothing answered
    }
}
