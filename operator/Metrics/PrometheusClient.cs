using System.Globalization;
using System.Text.Json;

namespace Adaptive.Operator.Metrics;

/// <summary>When Prometheus last scraped a router, and its scrape interval where it holds two scrapes to measure it from.</summary>
public sealed record RouterScrapes(DateTimeOffset Last, TimeSpan? Interval);

/// <summary>Why Prometheus gave no history; the operator turns each into a <c>Degraded</c> reason.</summary>
public enum MetricsFailure { Unreachable, QueryFailed, NoData }

public sealed class MetricsUnavailableException(MetricsFailure failure, string message) : Exception(message)
{
    public MetricsFailure Failure { get; } = failure;
}

/// <summary>
/// Reads a pipeline's router metrics from the Prometheus HTTP API: the arrival-rate history, a range query over
/// the request counter (<c>adaptive_pipeline_requests_total</c>), one rate per step, oldest first; and the
/// share of the latest requests that missed the SLO (<c>adaptive_pipeline_slo_misses_total</c>), and when and how often Prometheus scrapes the router.
/// </summary>
public sealed class PrometheusClient(HttpClient http, Uri baseAddress)
{
    /// <param name="rateWindow">The window of <c>rate()</c>; at least two scrape intervals, or some steps have no rate.</param>
    /// <param name="latestOnly">Each step's rate between the window's last two scrapes (<c>irate</c>) rather than over the whole window.</param>
    public async Task<IReadOnlyList<double>> ArrivalRateHistory(string pipeline, DateTimeOffset end, TimeSpan length, TimeSpan step, TimeSpan rateWindow,
        CancellationToken cancellation, bool latestOnly = false)
    {
        string query = $"sum({(latestOnly ? "irate" : "rate")}(adaptive_pipeline_requests_total{{pipeline=\"{Escape(pipeline)}\"}}[{Duration(rateWindow)}]))";
        var start = end - length;
        var series = await Query($"query_range?query={Uri.EscapeDataString(query)}&start={Seconds(start)}&end={Seconds(end)}&step={Seconds(step.TotalSeconds)}", cancellation);
        if (series.GetArrayLength() == 0)
            throw new MetricsUnavailableException(MetricsFailure.NoData, $"Prometheus has no requests of pipeline '{pipeline}' in the last {length.TotalSeconds:F0} s");
        return [.. series[0].GetProperty("values").EnumerateArray().Select(v => Number(v[1]))];
    }

    /// <summary>
    /// Of the requests the router answered between the last two scrapes in <paramref name="rateWindow"/>, the share that missed
    /// the pipeline's SLO; 0 when there were none, or the router counts no misses (its configuration names no SLO).
    /// </summary>
    public async Task<double> LatestMissedShare(string pipeline, DateTimeOffset at, TimeSpan rateWindow, CancellationToken cancellation)
    {
        string selector = $"{{pipeline=\"{Escape(pipeline)}\"}}[{Duration(rateWindow)}]";
        string query = $"sum(irate(adaptive_pipeline_slo_misses_total{selector})) / sum(irate(adaptive_pipeline_requests_total{selector}))";
        var vector = await Query($"query?query={Uri.EscapeDataString(query)}&time={Seconds(at)}", cancellation);
        double share = vector.GetArrayLength() == 0 ? 0 : Number(vector[0].GetProperty("value")[1]);
        return double.IsFinite(share) ? share : 0; // no requests: 0 / 0
    }

    /// <summary>How far back <see cref="Scrapes"/> looks: two scrapes at intervals up to 90 s.</summary>
    static readonly TimeSpan ScrapesLookback = TimeSpan.FromMinutes(3);

