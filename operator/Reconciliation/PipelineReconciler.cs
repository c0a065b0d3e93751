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
/// </summary>
public sealed class PipelineReconciler(k8s.Kubernetes client, LoadEstimator loads, ReconcilerSettings settings, OperatorMetrics metrics, ILogger<PipelineReconciler> log, TimeProvider time)
{
    static readonly TimeSpan ProgressCheck = TimeSpan.FromSeconds(2);
    static readonly JsonSerializerOptions Json = new() { DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull };

    public async Task<TimeSpan?> Reconcile(string ns, string name, CancellationToken cancellation)
    {
        var pipeline = await Read(ns, name, cancellation);
        // Deleted, or being deleted (a finalizer or foreground deletion holds it): its objects go with it
        // through their ownerReferences, and nothing may be written for it meanwhile.
        if (pipeline is null || pipeline.Metadata.DeletionTimestamp is not null) return null;
        pipeline.Metadata.Namespace ??= ns;
        var now = time.GetUtcNow();
        var status = pipeline.Status ?? new InferencePipelineStatus();
        string statusRead = JsonSerializer.Serialize(status, Json);
        long? generation = pipeline.Metadata.Generation;
        using var scope = log.BeginScope(new Dictionary<string, object> { ["pipeline"] = $"{ns}/{name}" });

        try
        {
            InferencePipelineValidator.Validate(pipeline);
        }
        catch (PlanningInputException e)
        {
            // Nothing that runs is touched: a typo in the spec must not take the pipeline down.
            bool fresh = !Conditions.Is(status, PipelineCondition.Ready, "InvalidSpec") || status.ObservedGeneration != generation;
            Conditions.Set(status, PipelineCondition.Ready, false, "InvalidSpec", e.Message, generation, now);
            status.ObservedGeneration = generation;
            await WriteStatus(pipeline, status, statusRead, cancellation);
            if (fresh) await Event(pipeline, "Warning", "InvalidSpec", e.Message, cancellation);
            return null;
        }

        var running = await RunningDeployments(pipeline, cancellation);
        var decision = Recorded(status);
        bool due = decision is null || status.ObservedGeneration != generation || status.LastDecisionTime is not { } last
            || now - last >= TimeSpan.FromSeconds(pipeline.Spec.Adaptation.IntervalSeconds);
        double? surgeRps = due ? null : await SurgeRps(pipeline, status, decision!, now, cancellation);
        TimeSpan? retryMetrics = null;
        string? stabilizing = status.Conditions.FirstOrDefault(c => c.Type == PipelineCondition.Adapting && c.Reason == StabilizingReason)?.Message;
        if (due || surgeRps is not null)
        {
            var current = running.Where(d => d.Metadata.Annotations?.ContainsKey(Names.RetiringSince) != true).Select(Allocation).ToList();
            var (newDecision, metricsFailed, held) = await Decide(pipeline, status, decision, current, now, surgeRps, cancellation);
            (decision, stabilizing) = (newDecision, held);
            if (metricsFailed) retryMetrics = settings.MetricsRetry;
        }
        status.ObservedGeneration = generation;
        if (decision is null)
        {
            await WriteStatus(pipeline, status, statusRead, cancellation);
            return retryMetrics;
        }

        var (settled, retiring, failing) = await Apply(pipeline, decision, running, now, cancellation);
        if (failing.Count > 0)
        {
            string why = $"{string.Join("; ", failing)}; traffic stays where it was";
            bool news = !Conditions.Is(status, PipelineCondition.Ready, NotStartingReason) || status.Conditions.Single(c => c.Type == PipelineCondition.Ready).Message != why;
            Conditions.Set(status, PipelineCondition.Ready, false, NotStartingReason, why, generation, now);
            if (news) await Event(pipeline, "Warning", NotStartingReason, why, cancellation);
        }
        else
            Conditions.Set(status, PipelineCondition.Ready, settled, settled ? "Serving" : "Progressing",
                settled ? "every planned variant is ready and routed" : "waiting for new variants to become ready before moving traffic to them", generation, now);
        if (settled && !retiring && stabilizing is not null)
            Conditions.Set(status, PipelineCondition.Adapting, false, StabilizingReason, stabilizing, generation, now);
        else
            Conditions.Set(status, PipelineCondition.Adapting, !settled || retiring, settled ? retiring ? "Retiring" : "Stable" : "Reconfiguring",
                settled ? retiring ? "replaced variants keep running until their traffic has surely moved" : "the running configuration is the planned one"
                        : "moving to the planned configuration, make-before-break", generation, now);
        await WriteStatus(pipeline, status, statusRead, cancellation);

        var untilDecision = status.LastDecisionTime!.Value + TimeSpan.FromSeconds(pipeline.Spec.Adaptation.IntervalSeconds) - now;
        if (untilDecision > TimeSpan.FromSeconds(SurgeRule.CheckSeconds)) untilDecision = TimeSpan.FromSeconds(SurgeRule.CheckSeconds); // the next surge check
        var next = !settled ? ProgressCheck : retiring && settings.RetireAfter < untilDecision ? settings.RetireAfter : untilDecision;
        if (retryMetrics is { } retry && retry < next) next = retry;
        return next < TimeSpan.Zero ? TimeSpan.Zero : next;
    }

