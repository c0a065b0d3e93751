using System.Globalization;
using System.Text.Json;

namespace Adaptive.Operator.Metrics;

/// <summary>Why Prometheus gave no history; the operator turns each into a <c>Degraded</c> reason.</summary>
public enum MetricsFailure { Unreachable, QueryFailed, NoData }

public sealed class MetricsUnavailableException(MetricsFailure failure, string message) : Exception(message)
{
    public MetricsFailure Failure { get; } = failure;
}

/// <summary>
/// Reads a pipeline's arrival-rate history from the Prometheus HTTP API: a range query over the router's
/// request counter (<c>adaptive_pipeline_requests_total</c>), one rate per step, oldest first.
/// </summary>
public sealed class PrometheusClient(HttpClient http, Uri baseAddress)
{
    /// <param name="rateWindow">The window of <c>rate()</c>; at least two scrape intervals, or some steps have no rate.</param>
    /// <param name="latestOnly">Each step's rate between the window's last two scrapes (<c>irate</c>) rather than over the whole window.</param>
    public async Task<IReadOnlyList<double>> ArrivalRateHistory(string pipeline, DateTimeOffset end, TimeSpan length, TimeSpan step, TimeSpan rateWindow,
        CancellationToken cancellation, bool latestOnly = false)
    {
        string query = $"sum({(latestOnly ? "irate" : "rate")}(adaptive_pipeline_requests_total{{pipeline=\"{Escape(pipeline)}\"}}[{Seconds(rateWindow)}s]))";
        var start = end - length;
        string url = $"{baseAddress.ToString().TrimEnd('/')}/api/v1/query_range?query={Uri.EscapeDataString(query)}"
            + $"&start={Seconds(start.ToUnixTimeMilliseconds() / 1000.0)}&end={Seconds(end.ToUnixTimeMilliseconds() / 1000.0)}&step={Seconds(step)}s";
        HttpResponseMessage response;
        try
        {
            response = await http.GetAsync(url, cancellation);
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
            var series = root.GetProperty("data").GetProperty("result");
            if (series.GetArrayLength() == 0)
                throw new MetricsUnavailableException(MetricsFailure.NoData, $"Prometheus has no requests of pipeline '{pipeline}' in the last {length.TotalSeconds:F0} s");
            return [.. series[0].GetProperty("values").EnumerateArray().Select(v => double.Parse(v[1].GetString()!, CultureInfo.InvariantCulture))];
        }
    }

    static string Seconds(TimeSpan span) => Seconds(span.TotalSeconds);
    static string Seconds(double seconds) => seconds.ToString("0.###", CultureInfo.InvariantCulture);

    /// <summary>A label value inside double quotes in PromQL.</summary>
    static string Escape(string value) => value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal);
}
