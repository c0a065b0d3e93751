using Adaptive.Operator.Adaptation;
using Adaptive.Operator.Cluster;
using Adaptive.Operator.Metrics;
using Adaptive.Operator.Reconciliation;
using k8s;
using k8s.LeaderElection;
using k8s.LeaderElection.ResourceLock;
using Microsoft.Extensions.Hosting;
using Prometheus;

namespace Adaptive.Operator.Hosting;

/// <summary>The operator process: the controller (behind a Lease when leader election is on), <c>/metrics</c> and health endpoints.</summary>
public static class OperatorApp
{
    public static WebApplication Build(OperatorOptions options, KubernetesClientConfiguration cluster)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddJsonConsole(o => o.IncludeScopes = true); // structured: the pipeline's name is a field
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.WebHost.ConfigureKestrel(k => k.Listen(System.Net.IPAddress.Parse(options.Host), options.Port));
        var registry = Prometheus.Metrics.NewCustomRegistry();
        // process_* (CPU, memory, threads, handles) and the GC's counts and heap: a blow-up shows in Prometheus.
        Prometheus.DotNetStats.Register(registry);
        builder.Services.AddSingleton(options);
        var client = new ClusterClient(cluster);
        builder.Services.AddSingleton(client);
        builder.Services.AddSingleton<k8s.Kubernetes>(client);
        builder.Services.AddSingleton(new OperatorMetrics(registry));
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddSingleton(options.Reconciler);
        builder.Services.AddSingleton(new LoadEstimator(new HttpClient { Timeout = TimeSpan.FromSeconds(10) }, options.DefaultPrometheus, options.MetricsStep, options.ScrapeInterval));
        builder.Services.AddSingleton<PipelineClient>();
        builder.Services.AddSingleton<DecisionRecorder>();
        builder.Services.AddSingleton<PipelineReconciler>();
        builder.Services.AddSingleton(s => ActivatorUtilities.CreateInstance<PoolReconciler>(s, (string?)options.Namespace ?? ""));
        builder.Services.AddSingleton<Controller>();
        builder.Services.AddHostedService<ControllerService>();
        var app = builder.Build();
        app.MapGet("/healthz", () => Results.Ok("ok"));
        app.MapGet("/readyz", () => Results.Ok("ok"));
        app.MapMetrics("/metrics", registry);
        return app;
    }

    /// <summary>Runs the controller, as the Lease holder when leader election is on.</summary>
    sealed class ControllerService(Controller controller, OperatorOptions options, k8s.Kubernetes client, ILogger<ControllerService> log) : BackgroundService
    {
        protected override async Task ExecuteAsync(CancellationToken stoppingToken)
        {
            if (!options.LeaderElection)
            {
                await controller.RunAsync(stoppingToken);
                return;
            }
            var elector = new LeaderElector(new LeaderElectionConfig(new LeaseLock(client, options.LeaseNamespace, "adaptive-operator", options.Identity))
            {
                LeaseDuration = options.LeaseDuration,
                RenewDeadline = options.LeaseDuration * 2 / 3,
                RetryPeriod = options.LeaseDuration / 7,
            });
            while (!stoppingToken.IsCancellationRequested)
            {
                using var leading = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
                Task? running = null;
                elector.OnStartedLeading += Start;
                try
                {
                    await elector.RunUntilLeadershipLostAsync(stoppingToken);
                }
                catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
                {
                    // shutting down
                }
                finally
                {
                    elector.OnStartedLeading -= Start;
                    await leading.CancelAsync();
                    if (running is not null) await running;
                }
                log.LogWarning("Lost the lease {Lease}; waiting to lead again", "adaptive-operator");

                void Start()
                {
                    log.LogInformation("Took the lease {Lease} as {Identity}", "adaptive-operator", options.Identity);
                    running = controller.RunAsync(leading.Token);
                }
            }
        }
    }
}