    async Task<InferencePipeline?> Read(string ns, string name, CancellationToken cancellation)
    {
        try
        {
            var raw = await client.CustomObjects.GetNamespacedCustomObjectAsync(InferencePipeline.Group, InferencePipeline.Version, ns, InferencePipeline.Plural, name, cancellation);
            return ((JsonElement)raw).Deserialize<InferencePipeline>();
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }
    }

    /// <summary>The decision recorded in status: the configuration the cluster should run.</summary>
    static IReadOnlyList<StagePlan>? Recorded(InferencePipelineStatus status) =>
        status.Stages.Count == 0 ? null
            : [.. status.Stages.Select(s => new StagePlan(s.Name, [.. s.Allocations.Select(a => new Allocation(a.Variant, a.HardwareClass, a.Replicas, a.Batch, a.ShareRps))]))];

    /// <summary>
    /// Between decisions: the surge's rate when the latest one calls for a decision now (<see cref="SurgeRule"/>), else null. A
    /// check that cannot read Prometheus decides nothing; the next scheduled decision reports why.
    /// </summary>
    async Task<double?> SurgeRps(InferencePipeline pipeline, InferencePipelineStatus status, IReadOnlyList<StagePlan> running, DateTimeOffset now, CancellationToken cancellation)
    {
        if (!SurgeRule.MayDecide(status.LastScaleUpTime, now)) return null;
        try
        {
            var (latest, previous, missed) = await loads.Latest(pipeline, now, cancellation);
            return SurgeRule.Triggers(pipeline, running, latest, missed) ? SurgeRule.SurgeRps(previous, latest) : null;
        }
        catch (MetricsUnavailableException)
        {
            return null;
        }
    }

    /// <summary>
    /// Forecast, plan, and record the decision in status. Returns the decision to run, whether metrics failed,
    /// and, when the stabilization window holds the plan above the forecast, why. A surge decision
    /// (<paramref name="surgeRps"/>) plans for <see cref="PlanningLoad.SurgeHeadroom"/> times that rate, only
    /// adds capacity, and leaves the schedule of decisions as it was.
    /// </summary>
    const string StabilizingReason = "ScaleDownStabilization";

    /// <summary>The Ready condition's reason while a planned variant's pods fail to start (crash, image, scheduling).</summary>
    const string NotStartingReason = "VariantNotStarting";

