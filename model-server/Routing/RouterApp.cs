using Adaptive.Core.Routing;
using Adaptive.ModelServer.Hosting;
using Adaptive.ModelServer.Metrics;
using Microsoft.Extensions.Hosting;
using Prometheus;

namespace Adaptive.ModelServer.Routing;

/// <param name="ConfigPollInterval">How often the configuration file is compared with the one loaded.
/// Polling the content, not file events, is what works with ConfigMap volumes, which swap a symlink.</param>
/// <param name="MaxInFlight">Most pipeline requests in progress at once; more are refused with 429.</param>
/// <param name="BodyBudgetBytes">The most bytes of request bodies read at once, over all requests; beyond it requests get 429.</param>
public sealed record RouterOptions(HttpOptions Http, string ConfigPath, TimeSpan ConfigPollInterval, int MaxInFlight,
    long BodyBudgetBytes = Serving.ModelServerOptions.DefaultBodyBudgetBytes);

/// <summary>
/// <c>adaptive-server router</c>: the pipeline's entry point. A request to <c>/v2/models/{pipeline}/infer</c>
/// goes through the stages in order; at each stage one variant is chosen by weight among the healthy ones,
/// and the stage's outputs become the next stage's inputs (renamed, in order, to the inputs the next model
/// declares). A variant that cannot be reached, resets, answers 5xx or not in time is tried no more for
/// that request: it goes to another variant of the stage once, within the deadline; one that fails in a
/// row is ejected (<see cref="VariantHealth"/>) until a probe finds it ready. The router is ready while
/// every stage has a variant that is not ejected.
/// </summary>
public static class RouterApp
{
    public static WebApplication Build(RouterOptions options)
    {
        var routes = new RouteTable(RouterConfig.Parse(ReadConfig(options.ConfigPath)));
        var builder = HttpHosting.CreateBuilder(options.Http);
        var registry = Prometheus.Metrics.NewCustomRegistry();
        // process_* (CPU, memory, threads, handles) and the GC's counts and heap: a blow-up shows in Prometheus.
        Prometheus.DotNetStats.Register(registry);
        var metrics = new RouterMetrics(registry);
        metrics.ConfigGeneration.Set(1);
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(routes);
        builder.Services.AddSingleton(metrics);
        var health = new VariantHealth(TimeProvider.System);
        builder.Services.AddSingleton(health);
        builder.Services.AddHostedService<ConfigReloader>();
        builder.Services.AddHostedService<VariantProber>();
        var http = new HttpClient(new SocketsHttpHandler
        {
            PooledConnectionLifetime = TimeSpan.FromMinutes(1), // see Service endpoint changes
            ConnectTimeout = TimeSpan.FromSeconds(2),
        })
        {
            Timeout = Timeout.InfiniteTimeSpan, // each request has its own deadline
            MaxResponseContentBufferSize = options.Http.MaxBodyBytes,
        };
        var grpc = new Grpc.GrpcStageClient(options.Http.MaxBodyBytes);
        var clients = new StageClients(new RestStageClient(http), grpc);
        builder.Services.AddSingleton(clients);
        builder.Services.AddSingleton(services => new PipelineForwarder(options, routes, metrics, health, clients,
            services.GetRequiredService<ILoggerFactory>().CreateLogger("Adaptive.Router")));
        var app = builder.Build();
        app.Lifetime.ApplicationStopped.Register(() =>
        {
            http.Dispose();
            grpc.Dispose();
        });
        var forwarder = app.Services.GetRequiredService<PipelineForwarder>();

        HttpHosting.MapHealth(app, () => forwarder.StagesUsable);
        app.MapMetrics("/metrics", registry);
        HttpHosting.MapServerMetadata(app);
        var rest = new RouterRestEndpoints(forwarder);
        HttpHosting.MapModel(app, rest);
        Grpc.GrpcBodyBudget.Use(app, forwarder.Bodies, options.Http.RequestTimeout, forwarder.CountBudgetRefusal);
        if (options.Http.GrpcPort is not null) app.MapGrpcService<Grpc.GrpcRouterService>();
        return app;
    }

    internal static string ReadConfig(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new RouterConfigException($"cannot read router configuration {path}: {e.Message}");
        }
    }
}

/// <summary>The configuration in use and a weighted chooser per stage, swapped whole on reload.</summary>
public sealed class RouteTable(RouterConfig initial)
{
    public sealed record Routes(RouterConfig Config, IReadOnlyList<WeightedChooser<VariantRoute>> Choosers, StageDeadlines Deadlines, long Generation);

    volatile Routes current = Create(initial, 1);

    public Routes Current => current;

    public void Replace(RouterConfig config) => current = Create(config, current.Generation + 1);

    static Routes Create(RouterConfig config, long generation) =>
        new(config, [.. config.Stages.Select(s => new WeightedChooser<VariantRoute>(s.Variants, v => v.Weight))], new StageDeadlines(config.Stages.Count), generation);
}

/// <summary>Reloads the configuration when the file's content changes; a bad file keeps the last good configuration.</summary>
sealed class ConfigReloader(RouterOptions options, RouteTable routes, RouterMetrics metrics, ILogger<ConfigReloader> log) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        string loaded = RouterApp.ReadConfig(options.ConfigPath);
        using var timer = new PeriodicTimer(options.ConfigPollInterval);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            string text;
            try
            {
                text = RouterApp.ReadConfig(options.ConfigPath);
                if (text == loaded) continue;
                routes.Replace(RouterConfig.Parse(text));
            }
            catch (RouterConfigException e)
            {
                metrics.Reload(success: false);
                log.LogError("Keeping configuration generation {Generation}: {Problem}", routes.Current.Generation, e.Message);
                continue;
            }
            loaded = text;
            metrics.Reload(success: true);
            metrics.ConfigGeneration.Set(routes.Current.Generation);
            log.LogInformation("Loaded configuration generation {Generation}: {Weights}", routes.Current.Generation,
                string.Join("; ", routes.Current.Config.Stages.Select(s => $"{s.Name}: {string.Join(", ", s.Variants.Select(v => $"{v.Name}={v.Weight:G4}"))}")));
        }
    }
}

/// <summary>
/// Probes the ejected variants whose back-off has passed (<c>/v2/health/ready</c>, or ServerReady over gRPC; 1 s to answer): a ready one
/// takes traffic again, another stays out for longer.
/// </summary>
sealed class VariantProber(VariantHealth health, RouteTable routes, StageClients clients, ILogger<VariantProber> log) : BackgroundService
{
    static readonly TimeSpan Period = TimeSpan.FromMilliseconds(250);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Period);
        while (await timer.WaitForNextTickAsync(stoppingToken))
            await Task.WhenAll(health.DueForProbe().Select(endpoint => Probe(endpoint, stoppingToken)));
    }

    async Task Probe(string endpoint, CancellationToken stopping)
    {
        bool ready;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        timeout.CancelAfter(TimeSpan.FromSeconds(1));
        try
        {
            ready = await clients.For(routes.Current.Config, endpoint).Ready(endpoint, timeout.Token);
        }
        catch (OperationCanceledException) when (!stopping.IsCancellationRequested)
        {
            ready = false;
        }
        health.Probed(endpoint, ready);
        if (ready) log.LogInformation("{Endpoint} is ready again: it takes traffic", endpoint);
    }
}
