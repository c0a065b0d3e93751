using System.Collections.Concurrent;
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
/// The controller: watches InferencePipelines, the Deployments it owns (an edited or deleted child brings its
/// pipeline back to the queue), InferencePools and Nodes (a pool's capacity follows its Nodes), and runs reconciles
/// from one work queue on a few workers: pipelines by <c>namespace/name</c>, pools by <see cref="PoolPrefix"/> and name
/// (a colon is in no namespace's name). A change to a pipeline also brings back the pool it names and the pool its
/// status says it was planned with. A failed reconcile comes back with backoff; a successful one at the time it asked for.
/// </summary>
public sealed class Controller(ClusterClient client, OperatorOptions options, PipelineReconciler pipelineReconciler, PoolReconciler poolReconciler,
    OperatorMetrics metrics, ILogger<Controller> log)
{
    public const string PoolPrefix = "inferencepool:";

    readonly WorkQueue queue = new(TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(60));

    /// <summary>The pools seen by the pool watch: a Node's change brings them all back.</summary>
    readonly ConcurrentDictionary<string, bool> pools = new();

    public async Task RunAsync(CancellationToken cancellation)
    {
        string scope = options.Namespace is { Length: > 0 } ns ? $"/namespaces/{ns}" : "";
        var watchers = new[]
        {
            new ResourceWatcher(client, $"apis/{InferencePipeline.Group}/{InferencePipeline.Version}{scope}/{InferencePipeline.Plural}", KeysOfPipeline, queue.Add, log),
            new ResourceWatcher(client, $"apis/apps/v1{scope}/deployments?labelSelector={Uri.EscapeDataString($"{Names.ManagedBy}={Names.FieldManager}")}", KeysOfOwner, queue.Add, log),
            new ResourceWatcher(client, $"apis/{InferencePipeline.Group}/{InferencePipeline.Version}/{InferencePool.Plural}", KeysOfPool, queue.Add, log),
            new ResourceWatcher(client, "api/v1/nodes", _ => pools.Keys, queue.Add, log),
        };
        var tasks = new List<Task>(watchers.Select(w => w.RunAsync(cancellation)));
        tasks.AddRange(Enumerable.Range(0, options.Workers).Select(_ => Work(cancellation)));
        log.LogInformation("Controller started: watching {Scope} with {Workers} workers", options.Namespace is { Length: > 0 } n ? $"namespace {n}" : "all namespaces", options.Workers);
        await Task.WhenAll(tasks);
    }

    static IEnumerable<string> KeysOfPipeline(JsonElement item)
    {
        var metadata = item.GetProperty("metadata");
        yield return $"{metadata.GetProperty("namespace").GetString()}/{metadata.GetProperty("name").GetString()}";
        if (item.TryGetProperty("spec", out var spec) && spec.TryGetProperty("hardwareClasses", out var classes) && classes.ValueKind == JsonValueKind.Array)
            foreach (var hardwareClass in classes.EnumerateArray())
                if (hardwareClass.TryGetProperty("pool", out var pool) && pool.ValueKind == JsonValueKind.String)
                    yield return PoolPrefix + pool.GetString();
        if (item.TryGetProperty("status", out var status) && status.TryGetProperty("pool", out var share) && share.TryGetProperty("name", out var planned))
            yield return PoolPrefix + planned.GetString(); // it left that pool: the others get its replicas
    }

    IEnumerable<string> KeysOfPool(JsonElement item)
    {
        string name = item.GetProperty("metadata").GetProperty("name").GetString()!;
        pools[PoolPrefix + name] = true;
        return [PoolPrefix + name];
    }

    /// <summary>The pipeline that controls a child, by its controller reference (labels may carry a shortened name).</summary>
    static IEnumerable<string> KeysOfOwner(JsonElement item)
    {
        var metadata = item.GetProperty("metadata");
        if (!metadata.TryGetProperty("ownerReferences", out var owners)) yield break;
        foreach (var owner in owners.EnumerateArray())
            if (owner.TryGetProperty("controller", out var controller) && controller.ValueKind == JsonValueKind.True
                && owner.GetProperty("kind").GetString() == InferencePipeline.KindName
                && owner.GetProperty("apiVersion").GetString() == InferencePipeline.ApiVersionString)
                yield return $"{metadata.GetProperty("namespace").GetString()}/{owner.GetProperty("name").GetString()}";
    }

    Task<TimeSpan?> Reconcile(string key, CancellationToken cancellation)
    {
        if (key.StartsWith(PoolPrefix, StringComparison.Ordinal)) return poolReconciler.Reconcile(key[PoolPrefix.Length..], cancellation);
        var parts = key.Split('/', 2);
        return pipelineReconciler.Reconcile(parts[0], parts[1], cancellation);
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
                var next = await Reconcile(key, cancellation);
                metrics.Reconciles.WithLabels("success").Inc();
                queue.Forget(key);
                if (next is { } delay) queue.AddAfter(key, delay);
            }
            catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
            {
                return;
            }
            catch (k8s.Autorest.HttpOperationException e) when (e.Response.StatusCode == System.Net.HttpStatusCode.Conflict)
            {
                // Another writer got there first (a pool's reconciler and its pipeline's both write the pipeline's status):
                // the next pass reads what it wrote. Expected, so not a warning.
                metrics.Reconciles.WithLabels("conflict").Inc();
                var delay = queue.AddRateLimited(key);
                log.LogInformation("Reconciling {Key} met a newer version of what it writes; again in {DelayMs} ms", key, delay.TotalMilliseconds);
            }
            catch (Exception e)
            {
                // An API server hiccup, a bug: read everything again later; nothing is half-lost,
                // because the next pass starts from what the cluster holds.
                metrics.Reconciles.WithLabels("error").Inc();
                var delay = queue.AddRateLimited(key);
                log.LogWarning(e, "Reconciling {Key} failed; retrying in {DelayMs} ms", key, delay.TotalMilliseconds);
            }
            finally
            {
                metrics.ReconcileSeconds.Observe(Stopwatch.GetElapsedTime(started).TotalSeconds);
                queue.Done(key);
            }
        }
    }
}
