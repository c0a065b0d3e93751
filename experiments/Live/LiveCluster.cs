using System.Diagnostics;
using System.Globalization;
using Adaptive.Core.Planning;
using Adaptive.Core.Routing;
using Adaptive.Core.Simulation;

namespace Adaptive.Experiments.Live;

/// <summary>How the live replicas and the router run.</summary>
/// <param name="Models">The ONNX file of each variant.</param>
/// <param name="SloMs">The model servers' request deadline.</param>
public sealed record LiveClusterOptions(string Pipeline, string Stage, IReadOnlyDictionary<string, string> Models, double SloMs, double MaxQueueDelayMs, TimeSpan ScrapeInterval);

/// <summary>What a group of replicas measured themselves, from their metrics: ONNX Runtime calls and the requests' waits in the batching queue.</summary>
public sealed record ReplicaTimes(double Calls, double CallSeconds, double Requests, double QueueWaitSeconds)
{
    public double MeanCallMs => Calls == 0 ? 0 : 1000 * CallSeconds / Calls;
    public double MeanQueueWaitMs => Requests == 0 ? 0 : 1000 * QueueWaitSeconds / Requests;

    public ReplicaTimes Plus(ReplicaTimes other) => new(Calls + other.Calls, CallSeconds + other.CallSeconds, Requests + other.Requests, QueueWaitSeconds + other.QueueWaitSeconds);

    public ReplicaTimes Minus(ReplicaTimes other) => new(Calls - other.Calls, CallSeconds - other.CallSeconds, Requests - other.Requests, QueueWaitSeconds - other.QueueWaitSeconds);

    /// <summary>Sums each series over its labels in a model server's metrics (Prometheus text format).</summary>
    public static ReplicaTimes Parse(string metrics)
    {
        var lines = metrics.Split('\n');
        double Sum(string name) => lines.Where(l => l.StartsWith(name + "{", StringComparison.Ordinal) || l.StartsWith(name + " ", StringComparison.Ordinal))
            .Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture));
        return new ReplicaTimes(Sum("adaptive_model_inference_duration_seconds_count"), Sum("adaptive_model_inference_duration_seconds_sum"),
            Sum("adaptive_model_queue_wait_seconds_count"), Sum("adaptive_model_queue_wait_seconds_sum"));
    }
}

/// <summary>
/// A one-stage pipeline on this machine in place of a cluster: each replica an <c>adaptive-server serve</c>
/// process, a router process in front reading a routes file, and a real Prometheus scraping the router.
/// <see cref="Apply"/> reconfigures it as the operator does Deployments: new replicas first, traffic moved
/// once they are ready, removed replicas sent SIGTERM so that they drain.
/// </summary>
public sealed class LiveCluster : IAsyncDisposable
{
    sealed record Replica(string Variant, int Batch, ServerProcess Process);

    readonly LiveClusterOptions options;
    readonly string directory = Directory.CreateTempSubdirectory("adaptive-live-").FullName;
    readonly List<Replica> serving = [];
    readonly List<ServerProcess> draining = [];
    readonly List<double> startupSeconds = [];
    /// <summary>What the replicas measured themselves, by variant and batch, read as each left (and, at the end, those still serving).</summary>
    readonly Dictionary<(string Variant, int Batch), ReplicaTimes> replicaTimes = [];
    /// <summary>Each replica's measurements before it served the window: its own warm-up's, and the cluster's before the window.</summary>
    readonly Dictionary<Replica, ReplicaTimes> beforeWindow = [];
    readonly HttpClient metricsClient = new() { Timeout = TimeSpan.FromSeconds(2) };
    readonly object gate = new();
    ServerProcess? router;

    public PrometheusServer? Prometheus { get; private set; }
    public Uri RouterAddress => router?.Address ?? throw new InvalidOperationException("the cluster has not started");

    /// <summary>Seconds from starting a replica's process to its serving, for each replica started.</summary>
    public IReadOnlyList<double> StartupSeconds { get { lock (gate) return [.. startupSeconds]; } }

    public LiveCluster(LiveClusterOptions options) => this.options = options;

    string RoutesPath => Path.Combine(directory, "routes.json");

    /// <summary>
    /// Starts the initial configuration and the router, sends <paramref name="warmUp"/> through it when given (before Prometheus
    /// scrapes the router, so that no rate counts those requests), then starts Prometheus.
    /// </summary>
    public async Task Start(StagePlan plan, Func<Task>? warmUp, CancellationToken cancellation)
    {
        await Apply(plan, cancellation);
        router = await ServerProcess.Start(["router", "--config", RoutesPath, "--host", "127.0.0.1", "--port", "0", "--config-poll-ms", "200",
            "--request-timeout-ms", Invariant(3 * options.SloMs), "--drain-delay-ms", "0"]);
        if (warmUp is not null) await warmUp();
        List<Replica> warmedUp;
        lock (gate) warmedUp = [.. serving];
        await Task.WhenAll(warmedUp.Select(BeforeWindow));
        // Scraped as the replay's simulation scrapes it, so that the policies see what the simulation shows them.
        Prometheus = await PrometheusServer.Start(options.ScrapeInterval, RouterAddress);
    }

