using Adaptive.Core.Forecasting;

namespace Adaptive.Tests.Forecasting;

/// <summary>PromQL's rate() and irate() as the replay computes them; tests/Operator/PrometheusClientTests checks them against a real Prometheus.</summary>
public sealed class PromQLTests
{
    /// <summary>10 events a second for 60 s, then 40; scraped every 15 s from 7 s on (7, 22, 37, 52, 67, 82).</summary>
    static readonly ScrapedCounter Counter = new([.. Enumerable.Range(0, 90).Select(s => s < 60 ? 10.0 : 40.0)], scrapeSeconds: 15, phaseSeconds: 7);

    [Fact]
    public void Over_one_scrape_interval_more_than_its_span_a_rate_is_the_mean_between_the_scrapes_that_span_it()
    {
        // At 85 s, a 45 s window holds the scrapes at 52, 67 and 82: between 52 and 82 s, 8 s at 10 a second and 22 s at 40.
        double counted = (8 * 10 + 22 * 40) / 30.0;
        Assert.Equal(counted, Counter.Rate(85, 45)!.Value, 9);
        Assert.Equal(counted, Counter.Rate(82, 45)!.Value, 9); // the same samples, whenever between two scrapes it is read
    }

    [Fact]
    public void Over_a_window_of_two_scrape_intervals_a_rate_is_the_last_intervals_alone()
    {
        // rate(c[30s]) at 85 s holds only the scrapes at 67 and 82: their increase, stretched to the window, is the rate between them.
        Assert.Equal(40, Counter.Rate(85, 30)!.Value, 9);
        Assert.Equal(40, Counter.InstantRate(85, 30)!.Value, 9);
        Assert.Equal((8 * 10 + 7 * 40) / 15.0, Counter.InstantRate(80, 30)!.Value, 9); // 52 → 67
    }

    [Fact]
    public void A_rate_is_not_stretched_back_past_the_counters_zero_nor_far_past_its_last_sample()
    {
        // Scrapes at 7 and 22 s of a counter that started at 0 s: to the start of a 45 s window at 25 s (−20 s) it stretches only to
        // where it was 0 (7 s back from the first sample), and to the end (3 s on) all the way.
        double increase = 15 * 10, perSecond = increase / 15;
        Assert.Equal(increase * (15 + 7 + 3) / 15 / 45, Counter.Rate(25, 45)!.Value, 9);
        Assert.Equal(perSecond * 25 / 45, Counter.Rate(25, 45)!.Value, 9);
        // Samples at 0, 10 and 20 s, read at 60 s over 70 s: the window's start (−10 s) is within 1.1 gaps of the first sample, so
        // all the way there; its end is 40 s past the last sample, more than 1.1 gaps, so only half a gap (5 s).
        (double, double)[] sparse = [(0, 100), (10, 110), (20, 120)];
        Assert.Equal(20 * (20 + 10 + 5) / 20.0 / 70, PromQL.Rate(sparse, 60, 70)!.Value, 9);
    }

    [Fact]
    public void A_window_with_fewer_than_two_samples_gives_no_point()
    {
        Assert.Null(Counter.Rate(10, 15)); // only the scrape at 7 s
        Assert.Null(Counter.InstantRate(5, 30)); // none yet
        Assert.Null(PromQL.Rate([(10, 5)], 12, 30));
        // A range query leaves such steps out: every 5 s from 0 to 30 s, the first point at 25 s (7 and 22 s in its window).
        Assert.Equal([Counter.Rate(25, 30)!.Value, Counter.Rate(30, 30)!.Value], PromQL.Range(t => Counter.Rate(t, 30), 30, 30, 5));
    }
}
