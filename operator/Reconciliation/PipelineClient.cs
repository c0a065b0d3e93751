using System.Globalization;
using System.Net;
using System.Text.Json;
using Adaptive.Core.Adaptation;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Planning;
using k8s;
using k8s.Autorest;
using k8s.Models;

namespace Adaptive.Operator.Reconciliation;

/// <summary>
/// What both reconcilers read and write of a pipeline: the pipeline, its status, its events, and the model servers it
/// controls. Status writes carry the resourceVersion they were read at, so that the pool's reconciler (which records
/// decisions) and the pipeline's (which applies them) never overwrite each other: the later one gets 409 and runs again.
/// </summary>
public sealed class PipelineClient(k8s.Kubernetes client, TimeProvider time, ILogger<PipelineClient> log)
{
    static readonly JsonSerializerOptions Json = new() { DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull };

    public async Task<InferencePipeline?> Read(string ns, string name, CancellationToken cancellation)
    {
        try
        {
            var raw = await client.CustomObjects.GetNamespacedCustomObjectAsync(InferencePipeline.Group, InferencePipeline.Version, ns, InferencePipeline.Plural, name, cancellation);
            var pipeline = ((JsonElement)raw).Deserialize<InferencePipeline>()!;
            pipeline.Metadata.Namespace ??= ns;
            return pipeline;
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }
    }

    /// <summary>Every pipeline in <paramref name="ns"/>, or in all namespaces when it is empty.</summary>
    public async Task<List<InferencePipeline>> List(string? ns, CancellationToken cancellation)
    {
        var raw = ns is { Length: > 0 }
            ? await client.CustomObjects.ListNamespacedCustomObjectAsync(InferencePipeline.Group, InferencePipeline.Version, ns, InferencePipeline.Plural, cancellationToken: cancellation)
            : await client.CustomObjects.ListClusterCustomObjectAsync(InferencePipeline.Group, InferencePipeline.Version, InferencePipeline.Plural, cancellationToken: cancellation);
        return [.. ((JsonElement)raw).GetProperty("items").EnumerateArray().Select(item => item.Deserialize<InferencePipeline>()!)];
    }

    /// <summary>A status (a pipeline's or a pool's) as read, to compare with before writing (<see cref="WriteStatus"/>).</summary>
    public static string Snapshot<T>(T status) => JsonSerializer.Serialize(status, Json);

    /// <summary>A merge patch of the status subresource, on the condition that the object is still at <paramref name="resourceVersion"/>.</summary>
    public static string StatusPatch<T>(string? resourceVersion, T status) => JsonSerializer.Serialize(new { metadata = new { resourceVersion }, status }, Json);

    /// <summary>
    /// Patches the status unless it is still <paramref name="statusRead"/> (a check that changed nothing writes nothing and wakes no
    /// watcher), on the condition that the pipeline is still at the resourceVersion it was read at.
    /// </summary>
    public Task WriteStatus(InferencePipeline pipeline, InferencePipelineStatus status, string statusRead, CancellationToken cancellation)
    {
        if (Snapshot(status) == statusRead) return Task.CompletedTask;
        string patch = StatusPatch(pipeline.Metadata.ResourceVersion, status);
        return client.CustomObjects.PatchNamespacedCustomObjectStatusAsync(new V1Patch(patch, V1Patch.PatchType.MergePatch),
            InferencePipeline.Group, InferencePipeline.Version, pipeline.Metadata.Namespace, InferencePipeline.Plural, pipeline.Metadata.Name, cancellationToken: cancellation);
    }

    /// <summary>Records an Event on the pipeline, for <c>kubectl describe</c>; best effort.</summary>
    public async Task Event(InferencePipeline pipeline, string type, string reason, string message, CancellationToken cancellation)
    {
        var now = time.GetUtcNow().UtcDateTime;
        var e = new Corev1Event
        {
            Metadata = new V1ObjectMeta { Name = Names.Event(pipeline.Metadata.Name, now), NamespaceProperty = pipeline.Metadata.Namespace },
            InvolvedObject = new V1ObjectReference
            {
                ApiVersion = InferencePipeline.ApiVersionString, Kind = InferencePipeline.KindName,
                Name = pipeline.Metadata.Name, NamespaceProperty = pipeline.Metadata.Namespace, Uid = pipeline.Metadata.Uid,
            },
            Type = type,
            Reason = reason,
            Message = message.Length > 1000 ? message[..1000] : message,
            Source = new V1EventSource { Component = Names.FieldManager },
            FirstTimestamp = now,
            LastTimestamp = now,
            Count = 1,
        };
        try
        {
            await client.CoreV1.CreateNamespacedEventAsync(e, pipeline.Metadata.Namespace, cancellationToken: cancellation);
        }
        catch (HttpOperationException ex)
        {
            log.LogWarning("Could not record event {Reason}: {Status}", reason, ex.Response.StatusCode); // events are best effort
        }
    }

    /// <summary>The model servers this pipeline controls; those of an earlier pipeline of the same name are the garbage collector's.</summary>
    public async Task<List<V1Deployment>> RunningDeployments(InferencePipeline pipeline, CancellationToken cancellation) =>
        [.. (await client.AppsV1.ListNamespacedDeploymentAsync(pipeline.Metadata.Namespace,
                labelSelector: $"{Names.Pipeline}={Names.LabelValue(pipeline.Metadata.Name)},{Names.Component}={Names.ModelServer}", cancellationToken: cancellation))
            .Items.Where(d => d.Metadata.OwnerReferences?.Any(o => o.Uid == pipeline.Metadata.Uid && o.Controller == true) == true)];

    /// <summary>What the pipeline runs now, for the planner's loading term: its Deployments but those retiring.</summary>
    public static List<RunningAllocation> Current(IEnumerable<V1Deployment> running) =>
        [.. running.Where(d => d.Metadata.Annotations?.ContainsKey(Names.RetiringSince) != true).Select(Allocation)];

    static RunningAllocation Allocation(V1Deployment d) => new(
        d.Metadata.Labels[Names.Stage], d.Metadata.Labels[Names.Variant], d.Metadata.Labels[Names.HardwareClass], d.Spec.Replicas ?? 0,
        d.Metadata.Annotations is { } annotations && annotations.TryGetValue(Names.Batch, out var text)
            && int.TryParse(text, CultureInfo.InvariantCulture, out int batch) ? batch : 1);

    /// <summary>The decision recorded in status: the configuration the cluster should run.</summary>
    public static IReadOnlyList<StagePlan>? Recorded(InferencePipelineStatus status) =>
        status.Stages.Count == 0 ? null
            : [.. status.Stages.Select(s => new StagePlan(s.Name, [.. s.Allocations.Select(a => new Allocation(a.Variant, a.HardwareClass, a.Replicas, a.Batch, a.ShareRps))]))];
}
