using System.Diagnostics;
using System.Globalization;
using System.Net;
using Adaptive.Core.Simulation;
using Adaptive.Core.Workloads;

namespace Adaptive.Experiments.Live;

/// <summary>
/// An open-loop load generator: Poisson arrivals at the workload's per-second rate, each request sent when
/// it is due whether or not earlier ones have been answered, so that a slow server meets the load it would
/// meet in production instead of slowing the generator down. Latency counts from the request's due time, so a
/// generator that falls behind would count its own delay as the servers'; <see cref="SendLagsMs"/> says how far it did.
/// </summary>
public sealed class LoadGenerator(Uri router, string pipeline, byte[] body, int headerLength, double sloMs, int maxInFlight)
{
    readonly List<double> sendLagsMs = [];

    /// <summary>For each request of the last <see cref="Run"/> that was sent, how long after its due time it started, ms (below 0 for the up to 1 ms early that is not slept).</summary>
    public IReadOnlyList<double> SendLagsMs
    {
        get { lock (sendLagsMs) return [.. sendLagsMs]; }
    }

    public async Task<IReadOnlyList<RequestRecord>> Run(Workload workload, int seed, Stopwatch clock, CancellationToken cancellation)
    {
        lock (sendLagsMs) sendLagsMs.Clear();
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = maxInFlight, PooledConnectionLifetime = TimeSpan.FromMinutes(10) })
        {
            BaseAddress = router,
            Timeout = TimeSpan.FromMilliseconds(10 * sloMs),
        };
        var random = new Random(seed);
        var records = new List<RequestRecord>();
        var pending = new List<Task>();
        using var inFlight = new SemaphoreSlim(maxInFlight);
        for (int second = 0; second < workload.Seconds; second++)
        {
            double rate = workload.RatePerSecond[second];
            for (double t = second + (rate > 0 ? Exponential(random, rate) : 1); t < second + 1; t += Exponential(random, rate))
            {
                double wait = t - clock.Elapsed.TotalSeconds;
                if (wait > 0.001) await Task.Delay(TimeSpan.FromSeconds(wait), cancellation);
                double due = t;
                if (!inFlight.Wait(0))
                {
                    lock (records) records.Add(new RequestRecord(due, 0, 0, RequestOutcome.Rejected)); // the generator's own limit
                    continue;
                }
                pending.Add(Send(http, due, clock, records, inFlight));
            }
        }
        await Task.WhenAll(pending);
        return [.. records.OrderBy(r => r.ArrivalSeconds)];
    }

    async Task Send(HttpClient http, double due, Stopwatch clock, List<RequestRecord> records, SemaphoreSlim inFlight)
    {
        lock (sendLagsMs) sendLagsMs.Add((clock.Elapsed.TotalSeconds - due) * 1000);
        RequestOutcome outcome;
        try
        {
            using var content = new ByteArrayContent(body);
            content.Headers.ContentType = new("application/octet-stream");
            content.Headers.Add("Inference-Header-Content-Length", headerLength.ToString(CultureInfo.InvariantCulture));
            using var response = await http.PostAsync($"/v2/models/{pipeline}/infer", content);
            await response.Content.ReadAsByteArrayAsync();
            double latencyMs = (clock.Elapsed.TotalSeconds - due) * 1000;
            outcome = response.StatusCode switch
            {
                HttpStatusCode.OK => latencyMs > sloMs ? RequestOutcome.Late : RequestOutcome.OnTime,
                HttpStatusCode.GatewayTimeout => RequestOutcome.Expired,
                _ => RequestOutcome.Rejected,
            };
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            outcome = RequestOutcome.Expired;
        }
        finally
        {
            inFlight.Release();
        }
        double elapsedMs = (clock.Elapsed.TotalSeconds - due) * 1000;
        lock (records) records.Add(new RequestRecord(due, elapsedMs, 0, outcome));
    }

    static double Exponential(Random random, double rate) => -Math.Log(1 - random.NextDouble()) / rate;
}
