using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Adaptive.Experiments.Live;

/// <summary>
/// A real Prometheus (Debian's package: <c>apt-get install prometheus</c>) on a free loopback port, scraping
/// the given targets every second (or as often as asked), its data in a temporary directory removed on dispose.
/// </summary>
public sealed class PrometheusServer : IAsyncDisposable
{
    readonly Process process;
    readonly string directory;

    public Uri Address { get; }

    PrometheusServer(Process process, string directory, Uri address)
    {
        this.process = process;
        this.directory = directory;
        Address = address;
    }

    /// <summary>The installed binary, or null.</summary>
    public static string? Binary => new[] { "/usr/bin/prometheus", "/usr/local/bin/prometheus" }.FirstOrDefault(File.Exists);

    public static Task<PrometheusServer> Start(params Uri[] targets) => Start(TimeSpan.FromSeconds(1), targets);

    public static async Task<PrometheusServer> Start(TimeSpan scrapeInterval, params Uri[] targets)
    {
        string binary = Binary ?? throw new InvalidOperationException("prometheus is not installed (apt-get install prometheus)");
        string directory = Directory.CreateTempSubdirectory("adaptive-prometheus-").FullName;
        string config = Path.Combine(directory, "prometheus.yml");
        File.WriteAllText(config, $"""
            global:
              scrape_interval: {(int)scrapeInterval.TotalSeconds}s
              evaluation_interval: {(int)scrapeInterval.TotalSeconds}s
            scrape_configs:
              - job_name: adaptive
                static_configs:
                  - targets: [{string.Join(", ", targets.Select(t => $"'{t.Authority}'"))}]
            """);
        int port = FreePort();
        var start = new ProcessStartInfo(binary) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in new[] { $"--config.file={config}", $"--storage.tsdb.path={Path.Combine(directory, "data")}",
                     $"--web.listen-address=127.0.0.1:{port}", "--log.level=warn" })
            start.ArgumentList.Add(arg);
        var process = Process.Start(start)!;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var server = new PrometheusServer(process, directory, new Uri($"http://127.0.0.1:{port}"));
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        for (var waited = Stopwatch.StartNew(); waited.Elapsed < TimeSpan.FromSeconds(30); await Task.Delay(100))
        {
            if (process.HasExited) break;
            try
            {
                if ((await http.GetAsync(new Uri(server.Address, "/-/ready"))).StatusCode == HttpStatusCode.OK) return server;
            }
            catch (HttpRequestException)
            {
                // not listening yet
            }
        }
        await server.DisposeAsync();
        throw new InvalidOperationException("prometheus did not become ready within 30 s");
    }

    /// <summary>When Prometheus last scraped its targets (<c>timestamp(up)</c>).</summary>
    public async Task<DateTimeOffset> LastScrape()
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        using var answer = System.Text.Json.JsonDocument.Parse(await http.GetStringAsync(new Uri(Address, "/api/v1/query?query=max(timestamp(up))")));
        var value = answer.RootElement.GetProperty("data").GetProperty("result")[0].GetProperty("value")[1].GetString()!;
        return DateTimeOffset.FromUnixTimeMilliseconds((long)(double.Parse(value, System.Globalization.CultureInfo.InvariantCulture) * 1000));
    }

    public static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    public async ValueTask DisposeAsync()
    {
        if (!process.HasExited)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }
        process.Dispose();
        Directory.Delete(directory, recursive: true);
    }
}