    async Task<(IReadOnlyList<StagePlan>? Decision, bool MetricsFailed, string? Stabilizing)> Decide(InferencePipeline pipeline, InferencePipelineStatus status,
        IReadOnlyList<StagePlan>? previous, List<RunningAllocation> current, DateTimeOffset now, double? surgeRps, CancellationToken cancellation)
    {
        long? generation = pipeline.Metadata.Generation;
        LoadEstimate load;
        bool metricsFailed = false;
        try
        {
            load = await loads.Estimate(pipeline, now, cancellation);
            Conditions.Set(status, PipelineCondition.Degraded, false, "MetricsAvailable", $"forecasting with {load.Forecaster} from Prometheus", generation, now);
        }
        catch (MetricsUnavailableException e)
        {
            metricsFailed = true;
            metrics.MetricsFailures.WithLabels(e.Failure.ToString()).Inc();
            string reason = e.Failure == MetricsFailure.NoData ? "NoMetrics" : "MetricsUnavailable";
            bool changed = !Conditions.Is(status, PipelineCondition.Degraded, reason);
            Conditions.Set(status, PipelineCondition.Degraded, true, reason, $"{e.Message}; keeping the running configuration", generation, now);
            if (changed) await Event(pipeline, "Warning", reason, e.Message, cancellation);
            // Without data nothing is scaled, least of all down; a new pipeline starts small so that it serves.
            bool specChanged = status.ObservedGeneration != generation && previous is not null;
            if (previous is not null && !specChanged) return (previous, true, null);
            load = new LoadEstimate(new PlanningLoad(status.PredictedLoadRps ?? AdaptationDecider.MinimumLoadRps, 0), status.ObservedLoadRps ?? 0, "none");
        }

        var planned = load.Planned with { SurgeRps = surgeRps };
        var decided = AdaptationDecider.Decide(pipeline, planned.Rps, current);
        if (surgeRps is not null && !decided.ScalesUp) return (previous, metricsFailed, null);
        var (problem, result, plan) = (decided.Problem, decided.Result, decided.Plan);
        metrics.Decisions.WithLabels(result.Status.ToString().ToLowerInvariant()).Inc();
        metrics.SolveSeconds.Observe(result.SolveMs / 1000);
        metrics.ForecastRps.WithLabels(pipeline.Metadata.Name).Set(planned.ForecastRps);
        metrics.ObservedRps.WithLabels(pipeline.Metadata.Name).Set(load.ObservedRps);
        if (decided.ScalesUp) (status.LastScaleUpTime, status.LastScaleUpLoadRps) = (now, Math.Round(planned.HeldAfterScaleUpRps, 3));

        bool feasible = result.Status != PlanStatus.Infeasible;
        Conditions.Set(status, PipelineCondition.SloFeasible, feasible, feasible ? "PlanFound" : "Infeasible",
            feasible ? $"a configuration meets the {pipeline.Spec.SloMs} ms SLO at {planned.Rps:F1} rps ({result.Status.ToString().ToLowerInvariant()})"
                     : $"no configuration meets the {pipeline.Spec.SloMs} ms SLO at {planned.Rps:F1} rps within the replica and budget limits; running the most capacity they allow",
            generation, now);
        var evaluated = PlanEvaluator.Evaluate(problem, plan);
        status.Stages = [.. plan.Select((s, i) => new StageStatus
        {
            Name = s.Name,
            LatencyMs = Math.Round(evaluated.StageLatencyMs[i], 3),
            Allocations = [.. s.Allocations.Select(a => new AllocationStatus { Variant = a.Variant, HardwareClass = a.Hardware, Replicas = a.Replicas, Batch = a.Batch, ShareRps = Math.Round(a.Share, 3) })],
        })];
        status.Summary = Summary(plan);
        status.PredictedLoadRps = Math.Round(planned.Rps, 3);
        status.ObservedLoadRps = Math.Round(load.ObservedRps, 3);
        status.ExpectedAccuracy = Math.Round(evaluated.Accuracy, 5);
        status.ExpectedCost = Math.Round(evaluated.Cost, 3);
        status.ExpectedLatencyMs = Math.Round(evaluated.LatencyMs, 3);
        status.PlanStatus = result.Status.ToString().ToLowerInvariant();
        status.SolveTimeMs = Math.Round(result.SolveMs, 3);
        if (surgeRps is null) status.LastDecisionTime = now;
        metrics.ExpectedAccuracy.WithLabels(pipeline.Metadata.Name).Set(evaluated.Accuracy);
        metrics.ExpectedCost.WithLabels(pipeline.Metadata.Name).Set(evaluated.Cost);
        foreach (var s in previous ?? [])
            foreach (var a in s.Allocations) // gone from the plan unless set again below
                metrics.PlannedReplicas.WithLabels(pipeline.Metadata.Name, s.Name, a.Variant, a.Hardware).Set(0);
        foreach (var s in plan)
            foreach (var a in s.Allocations)
                metrics.PlannedReplicas.WithLabels(pipeline.Metadata.Name, s.Name, a.Variant, a.Hardware).Set(a.Replicas);

        string before = previous is null ? "nothing" : Summary(previous);
        if (before != status.Summary)
        {
            string message = $"{before} → {status.Summary}: {planned.Describe(load.Forecaster)}, observed {load.ObservedRps:F1} rps; "
                + $"expected accuracy {evaluated.Accuracy:F4}, cost {evaluated.Cost:F2}, latency {evaluated.LatencyMs:F1} ms of {pipeline.Spec.SloMs} ms ({status.PlanStatus})";
            log.LogInformation("Reconfiguring: {Message}", message);
            await Event(pipeline, feasible ? "Normal" : "Warning", "Reconfigured", message, cancellation);
        }
        string? stabilizing = planned.Stabilizing
            ? $"the forecast fell to {planned.ForecastRps:F1} rps; plans hold {planned.RecentPeakRps:F1} rps, the highest load of the last {pipeline.Spec.Adaptation.ScaleDownStabilizationSeconds} s, until it leaves that window"
            : null;
        return (plan, metricsFailed, stabilizing);
    }

    static string Summary(IReadOnlyList<StagePlan> plan) =>
        string.Join(" ", plan.Select(s => $"{s.Name}={string.Join("+", s.Allocations.Where(a => a.Replicas > 0).Select(a => $"{a.Variant}x{a.Replicas}"))}"));

