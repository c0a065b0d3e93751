using System.Globalization;
using System.Net;
using System.Text.Json;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Forecasting;
using Adaptive.Operator.Adaptation;
using Adaptive.Experiments.Live;
using Adaptive.Experiments.Manifests;
using Adaptive.Operator.Metrics;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Operator;

/// <summary>The operator's metrics client against a real Prometheus scraping a real router.</summary>
[Collection("serving")]
public sealed class PrometheusClientTests(TestModels models)
{
    static readonly CancellationToken Cancel = TestContext.Current.CancellationToken;

    [Fact]
    public async Task Reads_the_routers_arrival_rate_and_names_what_is_missing()
    {
        await using var pipeline = await LocalPipeline.Start(models, "images");
        await using var prometheus = await TestPrometheus.Start(pipeline.Router.Address);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        var client = new PrometheusClient(http, prometheus.Address);

        // About 10 requests a second, for long enough that a 3 s rate over 1 s scrapes has settled.
        IReadOnlyList<double> history = [];
        for (int second = 0; second < 25; second++)
        {
            for (int i = 0; i < 10; i++)
            {
                Assert.Equal(HttpStatusCode.OK, (await pipeline.Send(models, Cancel)).StatusCode);
                await Task.Delay(95, Cancel);
            }
            if (second < 6) continue;
            try
            {
                history = await client.ArrivalRateHistory("images", DateTimeOffset.UtcNow, TimeSpan.FromSeconds(4), TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(3), Cancel);
            }
            catch (MetricsUnavailableException e) when (e.Failure == MetricsFailure.NoData)
            {
                continue; // the first scrapes have not landed yet
            }
            if (history.Count >= 4) break;
        }
        Assert.True(history.Count >= 4, $"history: {string.Join(", ", history)}");
        Assert.All(history.TakeLast(3), rate => Assert.InRange(rate, 5, 12));
        await The_replay_reads_counters_as_prometheus_does(http, prometheus.Address);

        var none = await Assert.ThrowsAsync<MetricsUnavailableException>(() =>
            client.ArrivalRateHistory("other", DateTimeOffset.UtcNow, TimeSpan.FromSeconds(30), TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(3), Cancel));
        Assert.Equal(MetricsFailure.NoData, none.Failure);
        Assert.Equal("Prometheus has no requests of pipeline 'other' in the last 30 s", none.Message);

        var refused = await Assert.ThrowsAsync<MetricsUnavailableException>(() =>
            client.ArrivalRateHistory("images", DateTimeOffset.UtcNow, TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(1), TimeSpan.FromSeconds(3), Cancel));
        Assert.Equal(MetricsFailure.QueryFailed, refused.Failure); // 30 000 points per series is over Prometheus's limit

        var down = new PrometheusClient(http, new Uri($"http://127.0.0.1:{PrometheusServer.FreePort()}"));
        var unreachable = await Assert.ThrowsAsync<MetricsUnavailableException>(() =>
            down.ArrivalRateHistory("images", DateTimeOffset.UtcNow, TimeSpan.FromSeconds(30), TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(3), Cancel));
        Assert.Equal(MetricsFailure.Unreachable, unreachable.Failure);
    }

    /// <summary>
    /// The share of the latest requests that missed the SLO, as the surge rule reads it: all of them under an SLO no request can
    /// meet (the stage is given no time and refuses each), none of a pipeline Prometheus has no misses of.
    /// </summary>
    [Fact]
    public async Task Reads_the_share_of_the_latest_requests_that_missed_the_slo()
    {
        await using var pipeline = await LocalPipeline.Start(models, "strict", sloMs: 0.001);
        await using var prometheus = await TestPrometheus.Start(pipeline.Router.Address);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        var client = new PrometheusClient(http, prometheus.Address);

        double share = 0;
        for (int second = 0; second < 25 && share == 0; second++)
        {
            for (int i = 0; i < 10; i++)
            {
                Assert.Equal(HttpStatusCode.TooManyRequests, (await pipeline.Send(models, Cancel)).StatusCode);
                await Task.Delay(95, Cancel);
            }
            share = await client.LatestMissedShare("strict", DateTimeOffset.UtcNow, TimeSpan.FromSeconds(3), Cancel);
        }
        Assert.Equal(1, share, 3);
        Assert.Equal(0, await client.LatestMissedShare("other", DateTimeOffset.UtcNow, TimeSpan.FromSeconds(3), Cancel));
        Assert.Null(await client.Scrapes("other", DateTimeOffset.UtcNow, Cancel)); // never scraped: the surge check keeps its fixed period
    }