    /// <summary>Replicas by "variant/bN", starting, serving and draining: what a cluster would bill.</summary>
    public IReadOnlyDictionary<string, int> Replicas()
    {
        lock (gate)
        {
            foreach (var exited in draining.Where(p => p.HasExited).ToList())
            {
                exited.Dispose();
                draining.Remove(exited);
            }
            var counts = serving.GroupBy(r => $"{options.Stage}/{SimulatedGroup.KeyOf(r.Variant, "cpu", r.Batch)}").ToDictionary(g => g.Key, g => g.Count());
            if (draining.Count > 0) counts["draining"] = draining.Count;
            return counts;
        }
    }

    /// <summary>Makes the running replicas match <paramref name="plan"/>, make-before-break.</summary>
    public async Task Apply(StagePlan plan, CancellationToken cancellation)
    {
        var keep = new List<Replica>();
        var starting = new List<Task<Replica>>();
        lock (gate)
        {
            foreach (var allocation in plan.Allocations)
            {
                var mine = serving.Where(r => r.Variant == allocation.Variant && r.Batch == allocation.Batch && !keep.Contains(r)).Take(allocation.Replicas).ToList();
                keep.AddRange(mine);
                for (int i = mine.Count; i < allocation.Replicas; i++) starting.Add(StartReplica(allocation.Variant, allocation.Batch));
            }
        }
        var started = await Task.WhenAll(starting);
        var replicas = keep.Concat(started).ToList();
        var routes = plan.Allocations.SelectMany(a =>
        {
            var mine = replicas.Where(r => r.Variant == a.Variant && r.Batch == a.Batch).ToList();
            return mine.Select(r => new VariantRoute(a.Variant, r.Process.Address!.ToString(), a.Share / mine.Count));
        }).ToList();
        await File.WriteAllTextAsync(RoutesPath + ".new", new RouterConfig(options.Pipeline, [new StageRoute(options.Stage, routes)], options.SloMs).Write(), cancellation);
        File.Move(RoutesPath + ".new", RoutesPath, overwrite: true);
        if (router != null) await Task.Delay(600, cancellation); // the router re-reads its file every 200 ms
        List<Replica> leaving;
        lock (gate) leaving = [.. serving.Where(r => !replicas.Contains(r))];
        await Task.WhenAll(leaving.Select(Record));
        lock (gate)
        {
            foreach (var gone in leaving)
            {
                gone.Process.Terminate();
                draining.Add(gone.Process);
            }
            serving.Clear();
            serving.AddRange(replicas);
        }
    }

    /// <summary>
    /// What every replica measured itself over the window, by variant and batch: those that left (read as they were told to
    /// drain) and those serving now, less what each had measured before (its own warm-up, and the cluster's before the window).
    /// Call once, at the end.
    /// </summary>
    public async Task<IReadOnlyDictionary<(string Variant, int Batch), ReplicaTimes>> CollectReplicaTimes()
    {
        List<Replica> now;
        lock (gate) now = [.. serving];
        await Task.WhenAll(now.Select(Record));
        lock (gate) return new Dictionary<(string Variant, int Batch), ReplicaTimes>(replicaTimes);
    }

    /// <summary>Adds a replica's own measurements since <see cref="BeforeWindow"/> to its group's; a replica that does not answer its metrics adds nothing.</summary>
    async Task Record(Replica replica)
    {
        if (await Measurements(replica) is not { } times) return;
        var key = (replica.Variant, replica.Batch);
        lock (gate)
        {
            if (beforeWindow.TryGetValue(replica, out var before)) times = times.Minus(before);
            replicaTimes[key] = replicaTimes.TryGetValue(key, out var sum) ? sum.Plus(times) : times;
        }
    }

    /// <summary>Notes what a replica has measured so far, so that <see cref="Record"/> counts only what comes after.</summary>
    async Task BeforeWindow(Replica replica)
    {
        if (await Measurements(replica) is { } times)
            lock (gate) beforeWindow[replica] = times;
    }

    async Task<ReplicaTimes?> Measurements(Replica replica)
    {
        try
        {
            return ReplicaTimes.Parse(await metricsClient.GetStringAsync(new Uri(replica.Process.Address!, "/metrics")));
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return null;
        }
    }

    async Task<Replica> StartReplica(string variant, int batch)
    {
        var clock = Stopwatch.StartNew();
        var process = await ServerProcess.Start(["serve", "--model", options.Models[variant], "--name", options.Stage, "--variant", variant,
            "--host", "127.0.0.1", "--port", "0", "--max-batch", Invariant(batch), "--max-queue-delay-ms", Invariant(options.MaxQueueDelayMs),
            "--intra-op-threads", "1", "--request-timeout-ms", Invariant(options.SloMs), "--drain-delay-ms", "0"]);
        using var http = new HttpClient { BaseAddress = process.Address, Timeout = TimeSpan.FromSeconds(5) };
        while (!(await http.GetAsync("/v2/health/ready")).IsSuccessStatusCode)
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(60)) throw new TimeoutException($"replica of {variant} not ready after 60 s");
            await Task.Delay(50);
        }
        lock (gate) startupSeconds.Add(clock.Elapsed.TotalSeconds);
        var replica = new Replica(variant, batch, process);
        await BeforeWindow(replica);
        return replica;
    }

    static string Invariant(double value) => value.ToString(CultureInfo.InvariantCulture);

    public async ValueTask DisposeAsync()
    {
        if (Prometheus != null) await Prometheus.DisposeAsync();
        metricsClient.Dispose();
        router?.Dispose();
        List<ServerProcess> all;
        lock (gate) all = [.. serving.Select(r => r.Process), .. draining];
        foreach (var process in all) process.Dispose();
        Directory.Delete(directory, recursive: true);
    }
}