    /// <summary>
    /// When Prometheus last scraped the pipeline's router, and how often it does: the latest sample of its request counter at
    /// <paramref name="at"/>, and the median spacing of the samples of the last three minutes (to 0.1 s; null with fewer
    /// than two samples). Null when Prometheus holds no sample. The scrape interval is Prometheus' configuration, which the
    /// operator cannot read: it measures it, so that a rate query's window holds the samples it needs.
    /// </summary>
    public async Task<RouterScrapes?> Scrapes(string pipeline, DateTimeOffset at, CancellationToken cancellation)
    {
        string query = $"adaptive_pipeline_requests_total{{pipeline=\"{Escape(pipeline)}\"}}[{Duration(ScrapesLookback)}]";
        var series = await Query($"query?query={Uri.EscapeDataString(query)}&time={Seconds(at)}", cancellation);
        long? last = null;
        var gaps = new List<long>();
        foreach (var counter in series.EnumerateArray())
        {
            var times = counter.GetProperty("values").EnumerateArray().Select(v => (long)Math.Round(v[0].GetDouble() * 1000)).ToList();
            for (int i = 1; i < times.Count; i++) gaps.Add(times[i] - times[i - 1]);
            if (times.Count > 0 && (last is null || times[^1] > last)) last = times[^1];
        }
        if (last is null) return null;
        gaps.Sort();
        TimeSpan? interval = gaps.Count == 0 ? null : TimeSpan.FromMilliseconds(Math.Max(100, Math.Round(gaps[gaps.Count / 2] / 100.0) * 100));
        return new RouterScrapes(DateTimeOffset.FromUnixTimeMilliseconds(last.Value), interval);
    }

    /// <summary>The <c>data.result</c> of a query of the HTTP API (<paramref name="pathAndQuery"/> after <c>/api/v1/</c>).</summary>
    async Task<JsonElement> Query(string pathAndQuery, CancellationToken cancellation)
    {
        HttpResponseMessage response;
        try
        {
            response = await http.GetAsync($"{baseAddress.ToString().TrimEnd('/')}/api/v1/{pathAndQuery}", cancellation);
        }
        catch (HttpRequestException e)
        {
            throw new MetricsUnavailableException(MetricsFailure.Unreachable, $"Prometheus at {baseAddress} is unreachable: {e.Message}");
        }
        catch (TaskCanceledException) when (!cancellation.IsCancellationRequested)
        {
            throw new MetricsUnavailableException(MetricsFailure.Unreachable, $"Prometheus at {baseAddress} did not answer in time");
        }
        using (response)
        {
            string body = await response.Content.ReadAsStringAsync(cancellation);
            JsonElement root;
            try
            {
                root = JsonDocument.Parse(body).RootElement;
            }
            catch (JsonException)
            {
                throw new MetricsUnavailableException(MetricsFailure.QueryFailed, $"Prometheus answered {(int)response.StatusCode} with a body that is not JSON");
            }
            if (!response.IsSuccessStatusCode || root.GetProperty("status").GetString() != "success")
                throw new MetricsUnavailableException(MetricsFailure.QueryFailed,
                    $"Prometheus refused the query ({(int)response.StatusCode}): {(root.TryGetProperty("error", out var error) ? error.GetString() : body)}");
            return root.GetProperty("data").GetProperty("result");
        }
    }

    /// <summary>A sample's value, which the API writes as a string ("NaN" and "+Inf" included).</summary>
    static double Number(JsonElement value) => value.GetString() switch
    {
        "+Inf" => double.PositiveInfinity,
        "-Inf" => double.NegativeInfinity,
        var text => double.Parse(text!, NumberStyles.Float, CultureInfo.InvariantCulture),
    };

    static string Seconds(DateTimeOffset time) => Seconds(time.ToUnixTimeMilliseconds() / 1000.0);
    /// <summary>A PromQL duration: whole milliseconds, since a measured scrape interval need not be whole seconds and PromQL takes no fractions.</summary>
    static string Duration(TimeSpan span) => $"{Math.Round(span.TotalMilliseconds).ToString(CultureInfo.InvariantCulture)}ms";
    static string Seconds(double seconds) => seconds.ToString("0.###", CultureInfo.InvariantCulture);

    /// <summary>A label value inside double quotes in PromQL.</summary>
    static string Escape(string value) => value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal);
}
