using System.Globalization;
using System.Net;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Adaptive.Tests.Support;

/// <summary>
/// Stands in for the routers of several pipelines where only their arrival rate matters (a test of joint planning needs
/// hundreds of requests a second for each, which real models on 2 cores cannot serve): serves, on loopback, the router's
/// <c>adaptive_pipeline_requests_total</c> counter of each pipeline, growing at a rate the test sets, for a real
/// Prometheus to scrape.
/// </summary>
public sealed class ArrivalCounters : IAsyncDisposable
{
    readonly WebApplication app;
    readonly Lock gate = new();
    readonly Dictionary<string, (double Rate, double Count, DateTimeOffset At)> pipelines = [];

    ArrivalCounters(WebApplication app) => this.app = app;

    public Uri Address => new(app.Urls.First());

    public static async Task<ArrivalCounters> Start()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0));
        var app = builder.Build();
        var counters = new ArrivalCounters(app);
        app.MapGet("/metrics", () => Results.Text(counters.Exposition(), "text/plain; version=0.0.4"));
        await app.StartAsync();
        return counters;
    }

    /// <summary>From now on, <paramref name="pipeline"/>'s requests arrive at <paramref name="rps"/> a second.</summary>
    public void SetRate(string pipeline, double rps)
    {
        lock (gate)
        {
            var now = DateTimeOffset.UtcNow;
            double count = pipelines.TryGetValue(pipeline, out var at) ? at.Count + at.Rate * (now - at.At).TotalSeconds : 0;
            pipelines[pipeline] = (rps, count, now);
        }
    }

    string Exposition()
    {
        var text = new StringBuilder("# TYPE adaptive_pipeline_requests_total counter\n");
        lock (gate)
        {
            var now = DateTimeOffset.UtcNow;
            foreach (var (name, at) in pipelines)
                text.Append(CultureInfo.InvariantCulture, $"adaptive_pipeline_requests_total{{pipeline=\"{name}\",outcome=\"success\"}} {Math.Floor(at.Count + at.Rate * (now - at.At).TotalSeconds)}\n");
        }
        return text.ToString();
    }

    public async ValueTask DisposeAsync()
    {
        await app.StopAsync();
        await app.DisposeAsync();
    }
}
