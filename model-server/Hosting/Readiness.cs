using Microsoft.Extensions.Hosting;

namespace Adaptive.ModelServer.Hosting;

/// <summary>Whether the process should receive traffic: false from the moment it starts draining.</summary>
public sealed class Readiness
{
    volatile bool draining;

    public bool IsDraining => draining;

    public void BeginDrain() => draining = true;
}

/// <summary>
/// Zero-loss drain on SIGTERM. The host calls <see cref="StoppingAsync"/> before it stops Kestrel:
/// readiness turns false at once and the server keeps answering for the drain delay; then Kestrel
/// stops accepting and waits for the requests in flight, whose queued work the batcher still runs.
/// </summary>
public sealed class DrainOnStop(Readiness readiness, HttpOptions options, ILogger<DrainOnStop> logger) : IHostedLifecycleService
{
    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        readiness.BeginDrain();
        logger.LogInformation("Draining: not ready; serving {DelayMs} ms more, then finishing requests in flight", options.DrainDelay.TotalMilliseconds);
        await Task.Delay(options.DrainDelay, cancellationToken);
    }

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