    /// <summary>
    /// Makes the cluster run the decision, make-before-break: new variants first; traffic moves to a
    /// variant only once it has ready pods, and stays on the old ones of its stage until then; a variant
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
        foreach (var allocation in desired)
        {
            var applied = await client.AppsV1.PatchNamespacedDeploymentAsync(new V1Patch(allocation.Deployment, V1Patch.PatchType.ApplyPatch),
                allocation.Name, ns, fieldManager: Names.FieldManager, force: true, cancellationToken: cancellation);
            await client.CoreV1.PatchNamespacedServiceAsync(new V1Patch(allocation.Service, V1Patch.PatchType.ApplyPatch),
                allocation.Name, ns, fieldManager: Names.FieldManager, force: true, cancellationToken: cancellation);
            if (applied.Status?.ReadyReplicas >= 1 && applied.Metadata.Annotations?.ContainsKey(Names.RetiringSince) == true)
                await Unretire(allocation.Name, ns, cancellation);
            if (applied.Status?.ReadyReplicas >= 1) ready.Add(allocation.Name);
            // Not yet all at this spec: new pods may be failing while the old ones serve (a rollout), or none serve.
            bool rolledOut = applied.Status?.ObservedGeneration >= applied.Metadata.Generation && applied.Status?.UpdatedReplicas >= applied.Spec.Replicas
                && applied.Status?.ReadyReplicas >= applied.Spec.Replicas;
            if (!rolledOut && await WhyNotStarting(applied, ns, cancellation) is { } why)
                failing.Add($"{allocation.Stage}/{allocation.Allocation.Variant} on {allocation.Allocation.Hardware}: {why}");
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
        return (settled, retiring, failing);
    }

    /// <summary>Container states in which a pod will not become ready without a change of spec or cluster.</summary>
    static readonly HashSet<string> StuckWaiting =
        ["CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError"];

    /// <summary>
    /// What keeps a Deployment's pods from starting, as they report it: a container (or the init container that
    /// fetches the model) waiting in a state it will not leave by itself, with its last exit (the server's one line,
    /// the container's termination message), or a pod the scheduler cannot place. Null when none says (still starting, or nothing wrong yet).
    /// </summary>
    async Task<string?> WhyNotStarting(V1Deployment deployment, string ns, CancellationToken cancellation)
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
                return $"{(initContainers.Contains(container) ? $"init container {container.Name} " : "")}{waiting.Reason}{detail}";
            }
            if (pod.Status?.Conditions?.FirstOrDefault(c => c.Type == "PodScheduled" && c.Status == "False" && c.Reason == "Unschedulable") is { } unschedulable)
                return $"Unschedulable: {FirstLine(unschedulable.Message)}";
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

    /// <summary>The model servers this pipeline controls; those of an earlier pipeline of the same name are the garbage collector's.</summary>
    async Task<List<V1Deployment>> RunningDeployments(InferencePipeline pipeline, CancellationToken cancellation) =>
        [.. (await client.AppsV1.ListNamespacedDeploymentAsync(pipeline.Metadata.Namespace,
                labelSelector: $"{Names.Pipeline}={Names.LabelValue(pipeline.Metadata.Name)},{Names.Component}={Names.ModelServer}", cancellationToken: cancellation))
            .Items.Where(d => d.Metadata.OwnerReferences?.Any(o => o.Uid == pipeline.Metadata.Uid && o.Controller == true) == true)];

    static RunningAllocation Allocation(V1Deployment d) => new(
        d.Metadata.Labels[Names.Stage], d.Metadata.Labels[Names.Variant], d.Metadata.Labels[Names.HardwareClass], d.Spec.Replicas ?? 0,
        d.Metadata.Annotations is { } annotations && annotations.TryGetValue(Names.Batch, out var text)
            && int.TryParse(text, CultureInfo.InvariantCulture, out int batch) ? batch : 1);

    /// <summary>Patches the status unless it is still <paramref name="statusRead"/>: a check that changed nothing writes nothing (and wakes no watcher).</summary>
    Task WriteStatus(InferencePipeline pipeline, InferencePipelineStatus status, string statusRead, CancellationToken cancellation)
    {
        if (JsonSerializer.Serialize(status, Json) == statusRead) return Task.CompletedTask;
        string patch = JsonSerializer.Serialize(new { status }, Json);
        return client.CustomObjects.PatchNamespacedCustomObjectStatusAsync(new V1Patch(patch, V1Patch.PatchType.MergePatch),
            InferencePipeline.Group, InferencePipeline.Version, pipeline.Metadata.Namespace, InferencePipeline.Plural, pipeline.Metadata.Name, cancellationToken: cancellation);
    }

    async Task Event(InferencePipeline pipeline, string type, string reason, string message, CancellationToken cancellation)
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
}
