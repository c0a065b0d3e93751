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
        var history = new CountedLoadHistory(arrivals, new ScrapeSchedule(15, 7), answered, missed);
        // The scrape at 52 s adds seconds 37–51 to what the one at 37 s saw: 150 answered, 10 × 1 + 2 × 10 missed.
        Assert.Equal(30 / 150.0, history.MissedShare(), 9);
        Assert.Equal(0, new CountedLoadHistory(arrivals, new ScrapeSchedule(15, 7)).MissedShare());
        Assert.Equal(0, new CountedLoadHistory(arrivals, new ScrapeSchedule(15, 7), new int[60], new int[60]).MissedShare()); // nothing answered
    }

    /// <summary>
    /// At another scrape interval the latest rate spans one interval and the history's rates two, as the operator asks for
    /// them: 5 s scrapes show a rise from 10 to 30 requests/s whole where 15 s ones show it in part.
    /// </summary>
    [Fact]
    public void The_rates_follow_the_scrape_interval()
    {
        var arrivals = Enumerable.Range(0, 60).Select(s => s < 40 ? 10.0 : 30.0).ToList();
        ILoadHistory fast = new CountedLoadHistory(arrivals, new ScrapeSchedule(5, 2)); // scrapes at 2, 7, …, 57 s
        Assert.Equal(10, fast.RateSpanSeconds);
        Assert.Equal(3, fast.SecondsSinceScrape());
        Assert.Equal(30, fast.Rates(10, 5, 5)[^1], 9); // seconds 52–56
        ILoadHistory slow = new CountedLoadHistory(arrivals, new ScrapeSchedule(15, 7)); // scrapes at 7, 22, 37, 52 s
        Assert.Equal(30, slow.RateSpanSeconds);
        Assert.Equal(8, slow.SecondsSinceScrape());
        Assert.Equal(26, slow.Rates(30, 15, 15)[^1], 9); // seconds 37–51: 3 at 10, 12 at 30
    }
}
