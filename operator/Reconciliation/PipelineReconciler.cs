using System.Globalization;
using System.Net;
using System.Text.Json;
using Adaptive.Core.Adaptation;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Planning;
using Adaptive.Core.Routing;
using Adaptive.Operator.Adaptation;
using Adaptive.Operator.Metrics;
using k8s;
using k8s.Autorest;
using k8s.Models;

namespace Adaptive.Operator.Reconciliation;

/// <param name="RetireAfter">How long a variant whose traffic has moved away keeps running: the router
/// re-reads its file every 2 s, but a ConfigMap volume can take a minute to show a change.</param>
/// <param name="MetricsRetry">When Prometheus fails, how soon to try again.</param>
public sealed record ReconcilerSettings(WorkloadSettings Workload, TimeSpan RetireAfter, TimeSpan MetricsRetry);

/// <summary>
/// One level-triggered, idempotent pass over one pipeline: read it and what runs for it; when a decision
/// is due (its interval passed or its spec changed), forecast, plan and record the decision in status;
/// then make the cluster match the recorded decision, make-before-break. Returns when to look again.
/// A pipeline with a class in an InferencePool is not planned here: its pool's reconciler records its
/// decision (<see cref="PoolReconciler"/>), and this pass only applies it; it never reads other pipelines.
/// </summary>
public sealed class PipelineReconciler(k8s.Kubernetes client, PipelineClient pipelines, DecisionRecorder decisions, ReconcilerSettings settings, ILogger<PipelineReconciler> log, TimeProvider time)
{
    static readonly TimeSpan ProgressCheck = TimeSpan.FromSeconds(2);

    /// <summary>The Ready condition's reason while a planned variant's pods fail to start (crash, image, scheduling).</summary>
    const string NotStartingReason = "VariantNotStarting";

