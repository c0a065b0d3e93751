namespace Adaptive.Core.Forecasting;

/// <summary>
/// A counter of events counted per second, as Prometheus holds it once it scrapes it every <c>scrapeSeconds</c> (at
/// <c>phaseSeconds</c> + k · <c>scrapeSeconds</c>, each sample the count of the seconds before it), read with PromQL
/// (<see cref="PromQL"/>). The replay reads its simulated router through it, so that every policy sees what the
/// operator's queries return from a real Prometheus.
/// </summary>
public sealed class ScrapedCounter
{
    readonly double[] prefix; // prefix[s]: the count of seconds [0, s)
    readonly int scrapeSeconds, phaseSeconds;

    /// <param name="perSecond">Events counted in each second, oldest first; the last is the latest second known.</param>
    public ScrapedCounter(IReadOnlyList<double> perSecond, int scrapeSeconds, int phaseSeconds)
    {
        if (scrapeSeconds < 1) throw new ArgumentOutOfRangeException(nameof(scrapeSeconds), scrapeSeconds, "the scrape interval must be at least one second");
        prefix = new double[perSecond.Count + 1];
        for (int s = 0; s < perSecond.Count; s++) prefix[s + 1] = prefix[s] + perSecond[s];
        this.scrapeSeconds = scrapeSeconds;
        this.phaseSeconds = (phaseSeconds % scrapeSeconds + scrapeSeconds) % scrapeSeconds;
    }

    /// <summary>The seconds known: nothing is scraped after them.</summary>
    public int Seconds => prefix.Length - 1;

    /// <summary><c>rate(counter[window])</c> at second <paramref name="t"/>; null where Prometheus gives no point.</summary>
    public double? Rate(int t, int windowSeconds) => PromQL.Rate(Samples(t, windowSeconds), t, windowSeconds);

    /// <summary><c>irate(counter[window])</c> at second <paramref name="t"/>; null where Prometheus gives no point.</summary>
    public double? InstantRate(int t, int windowSeconds) => PromQL.InstantRate(Samples(t, windowSeconds), t, windowSeconds);

    /// <summary>The second of the latest scrape at or before <paramref name="t"/>; null before the first.</summary>
    public int? LastScrape(int t) => t < phaseSeconds ? null : phaseSeconds + (t - phaseSeconds) / scrapeSeconds * scrapeSeconds;

    /// <summary>The scrapes in (t − window, t].</summary>
    List<(double Time, double Value)> Samples(int t, int windowSeconds)
    {
        if (t > Seconds) throw new ArgumentOutOfRangeException(nameof(t), t, $"only {Seconds} s are known");
        var samples = new List<(double, double)>();
        int from = Math.Max(t - windowSeconds + 1, phaseSeconds);
        for (int s = phaseSeconds + (from - phaseSeconds + scrapeSeconds - 1) / scrapeSeconds * scrapeSeconds; s <= t; s += scrapeSeconds)
            samples.Add((s, prefix[s]));
        return samples;
    }
}