    /// <summary>
    /// The replay computes rate() and irate() itself (<see cref="PromQL"/>): from the samples Prometheus holds of the router's
    /// request counter, it gives what Prometheus gives, over windows of one to four and a half scrapes, read between two scrapes.
    /// </summary>
    static async Task The_replay_reads_counters_as_prometheus_does(HttpClient http, Uri prometheus)
    {
        const string series = "adaptive_pipeline_requests_total{pipeline=\"images\",outcome=\"success\"}";
        async Task<JsonElement?> Query(string query, long atMs)
        {
            string at = (atMs / 1000.0).ToString("F3", CultureInfo.InvariantCulture);
            using var answer = JsonDocument.Parse(await http.GetStringAsync(new Uri(prometheus, $"/api/v1/query?query={Uri.EscapeDataString(query)}&time={at}"), Cancel));
            var result = answer.RootElement.GetProperty("data").GetProperty("result");
            return result.GetArrayLength() == 0 ? null : result[0].Clone();
        }
        async Task<double?> Value(string query, long atMs) => await Query(query, atMs) is { } point ? Number(point.GetProperty("value")[1]) : null;
        static double Number(JsonElement value) => double.Parse(value.GetString()!, CultureInfo.InvariantCulture);

        long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var raw = (await Query($"{series}[30s]", now))!.Value.GetProperty("values").EnumerateArray()
            .Select(v => (Ms: (long)Math.Round(v[0].GetDouble() * 1000), Value: Number(v[1]))).ToList(); // Prometheus keeps milliseconds
        Assert.True(raw.Count >= 5, $"{raw.Count} samples");
        // Read 700 ms after a scrape, so that no window's start falls exactly on a sample (Prometheus 2 would take it; 3 would not).
        long atMs = raw[^1].Ms + 700;
        var samples = raw.Select(s => ((s.Ms - atMs) / 1000.0, s.Value)).ToList(); // seconds relative to the reading, exact
        foreach (int windowMs in new[] { 1_500, 2_000, 2_500, 3_000, 4_500 }) // 1.5 s holds one sample: no point
        {
            AssertClose(await Value($"rate({series}[{windowMs}ms])", atMs), PromQL.Rate(samples, 0, windowMs / 1000.0));
            AssertClose(await Value($"irate({series}[{windowMs}ms])", atMs), PromQL.InstantRate(samples, 0, windowMs / 1000.0));
        }
        static void AssertClose(double? expected, double? actual)
        {
            Assert.Equal(expected is null, actual is null);
            if (expected is { } e) Assert.Equal(e, actual!.Value, 6);
        }

        // The operator's latest rate for the surge rule, and the one a scrape before it for the trend: at its history step (a third
        // of a scrape), the step before would be the same two scrapes.
        var pipeline = ManifestReader.Parse(File.ReadAllText(RepoPaths.Of("samples", "resnet-mixed.yaml")));
        pipeline.Metadata.Name = "images";
        // Prometheus scrapes every second; the estimator, told 15 s, measures it from the samples.
        var scrape = TimeSpan.FromSeconds(1);
        Assert.Equal(new RouterScrapes(DateTimeOffset.FromUnixTimeMilliseconds(raw[^1].Ms), scrape), await new PrometheusClient(http, prometheus).Scrapes("images", DateTimeOffset.FromUnixTimeMilliseconds(atMs), Cancel));
        var estimator = new LoadEstimator(http, prometheus, scrape / 3, TimeSpan.FromSeconds(15));
        Assert.Equal(new ScrapeInterval(scrape, Measured: true), (await estimator.Estimate(pipeline, DateTimeOffset.FromUnixTimeMilliseconds(atMs), Cancel)).Scrapes);
        var latest = await estimator.Latest(pipeline, DateTimeOffset.FromUnixTimeMilliseconds(atMs), Cancel);
        Assert.Equal(PromQL.InstantRate(samples, 0, 2)!.Value, latest.Rps, 6);
        Assert.Equal(PromQL.InstantRate(samples, -1, 2)!.Value, latest.PreviousRps, 6);
        // The surge check comes just after the next scrape: the last one's time, to the millisecond, plus the interval.
        Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(raw[^1].Ms) + scrape, estimator.NextScrape(latest.Scrapes));
        // Just after the router's first scrape there is no interval to measure: the estimator assumes what it was told.
        long firstMs = (await Query("min(min_over_time(timestamp(adaptive_pipeline_requests_total{pipeline=\"images\"})[1h:1s]))", now)) is { } first
            ? (long)Math.Round(Number(first.GetProperty("value")[1]) * 1000) : throw new InvalidOperationException("no first scrape");
        var justAfterFirst = DateTimeOffset.FromUnixTimeMilliseconds(firstMs + 500);
        Assert.Equal(new RouterScrapes(DateTimeOffset.FromUnixTimeMilliseconds(firstMs), null), await new PrometheusClient(http, prometheus).Scrapes("images", justAfterFirst, Cancel));
        Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(firstMs) + TimeSpan.FromSeconds(15), estimator.NextScrape((await estimator.Scrapes(pipeline, justAfterFirst, Cancel))!));
    }
}
