using System.Net;
using System.Text.Json;
using Adaptive.Core.Adaptation;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Planning;
using Adaptive.Operator.Adaptation;
using Adaptive.Operator.Metrics;
using k8s;
using k8s.Autorest;
using k8s.Models;

namespace Adaptive.Operator.Reconciliation;

/// <summary>
/// One level-triggered pass over one InferencePool: its capacity (<c>spec.replicas</c>, or what the matching Nodes hold,
/// less what members' pods could not get), its members (the pipelines whose hardware class names it), and, when a
/// decision is due or a member's load surges, one joint decision (<see cref="JointDecider"/>) recorded in each member's
/// status, for the member's own reconciler to apply. A decision is due when a member's interval has passed (the
/// shortest interval of the members sets the pace), a member's spec changed, a member joined or left, or the
/// capacity changed. Returns when to look again.
/// </summary>
public sealed class PoolReconciler(k8s.Kubernetes client, PipelineClient pipelines, DecisionRecorder decisions, string? watchNamespace,
    OperatorMetrics metrics, ILogger<PoolReconciler> log, TimeProvider time)
{
    /// <summary>How long capacity that members' pods could not get stays out of planning before it is tried again.</summary>
    public static readonly TimeSpan UnschedulableHold = TimeSpan.FromMinutes(5);

    public const string Planned = "Planned";
    public const string Schedulable = "Schedulable";

    /// <summary>Each pool's menus of its last round, so that a round re-plans only the members that changed; a cache, not state.</summary>
    readonly System.Collections.Concurrent.ConcurrentDictionary<string, JointMenus> menus = new();

    /// <summary>A member pipeline as read in this pass, with its status as read (to write only what changed) and its model servers.</summary>
    sealed record Member(InferencePipeline Pipeline, InferencePipelineStatus Status, string StatusRead, List<V1Deployment> Running, string PoolClass)
    {
        public string Key => $"{Pipeline.Metadata.Namespace}/{Pipeline.Metadata.Name}";
    }

    public async Task<TimeSpan?> Reconcile(string name, CancellationToken cancellation)
    {
        var pool = await Read(name, cancellation);
        if (pool is null || pool.Metadata.DeletionTimestamp is not null) return null; // its members say that it is gone
        var now = time.GetUtcNow();
        var status = pool.Status ?? new InferencePoolStatus();
        string statusRead = PipelineClient.Snapshot(status);
        long? generation = pool.Metadata.Generation;
        using var scope = log.BeginScope(new Dictionary<string, object> { ["pool"] = name });

        try
        {
            PoolCapacity.Validate(pool, Quantity);
        }
        catch (PlanningInputException e)
        {
            Conditions.Set(status.Conditions, Planned, false, "InvalidSpec", e.Message, generation, now);
            status.ObservedGeneration = generation;
            await WriteStatus(pool, status, statusRead, cancellation);
            return null;
        }
        int capacity = pool.Spec.Replicas ?? PoolCapacity.Of(pool, await Nodes(pool, cancellation), Quantity);
        var members = await Members(name, cancellation);
        int? plannedWith = status.CapacityReplicas - (status.UnschedulableReplicas ?? 0); // what the last decision had
        int plannable = await CountUnschedulable(pool, status, capacity, members, now, cancellation);
        status.CapacityReplicas = capacity;
        if (members.Count == 0)
        {
            (status.Members, status.AllocatedReplicas) = ([], 0);
            Conditions.Set(status.Conditions, Planned, false, "NoMembers", "no pipeline names this pool in spec.hardwareClasses[].pool", generation, now);
            status.ObservedGeneration = generation;
            Export(name, status);
            await WriteStatus(pool, status, statusRead, cancellation);
            return null;
        }

        // A member is due its own decision (a new forecast) when it has none for its spec and pool, or its interval has passed.
        var fresh = members.Select(m => PipelineClient.Recorded(m.Status) is null || m.Status.ObservedGeneration != m.Pipeline.Metadata.Generation
            || m.Status.Pool?.Name != name || m.Status.LastDecisionTime is not { } last || now - last >= TimeSpan.FromSeconds(m.Pipeline.Spec.Adaptation.IntervalSeconds)).ToArray();
        bool due = status.ObservedGeneration != generation || plannedWith != plannable || fresh.Any(f => f)
            || !status.Members.Select(m => $"{m.Namespace}/{m.Name}").Order(StringComparer.Ordinal).SequenceEqual(members.Select(m => m.Key));
        var checks = new SurgeCheck?[members.Count];
        if (!due)
            for (int i = 0; i < members.Count; i++)
                checks[i] = await decisions.CheckSurge(members[i].Pipeline, members[i].Status, PipelineClient.Recorded(members[i].Status)!, now, cancellation);
        var surges = checks.Select(c => c?.Rps).ToArray();
        if (due || surges.Any(s => s is not null))
            await Decide(pool, status, members, plannable, fresh, surges, due, now, cancellation);
        status.ObservedGeneration = generation;
        Export(name, status);
        await WriteStatus(pool, status, statusRead, cancellation);

        var untilDecision = members.Min(m => m.Status.LastDecisionTime!.Value + TimeSpan.FromSeconds(m.Pipeline.Spec.Adaptation.IntervalSeconds) - now);
        var untilCheck = TimeSpan.MaxValue; // the next surge check, just after a member's next scrape
        foreach (var (member, check) in members.Zip(checks))
        {
            var until = await decisions.UntilNextCheck(member.Pipeline, member.Status, metricsFailed: false, check?.Scrapes, now, cancellation);
            if (until < untilCheck) untilCheck = until;
        }
        var next = untilDecision < untilCheck ? untilDecision : untilCheck;
        return next < TimeSpan.Zero ? TimeSpan.Zero : next;
    }

    /// <summary>
    /// Plans the members together within <paramref name="plannable"/> replicas of the pool and records each one's decision in its
    /// status. A member due its own decision (<paramref name="fresh"/>) plans for a new forecast, one that surges
    /// (<paramref name="surges"/>) for its surge, the others for the load of their last decision: their menus are then the
    /// last round's (<see cref="JointMenus"/>), and a round re-plans only what changed. A decision that only surges
    /// brought (<paramref name="due"/> false) is kept only if it adds capacity to a surging member.
    /// </summary>
    async Task Decide(InferencePool pool, InferencePoolStatus status, List<Member> members, int plannable, bool[] fresh, double?[] surges, bool due,
        DateTimeOffset now, CancellationToken cancellation)
    {
        string name = pool.Metadata.Name;
        var loads = new List<(LoadEstimate Load, PlanningLoad Planned)>();
        for (int i = 0; i < members.Count; i++)
        {
            // Without metrics a member plans for its last decision's load: it keeps its share rather than give it up.
            var load = fresh[i] || surges[i] is not null
                ? (await decisions.EstimateLoad(members[i].Pipeline, members[i].Status, PipelineClient.Recorded(members[i].Status), now, cancellation)).Load
                : DecisionRecorder.LastLoad(members[i].Status);
            loads.Add((load, load.Planned with { SurgeRps = surges[i] }));
        }
        var limit = TimeSpan.FromSeconds(members.Max(m => m.Pipeline.Spec.Adaptation.PlannerTimeLimitSeconds));
        var joint = JointDecider.Decide(new Dictionary<string, int> { [name] = plannable },
            [.. members.Select((m, i) => new PoolMember(m.Pipeline, loads[i].Planned.Rps, PipelineClient.Current(m.Running),
                SurgeRule.ExcessShare(m.Pipeline, PipelineClient.Recorded(m.Status), loads[i].Planned)))], limit, menus.GetOrAdd(name, _ => new JointMenus()));
        if (!due && !joint.Members.Where((_, i) => surges[i] is not null).Any(d => d.Decision.ScalesUp)) return;

        // Those that give up replicas first: their reconcilers start handing them back before the others' start taking them.
        var order = Enumerable.Range(0, members.Count).OrderBy(i => joint.Members[i].PoolReplicas - (members[i].Status.Pool?.Replicas ?? 0));
        foreach (int i in order)
        {
            var (member, decided) = (members[i], joint.Members[i]);
            var memberStatus = member.Status;
            long? generation = member.Pipeline.Metadata.Generation;
            string? stabilizing = await decisions.Record(member.Pipeline, memberStatus, PipelineClient.Recorded(memberStatus), loads[i].Load, loads[i].Planned,
                decided.Decision, scheduled: fresh[i], now, cancellation);
            if (stabilizing is not null)
                Conditions.Set(memberStatus.Conditions, PipelineCondition.Adapting, false, DecisionRecorder.StabilizingReason, stabilizing, generation, now);
            else if (Conditions.Is(memberStatus.Conditions, PipelineCondition.Adapting, DecisionRecorder.StabilizingReason))
                Conditions.Set(memberStatus.Conditions, PipelineCondition.Adapting, false, "Stable", "the running configuration is the planned one", generation, now);
            memberStatus.Pool = new PoolShareStatus { Name = name, Replicas = decided.PoolReplicas, WantedReplicas = decided.WantedReplicas };

            var others = string.Join(", ", members.Where(m => m != member).Select(m => $"{m.Key} (priority {m.Pipeline.Spec.Objective.Priority:G4})"));
            bool wasConstrained = memberStatus.Conditions.Any(c => c.Type == PipelineCondition.PoolConstrained && c.Status == "True");
            if (decided.ConstrainedByOthers)
            {
                string message = $"got {decided.PoolReplicas} of the {decided.WantedReplicas} replicas of InferencePool '{name}' it would take alone; "
                    + $"{plannable} replicas are shared with {others}";
                Conditions.Set(memberStatus.Conditions, PipelineCondition.PoolConstrained, true, "SharedPool", message, generation, now);
                if (!wasConstrained) await pipelines.Event(member.Pipeline, "Warning", "PoolConstrained", message, cancellation);
            }
            else
                Conditions.Set(memberStatus.Conditions, PipelineCondition.PoolConstrained, false, "FullShare",
                    $"has the {decided.PoolReplicas} replicas of InferencePool '{name}' it would take alone", generation, now);
            await pipelines.WriteStatus(member.Pipeline, memberStatus, member.StatusRead, cancellation);
        }

        status.Members = [.. members.Select((m, i) => new PoolMemberStatus
        {
            Namespace = m.Pipeline.Metadata.Namespace!, Name = m.Pipeline.Metadata.Name, Priority = m.Pipeline.Spec.Objective.Priority,
            Replicas = joint.Members[i].PoolReplicas, WantedReplicas = joint.Members[i].WantedReplicas,
        })];
        status.AllocatedReplicas = joint.Members.Sum(m => m.PoolReplicas);
        if (due) status.LastDecisionTime = now;
        status.SolveTimeMs = Math.Round(joint.ElapsedMs, 3);
        Conditions.Set(status.Conditions, Planned, true, "JointPlan",
            $"{members.Count} pipelines planned together: {status.AllocatedReplicas} of {plannable} replicas given out ({joint.Solves} plans, {joint.ElapsedMs:F0} ms)",
            pool.Metadata.Generation, now);
        log.LogInformation("Planned {Members} pipelines of pool {Pool}: {Allocated} of {Plannable} replicas", members.Count, name, status.AllocatedReplicas, plannable);
    }

    /// <summary>The valid pipelines that name the pool, by namespace and name; one with an invalid spec is its own reconciler's to report.</summary>
    async Task<List<Member>> Members(string pool, CancellationToken cancellation)
    {
        var members = new List<Member>();
        var named = (await pipelines.List(watchNamespace, cancellation))
            .Where(p => p.Metadata.DeletionTimestamp is null && p.Spec.HardwareClasses.Any(c => c.Pool == pool))
            .OrderBy(p => $"{p.Metadata.Namespace}/{p.Metadata.Name}", StringComparer.Ordinal);
        foreach (var pipeline in named)
        {
            try
            {
                InferencePipelineValidator.Validate(pipeline);
            }
            catch (PlanningInputException)
            {
                continue;
            }
            var status = pipeline.Status ?? new InferencePipelineStatus();
            members.Add(new Member(pipeline, status, PipelineClient.Snapshot(status), await pipelines.RunningDeployments(pipeline, cancellation),
                pipeline.Spec.HardwareClasses.Single(c => c.Pool == pool).Name));
        }
        return members;
    }

    /// <summary>
    /// The replicas of the pool that can be planned with: its capacity less what members' pods could not get. A member pod that
    /// the scheduler cannot place (Unschedulable) shows that the pool holds fewer replicas than counted (another workload on its
    /// Nodes, a Node that counts but cannot take the pod); so the pool plans with what its members did get, for
    /// <see cref="UnschedulableHold"/>, then tries its whole capacity again. Sets the Schedulable condition and, when this
    /// starts, a Warning on the members.
    /// </summary>
    async Task<int> CountUnschedulable(InferencePool pool, InferencePoolStatus status, int capacity, List<Member> members, DateTimeOffset now, CancellationToken cancellation)
    {
        int onPool = 0, unschedulable = 0;
        foreach (var member in members)
        {
            // Retiring servers count: until they are gone they hold the replicas that a handover's new pods wait for.
            var onClass = member.Running.Where(d => d.Metadata.Labels[Names.HardwareClass] == member.PoolClass).ToList();
            onPool += onClass.Sum(d => d.Spec.Replicas ?? 0);
            var servers = onClass.Select(d => (d.Metadata.Labels[Names.Stage], d.Metadata.Labels[Names.Variant])).ToHashSet();
            var pods = await client.CoreV1.ListNamespacedPodAsync(member.Pipeline.Metadata.Namespace, labelSelector:
                $"{Names.Pipeline}={Names.LabelValue(member.Pipeline.Metadata.Name)},{Names.Component}={Names.ModelServer},{Names.HardwareClass}={member.PoolClass}",
                cancellationToken: cancellation);
            unschedulable += pods.Items.Count(p => servers.Contains((p.Metadata.Labels[Names.Stage], p.Metadata.Labels[Names.Variant]))
                && p.Status?.Conditions?.Any(c => c.Type == "PodScheduled" && c.Status == "False" && c.Reason == "Unschedulable") == true);
        }
        int held = status.UnschedulableUntil > now ? status.UnschedulableReplicas ?? 0 : 0;
        if (unschedulable > 0)
        {
            int missing = Math.Max(held, capacity - (onPool - unschedulable));
            if (held == 0)
            {
                string message = $"{unschedulable} pods on InferencePool '{pool.Metadata.Name}' cannot be scheduled: the pool is planned with {Math.Max(0, capacity - missing)} "
                    + $"of its {capacity} replicas until {(now + UnschedulableHold):u}";
                foreach (var member in members) await pipelines.Event(member.Pipeline, "Warning", "PoolUnschedulable", message, cancellation);
            }
            (held, status.UnschedulableUntil) = (missing, now + UnschedulableHold);
        }
        else if (held == 0) status.UnschedulableUntil = null;
        status.UnschedulableReplicas = held > 0 ? held : null;
        Conditions.Set(status.Conditions, Schedulable, held == 0, held == 0 ? "AllScheduled" : "PodsUnschedulable",
            held == 0 ? "every member pod on the pool was scheduled"
                      : $"members' pods could not get {held} of the {capacity} replicas (last seen {unschedulable} unschedulable); planning with {Math.Max(0, capacity - held)} until {status.UnschedulableUntil:u}",
            pool.Metadata.Generation, now);
        return Math.Max(0, capacity - held);
    }

    async Task<InferencePool?> Read(string name, CancellationToken cancellation)
    {
        try
        {
            var raw = await client.CustomObjects.GetClusterCustomObjectAsync(InferencePipeline.Group, InferencePipeline.Version, InferencePool.Plural, name, cancellation);
            return ((JsonElement)raw).Deserialize<InferencePool>();
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }
    }

    /// <summary>The Nodes the pool's selector matches, as its capacity counts them: a cordoned Node, or one not Ready, takes no pods.</summary>
    async Task<List<NodeCapacity>> Nodes(InferencePool pool, CancellationToken cancellation)
    {
        string? selector = pool.Spec.NodeSelector is { Count: > 0 } labels ? string.Join(",", labels.Select(l => $"{l.Key}={l.Value}")) : null;
        var nodes = await client.CoreV1.ListNodeAsync(labelSelector: selector, cancellationToken: cancellation);
        return [.. nodes.Items.Select(n => new NodeCapacity(n.Metadata.Name, n.Metadata.Labels?.ToDictionary() ?? [],
            n.Status?.Allocatable?.ToDictionary(a => a.Key, a => a.Value.ToDecimal()) ?? [],
            n.Spec?.Unschedulable != true && n.Status?.Conditions?.FirstOrDefault(c => c.Type == "Ready") is not { Status: not "True" }))];
    }

    static decimal Quantity(string text) => new ResourceQuantity(text).ToDecimal();

    void Export(string pool, InferencePoolStatus status)
    {
        metrics.PoolReplicas.WithLabels(pool, "capacity").Set(status.CapacityReplicas ?? 0);
        metrics.PoolReplicas.WithLabels(pool, "unschedulable").Set(status.UnschedulableReplicas ?? 0);
        metrics.PoolReplicas.WithLabels(pool, "allocated").Set(status.AllocatedReplicas ?? 0);
    }

    Task WriteStatus(InferencePool pool, InferencePoolStatus status, string statusRead, CancellationToken cancellation)
    {
        if (PipelineClient.Snapshot(status) == statusRead) return Task.CompletedTask;
        string patch = PipelineClient.StatusPatch(pool.Metadata.ResourceVersion, status);
        return client.CustomObjects.PatchClusterCustomObjectStatusAsync(new V1Patch(patch, V1Patch.PatchType.MergePatch),
            InferencePipeline.Group, InferencePipeline.Version, InferencePool.Plural, pool.Metadata.Name, cancellationToken: cancellation);
    }
}
