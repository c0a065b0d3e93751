using System.Diagnostics;
using System.Text.Json;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Operator.Cluster;
using Adaptive.Operator.Metrics;
using Adaptive.Operator.Queue;
using Adaptive.Operator.Reconciliation;
using Adaptive.Operator.Watcher;

namespace Adaptive.Operator.Hosting;

/// <summary>
/// The controller: watches InferencePipelines and the Deployments it owns (an edited or deleted child
/// brings its pipeline back to the queue), and runs reconciles from the work queue on a few workers.
/// A failed reconcile comes back with backoff; a successful one at the time it asked for.
/// </summary>
public sealed class Controller(ClusterClient client, OperatorOptions options, PipelineReconciler reconciler, OperatorMetrics metrics, ILogger<Controller> log)
{
    readonly WorkQueue queue = new(TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(60));

    public async Task RunAsync(CancellationToken cancellation)
    {
        string scope = options.Namespace is { Length: > 0 } ns ? $"/namespaces/{ns}" : "";
        var pipelines = new ResourceWatcher(client,
            $"apis/{InferencePipeline.Group}/{InferencePipeline.Version}{scope}/{InferencePipeline.Plural}", KeyOfPipeline, queue.Add, log);
        var children = new ResourceWatcher(client,
            $"apis/apps/v1{scope}/deployments?labelSelector={Uri.EscapeDataString($"{Names.ManagedBy}={Names.FieldManager}")}", KeyOfOwner, queue.Add, log);
        var tasks = new List<Task> { pipelines.RunAsync(cancellation), children.RunAsync(cancellation) };
        tasks.AddRange(Enumerable.Range(0, options.Workers).Select(_ => Work(cancellation)));
        log.LogInformation("Controller started: watching {Scope} with {Workers} workers", options.Namespace is { Length: > 0 } n ? $"namespace {n}" : "all namespaces", options.Workers);
        await Task.WhenAll(tasks);
    }

    static string? KeyOfPipeline(JsonElement item)
    {
        var metadata = item.GetProperty("metadata");
        return $"{metadata.GetProperty("namespace").GetString()}/{metadata.GetProperty("name").GetString()}";
    }

    /// <summary>The pipeline that controls a child, by its controller reference (labels may carry a shortened name).</summary>
    static string? KeyOfOwner(JsonElement item)
    {
        var metadata = item.GetProperty("metadata");
        if (!metadata.TryGetProperty("ownerReferences", out var owners)) return null;
        foreach (var owner in owners.EnumerateArray())
            if (owner.TryGetProperty("controller", out var controller) && controller.ValueKind == JsonValueKind.True
                && owner.GetProperty("kind").GetString() == InferencePipeline.KindName
                && owner.GetProperty("apiVersion").GetString() == InferencePipeline.ApiVersionString)
                return $"{metadata.GetProperty("namespace").GetString()}/{owner.GetProperty("name").GetString()}";
        return null;
    }

    async Task Work(CancellationToken cancellation)
    {
        while (!cancellation.IsCancellationRequested)
        {
            string key;
            try
            {
                key = await queue.Take(cancellation);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            long started = Stopwatch.GetTimestamp();
            try
            {
                var parts = key.Split('/', 2);
                var next = await reconciler.Reconcile(parts[0], parts[1], cancellation);
                metrics.Reconciles.WithLabels("success").Inc();
                queue.Forget(key);
                if (next is { } delay) queue.AddAfter(key, delay);
            }
            catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // 409 Conflict, an API server hiccup, a bug: read everything again later; nothing is half-lost,
                // because the next pass starts from what the cluster holds.
                metrics.Reconciles.WithLabels("error").Inc();
                var delay = queue.AddRateLimited(key);
                log.LogWarning(e, "Reconciling {Pipeline} failed; retrying in {DelayMs} ms", key, delay.TotalMilliseconds);
            }
            finally
            {
                metrics.ReconcileSeconds.Observe(Stopwatch.GetElapsedTime(started).TotalSeconds);
                queue.Done(key);
            }
        }
    }
}