    public async Task<TimeSpan?> Reconcile(string ns, string name, CancellationToken cancellation)
    {
        var pipeline = await pipelines.Read(ns, name, cancellation);
        // Deleted, or being deleted (a finalizer or foreground deletion holds it): its objects go with it
        // through their ownerReferences, and nothing may be written for it meanwhile.
        if (pipeline is null || pipeline.Metadata.DeletionTimestamp is not null) return null;
        var now = time.GetUtcNow();
        var status = pipeline.Status ?? new InferencePipelineStatus();
        string statusRead = PipelineClient.Snapshot(status);
        long? generation = pipeline.Metadata.Generation;
        using var scope = log.BeginScope(new Dictionary<string, object> { ["pipeline"] = $"{ns}/{name}" });

        try
        {
            InferencePipelineValidator.Validate(pipeline);
        }
        catch (PlanningInputException e)
        {
            // Nothing that runs is touched: a typo in the spec must not take the pipeline down.
            bool fresh = !Conditions.Is(status.Conditions, PipelineCondition.Ready, "InvalidSpec") || status.ObservedGeneration != generation;
            Conditions.Set(status.Conditions, PipelineCondition.Ready, false, "InvalidSpec", e.Message, generation, now);
            status.ObservedGeneration = generation;
            await pipelines.WriteStatus(pipeline, status, statusRead, cancellation);
            if (fresh) await pipelines.Event(pipeline, "Warning", "InvalidSpec", e.Message, cancellation);
            return null;
        }

        var running = await pipelines.RunningDeployments(pipeline, cancellation);
        var decision = PipelineClient.Recorded(status);
        string? pool = pipeline.Spec.HardwareClasses.FirstOrDefault(c => c.Pool is not null)?.Pool;
        TimeSpan? retryMetrics = null;
        SurgeCheck? surge = null; // between decisions: whether the load calls for one now
        string? stabilizing = status.Conditions.FirstOrDefault(c => c.Type == PipelineCondition.Adapting && c.Reason == DecisionRecorder.StabilizingReason)?.Message;
        if (pool is not null)
        {
            // Its pool's reconciler decides, with the pool's other pipelines, and records the decision in this status;
            // a decision made before the spec changed is not applied (it may name what the spec no longer has).
            if (decision is null || status.ObservedGeneration != generation || status.Pool?.Name != pool)
            {
                await AwaitPool(pipeline, status, pool, cancellation);
                await pipelines.WriteStatus(pipeline, status, statusRead, cancellation);
                return null; // the pool's decision, written to this status, brings the pipeline back
            }
        }
        else
        {
            // Planned alone: no share of a pool any more.
            status.Pool = null;
            status.Conditions.RemoveAll(c => c.Type == PipelineCondition.PoolConstrained);
            bool due = decision is null || status.ObservedGeneration != generation || status.LastDecisionTime is not { } last
                || now - last >= TimeSpan.FromSeconds(pipeline.Spec.Adaptation.IntervalSeconds);
            surge = due ? null : await decisions.CheckSurge(pipeline, status, decision!, now, cancellation);
            if (due || surge?.Rps is not null)
            {
                var (newDecision, metricsFailed, held) = await Decide(pipeline, status, decision, PipelineClient.Current(running), now, surge?.Rps, cancellation);
                (decision, stabilizing) = (newDecision, held);
                if (metricsFailed) retryMetrics = settings.MetricsRetry;
            }
            status.ObservedGeneration = generation;
            if (decision is null)
            {
                await pipelines.WriteStatus(pipeline, status, statusRead, cancellation);
                return retryMetrics;
            }
        }

        var (settled, retiring, failing) = await Apply(pipeline, decision, running, now, cancellation);
        if (failing.Count > 0)
        {
            string why = $"{string.Join("; ", failing)}; traffic stays where it was";
            bool news = !Conditions.Is(status.Conditions, PipelineCondition.Ready, NotStartingReason) || status.Conditions.Single(c => c.Type == PipelineCondition.Ready).Message != why;
            Conditions.Set(status.Conditions, PipelineCondition.Ready, false, NotStartingReason, why, generation, now);
            if (news) await pipelines.Event(pipeline, "Warning", NotStartingReason, why, cancellation);
        }
        else
            Conditions.Set(status.Conditions, PipelineCondition.Ready, settled, settled ? "Serving" : "Progressing",
                settled ? "every planned variant is ready and routed" : "waiting for planned variants to have all their pods ready before moving traffic to them", generation, now);
        if (settled && !retiring && stabilizing is not null)
            Conditions.Set(status.Conditions, PipelineCondition.Adapting, false, DecisionRecorder.StabilizingReason, stabilizing, generation, now);
        else
            Conditions.Set(status.Conditions, PipelineCondition.Adapting, !settled || retiring, settled ? retiring ? "Retiring" : "Stable" : "Reconfiguring",
                settled ? retiring ? "replaced variants keep running until their traffic has surely moved" : "the running configuration is the planned one"
                        : "moving to the planned configuration, make-before-break", generation, now);
        await pipelines.WriteStatus(pipeline, status, statusRead, cancellation);

        if (pool is not null) return !settled ? ProgressCheck : retiring ? settings.RetireAfter : null; // the pool decides on its own schedule
        var untilDecision = status.LastDecisionTime!.Value + TimeSpan.FromSeconds(pipeline.Spec.Adaptation.IntervalSeconds) - now;
        if (settled) // else the progress checks come sooner
        {
            var untilCheck = await decisions.UntilNextCheck(pipeline, status, retryMetrics is not null, surge?.Scrapes, now, cancellation); // the next surge check
            if (untilDecision > untilCheck) untilDecision = untilCheck;
        }
        var next = !settled ? ProgressCheck : retiring && settings.RetireAfter < untilDecision ? settings.RetireAfter : untilDecision;
        if (retryMetrics is { } retry && retry < next) next = retry;
        return next < TimeSpan.Zero ? TimeSpan.Zero : next;
    }

