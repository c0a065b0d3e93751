using System.Net;
using System.Text.Json;
using Adaptive.Operator.Cluster;
using k8s.Autorest;

namespace Adaptive.Operator.Watcher;

/// <summary>
/// List, then watch from the list's resourceVersion; resume a closed watch from the last version seen;
/// relist on 410 Gone; back off exponentially on errors. Every object seen is reported by the keys of what
/// it concerns (level-triggered: the reconciler reads the current state, so a missed event costs nothing but time).
/// Requests go through the client's authenticated path, as every other request of the operator.
/// </summary>
public sealed class ResourceWatcher(ClusterClient client, string path, Func<JsonElement, IEnumerable<string>> keysOf, Action<string> changed, ILogger log)
{
    static readonly TimeSpan FirstBackoff = TimeSpan.FromMilliseconds(200);
    static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(30);
    const int WatchTimeoutSeconds = 300;

    /// <summary>Lists completed since start (the first, and each relist after 410 or an error).</summary>
    public int Lists { get; private set; }

    public async Task RunAsync(CancellationToken cancellation)
    {
        var backoff = FirstBackoff;
        while (!cancellation.IsCancellationRequested)
        {
            try
            {
                string version = await List(cancellation);
                Lists++;
                backoff = FirstBackoff;
                while (!cancellation.IsCancellationRequested)
                {
                    var next = await Watch(version, cancellation);
                    if (next is null) break; // 410 Gone: the version is too old, relist
                    version = next;
                }
            }
            catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is HttpOperationException or HttpRequestException or JsonException or IOException or KeyNotFoundException or InvalidOperationException)
            {
                log.LogWarning("Watching {Path} failed ({Error}); retrying in {BackoffMs} ms", path, e.Message, backoff.TotalMilliseconds);
                await Task.Delay(backoff, cancellation).ContinueWith(_ => { }, TaskScheduler.Default);
                backoff = TimeSpan.FromTicks(Math.Min(MaxBackoff.Ticks, backoff.Ticks * 2));
            }
        }
    }

    async Task<string> List(CancellationToken cancellation)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, Url(""));
        using var response = await client.Send(request, cancellation);
        using var list = JsonDocument.Parse(await response.Content.ReadAsStreamAsync(cancellation));
        foreach (var item in list.RootElement.GetProperty("items").EnumerateArray())
            foreach (var key in keysOf(item)) changed(key);
        return list.RootElement.GetProperty("metadata").GetProperty("resourceVersion").GetString()!;
    }

    /// <summary>Follows one watch stream; returns the last resourceVersion seen, or null on 410 Gone.</summary>
    async Task<string?> Watch(string version, CancellationToken cancellation)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get,
            Url($"watch=true&allowWatchBookmarks=true&timeoutSeconds={WatchTimeoutSeconds}&resourceVersion={Uri.EscapeDataString(version)}"));
        HttpResponseMessage response;
        try
        {
            response = await client.Send(request, cancellation);
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.Gone)
        {
            return null;
        }
        using var answer = response;
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancellation));
        while (await reader.ReadLineAsync(cancellation) is { } line)
        {
            if (line.Length == 0) continue;
            using var e = JsonDocument.Parse(line);
            string type = e.RootElement.GetProperty("type").GetString()!;
            var item = e.RootElement.GetProperty("object");
            if (type == "ERROR")
            {
                if (item.TryGetProperty("code", out var code) && code.GetInt32() == 410) return null;
                throw new InvalidOperationException($"watch error: {item.GetRawText()}");
            }
            version = item.GetProperty("metadata").GetProperty("resourceVersion").GetString() ?? version;
            if (type != "BOOKMARK")
                foreach (var key in keysOf(item)) changed(key);
        }
        return version;
    }

    Uri Url(string query)
    {
        string separator = path.Contains('?') ? "&" : "?";
        return new Uri(client.BaseUri, query.Length == 0 ? path : path + separator + query);
    }
}