    /// <summary>Says, on a pooled pipeline that has no decision for its spec yet, what it waits for: its pool's decision, or the pool itself.</summary>
    async Task AwaitPool(InferencePipeline pipeline, InferencePipelineStatus status, string pool, CancellationToken cancellation)
    {
        var now = time.GetUtcNow();
        bool exists;
        try
        {
            await client.CustomObjects.GetClusterCustomObjectAsync(InferencePipeline.Group, InferencePipeline.Version, InferencePool.Plural, pool, cancellation);
            exists = true;
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
        {
            exists = false;
        }
        string at = $"spec.hardwareClasses[{pipeline.Spec.HardwareClasses.FindIndex(c => c.Pool == pool)}].pool";
        bool news = !exists && !Conditions.Is(status.Conditions, PipelineCondition.Adapting, "PoolNotFound");
        Conditions.Set(status.Conditions, PipelineCondition.Adapting, true, exists ? "AwaitingPoolDecision" : "PoolNotFound",
            exists ? $"waiting for InferencePool '{pool}' to plan this pipeline with the others that share it"
                   : $"InferencePool '{pool}' ({at}) does not exist; create it, or remove the field to plan this pipeline alone. The running configuration stays",
            pipeline.Metadata.Generation, now);
        if (news) await pipelines.Event(pipeline, "Warning", "PoolNotFound", $"InferencePool '{pool}' named by {at} does not exist", cancellation);
    }

    /// <summary>
    /// Forecast, plan alone, and record the decision in status. Returns the decision to run, whether metrics failed,
    /// and, when the stabilization window holds the plan above the forecast, why. A surge decision
    /// (<paramref name="surgeRps"/>) plans for <see cref="PlanningLoad.SurgeHeadroom"/> times that rate, only
    /// adds capacity, and leaves the schedule of decisions as it was.
    /// </summary>
    async Task<(IReadOnlyList<StagePlan>? Decision, bool MetricsFailed, string? Stabilizing)> Decide(InferencePipeline pipeline, InferencePipelineStatus status,
        IReadOnlyList<StagePlan>? previous, List<RunningAllocation> current, DateTimeOffset now, double? surgeRps, CancellationToken cancellation)
    {
        var (load, metricsFailed, keepRunning) = await decisions.EstimateLoad(pipeline, status, previous, now, cancellation);
        if (keepRunning) return (previous, true, null);
        var planned = load.Planned with { SurgeRps = surgeRps };
        var decided = AdaptationDecider.Decide(pipeline, planned.Rps, current, SurgeRule.ExcessShare(pipeline, previous, planned));
        if (surgeRps is not null && !decided.ScalesUp) return (previous, metricsFailed, null);
        string? stabilizing = await decisions.Record(pipeline, status, previous, load, planned, decided, scheduled: surgeRps is null, now, cancellation);
        return (decided.Plan, metricsFailed, stabilizing);
    }

    /// <summary>
    /// Makes the cluster run the decision, make-before-break: new variants first; traffic moves to a
    /// variant only once all its pods are ready, and stays on the old ones of its stage until then (which keep their
    /// replicas, <see cref="RouteMerge.HeldReplicas"/>); a variant
    /// whose traffic is gone is removed after <see cref="ReconcilerSettings.RetireAfter"/>. Returns
    /// whether everything planned is ready and routed, whether replaced variants are still retiring, and why
    /// planned variants that are not ready fail to start, where their pods say.
    /// </summary>
    async Task<(bool Settled, bool Retiring, List<string> Failing)> Apply(InferencePipeline pipeline, IReadOnlyList<StagePlan> decision, List<V1Deployment> running, DateTimeOffset now, CancellationToken cancellation)
    {
        string ns = pipeline.Metadata.Namespace!;
        var desired = DesiredState.Allocations(pipeline, new PipelinePlan(pipeline.Metadata.Name, null, decision), settings.Workload);
        var ready = new HashSet<string>();
        var failing = new List<string>();
        var held = RouteMerge.HeldReplicas(desired.Select(a => (a.Stage, a.Name, a.Allocation.Replicas)), running, await Unplaceable(desired, running, ns, cancellation));
        foreach (var allocation in desired)
        {
            if (held.TryGetValue(allocation.Name, out int keep)) allocation.Deployment.Spec.Replicas = keep;
            var applied = await client.AppsV1.PatchNamespacedDeploymentAsync(new V1Patch(allocation.Deployment, V1Patch.PatchType.ApplyPatch),
                allocation.Name, ns, fieldManager: Names.FieldManager, force: true, cancellationToken: cancellation);
            await client.CoreV1.PatchNamespacedServiceAsync(new V1Patch(allocation.Service, V1Patch.PatchType.ApplyPatch),
                allocation.Name, ns, fieldManager: Names.FieldManager, force: true, cancellationToken: cancellation);
            if (applied.Status?.ReadyReplicas >= 1 && applied.Metadata.Annotations?.ContainsKey(Names.RetiringSince) == true)
                await Unretire(allocation.Name, ns, cancellation);
            if (applied.Status?.ReadyReplicas >= applied.Spec.Replicas) ready.Add(allocation.Name);
            // Not yet all at this spec: new pods may be failing while the old ones serve (a rollout), or none serve.
            bool rolledOut = applied.Status?.ObservedGeneration >= applied.Metadata.Generation && applied.Status?.UpdatedReplicas >= applied.Spec.Replicas
                && applied.Status?.ReadyReplicas >= applied.Spec.Replicas;
            if (!rolledOut && await WhyNotStarting(applied, ns, cancellation) is { } notStarting)
                failing.Add($"{allocation.Stage}/{allocation.Allocation.Variant} on {allocation.Allocation.Hardware}: {notStarting.Why}");
        }
        var (routerDeployment, routerService) = DesiredState.Router(pipeline, settings.Workload);
        await client.AppsV1.PatchNamespacedDeploymentAsync(new V1Patch(routerDeployment, V1Patch.PatchType.ApplyPatch),
            routerDeployment.Metadata.Name, ns, fieldManager: Names.FieldManager, force: true, cancellationToken: cancellation);
        await client.CoreV1.PatchNamespacedServiceAsync(new V1Patch(routerService, V1Patch.PatchType.ApplyPatch),
            routerService.Metadata.Name, ns, fieldManager: Names.FieldManager, force: true, cancellationToken: cancellation);

        var (routed, keptOld, settled) = RouteMerge.Merge(decision, [.. desired.Select(d => new PlannedRoute(d.Stage, d.Name, d.Route))], ready,
            await CurrentRoutes(pipeline, cancellation));
        var routes = DesiredState.Routes(pipeline, routed);
        var configMap = DesiredState.RoutesConfigMap(pipeline, routes);
        await client.CoreV1.PatchNamespacedConfigMapAsync(new V1Patch(configMap, V1Patch.PatchType.ApplyPatch),
            configMap.Metadata.Name, ns, fieldManager: Names.FieldManager, force: true, cancellationToken: cancellation);

        bool retiring = false;
        foreach (var old in running.Where(d => desired.All(a => a.Name != d.Metadata.Name) && !keptOld.Contains(d.Metadata.Name)))
            retiring |= !await Retire(old, ns, now, cancellation);
        return (settled && held.Count == 0, retiring, failing);
    }

    /// <summary>Container states in which a pod will not become ready without a change of spec or cluster.</summary>
    static readonly HashSet<string> StuckWaiting =
        ["CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError"];

    /// <summary>
    /// The stages where a variant runs more replicas than planned while a planned variant's pods cannot be placed by the
    /// scheduler: there no shrink is held (<see cref="RouteMerge.HeldReplicas"/>), since the room the surplus holds may be what they need.
    /// </summary>
    async Task<HashSet<string>> Unplaceable(IReadOnlyList<AllocationObjects> desired, List<V1Deployment> running, string ns, CancellationToken cancellation)
    {
        V1Deployment? Running(AllocationObjects a) => running.FirstOrDefault(d => d.Metadata.Name == a.Name);
        var stages = new HashSet<string>();
        foreach (var allocation in desired)
        {
            bool shrinking = desired.Any(a => a.Stage == allocation.Stage && Running(a)?.Spec?.Replicas > a.Allocation.Replicas);
            if (!shrinking || stages.Contains(allocation.Stage) || Running(allocation) is not { } deployment || deployment.Status?.ReadyReplicas >= allocation.Allocation.Replicas) continue;
            if (await WhyNotStarting(deployment, ns, cancellation) is { Unschedulable: true }) stages.Add(allocation.Stage);
        }
        return stages;
    }

    /// <summary>Why a Deployment's pods do not start, and whether it is that the scheduler cannot place one.</summary>
    sealed record NotStarting(string Why, bool Unschedulable);

    /// <summary>
    /// What keeps a Deployment's pods from starting, as they report it: a container (or the init container that
    /// fetches the model) waiting in a state it will not leave by itself, with its last exit (the server's one line,
    /// the container's termination message), or a pod the scheduler cannot place. Null when none says (still starting, or nothing wrong yet).
    /// </summary>
    async Task<NotStarting?> WhyNotStarting(V1Deployment deployment, string ns, CancellationToken cancellation)
    {
        string selector = string.Join(",", deployment.Spec.Selector.MatchLabels.Select(l => $"{l.Key}={l.Value}"));
        V1PodList pods;
        try
        {
            pods = await client.CoreV1.ListNamespacedPodAsync(ns, labelSelector: selector, cancellationToken: cancellation);
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == System.Net.HttpStatusCode.Forbidden)
        {
            // An operator upgraded without its chart's RBAC: say nothing rather than stop reconciling.
            log.LogWarning("Cannot list pods in {Namespace} to say why {Deployment} does not start: the chart's ClusterRole grants pods get and list", ns, deployment.Metadata.Name);
            return null;
        }
        foreach (var pod in pods.Items)
        {
            var initContainers = pod.Status?.InitContainerStatuses ?? [];
            foreach (var container in initContainers.Concat(pod.Status?.ContainerStatuses ?? []))
            {
                if (container.State?.Waiting is not { } waiting || !StuckWaiting.Contains(waiting.Reason ?? "")) continue;
                string detail = container.LastState?.Terminated is { } exit
                    ? $", last exit {exit.ExitCode}: {FirstLine(exit.Message ?? exit.Reason)}"
                    : waiting.Message is { Length: > 0 } message ? $": {FirstLine(message)}" : "";
                return new($"{(initContainers.Contains(container) ? $"init container {container.Name} " : "")}{waiting.Reason}{detail}", Unschedulable: false);
            }
            if (pod.Status?.Conditions?.FirstOrDefault(c => c.Type == "PodScheduled" && c.Status == "False" && c.Reason == "Unschedulable") is { } unschedulable)
                return new($"Unschedulable: {FirstLine(unschedulable.Message)}", Unschedulable: true);
        }
        return null;
    }

    static string FirstLine(string? text) => text?.Trim().Split('\n')[0].Trim() ?? "";

    /// <summary>Marks a variant whose traffic is gone, and deletes it once it has been retiring long enough. True when deleted.</summary>
    async Task<bool> Retire(V1Deployment deployment, string ns, DateTimeOffset now, CancellationToken cancellation)
    {
        string name = deployment.Metadata.Name;
        if (deployment.Metadata.Annotations?.TryGetValue(Names.RetiringSince, out var since) != true)
        {
            string patch = JsonSerializer.Serialize(new { metadata = new { annotations = new Dictionary<string, string> { [Names.RetiringSince] = now.ToString("O", CultureInfo.InvariantCulture) } } });
            await client.AppsV1.PatchNamespacedDeploymentAsync(new V1Patch(patch, V1Patch.PatchType.MergePatch), name, ns, cancellationToken: cancellation);
            return false;
        }
        if (now - DateTimeOffset.Parse(since!, CultureInfo.InvariantCulture) < settings.RetireAfter) return false;
        await IgnoreNotFound(() => client.AppsV1.DeleteNamespacedDeploymentAsync(name, ns, cancellationToken: cancellation));
        await IgnoreNotFound(() => client.CoreV1.DeleteNamespacedServiceAsync(name, ns, cancellationToken: cancellation));
        log.LogInformation("Removed {Deployment}: its traffic moved away {Since}", name, since);
        return true;
    }

    Task Unretire(string name, string ns, CancellationToken cancellation)
    {
        string patch = JsonSerializer.Serialize(new { metadata = new { annotations = new Dictionary<string, string?> { [Names.RetiringSince] = null } } });
        return client.AppsV1.PatchNamespacedDeploymentAsync(new V1Patch(patch, V1Patch.PatchType.MergePatch), name, ns, cancellationToken: cancellation);
    }

    static async Task IgnoreNotFound(Func<Task> call)
    {
        try
        {
            await call();
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
        {
            // already gone
        }
    }

    async Task<RouterConfig?> CurrentRoutes(InferencePipeline pipeline, CancellationToken cancellation)
    {
        try
        {
            var map = await client.CoreV1.ReadNamespacedConfigMapAsync(Names.RoutesConfigMap(pipeline.Metadata.Name), pipeline.Metadata.Namespace, cancellationToken: cancellation);
            return map.Data?.TryGetValue("routes.json", out var text) == true ? RouterConfig.Parse(text) : null;
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }
        catch (RouterConfigException)
        {
            return null; // edited by hand into something unusable: rewrite it from the decision
        }
    }
}
