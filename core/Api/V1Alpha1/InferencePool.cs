using System.Text.Json.Serialization;

namespace Adaptive.Core.Api.V1Alpha1;

/// <summary>
/// The InferencePool custom resource (cluster-scoped): replicas of hardware shared by every pipeline whose
/// hardware class names the pool, planned together so that their sum never exceeds its capacity. The
/// capacity is <see cref="InferencePoolSpec.Replicas"/>, or derived from the Nodes that match
/// <see cref="InferencePoolSpec.NodeSelector"/>: how many replicas of <see cref="InferencePoolSpec.ReplicaResources"/>
/// their allocatable resources hold (<see cref="PoolCapacity"/>).
/// </summary>
public sealed class InferencePool
{
    public const string KindName = "InferencePool";
    public const string Plural = "inferencepools";

    [JsonPropertyName("apiVersion")] public string ApiVersion { get; set; } = InferencePipeline.ApiVersionString;
    [JsonPropertyName("kind")] public string Kind { get; set; } = KindName;
    [JsonPropertyName("metadata")] public ObjectMetadata Metadata { get; set; } = new();
    [JsonPropertyName("spec")] public InferencePoolSpec Spec { get; set; } = new();
    [JsonPropertyName("status")] public InferencePoolStatus? Status { get; set; }
}

public sealed class InferencePoolSpec
{
    /// <summary>A fixed capacity, in replicas; absent: derived from the matching Nodes.</summary>
    [JsonPropertyName("replicas")] public int? Replicas { get; set; }

    /// <summary>The Nodes whose allocatable resources make the capacity (all Nodes when empty).</summary>
    [JsonPropertyName("nodeSelector")] public Dictionary<string, string>? NodeSelector { get; set; }

    /// <summary>What one replica takes of a Node, e.g. <c>nvidia.com/gpu: 1</c> or <c>cpu: "2", memory: 4Gi</c>.</summary>
    [JsonPropertyName("replicaResources"), JsonConverter(typeof(QuantityMapConverter))] public Dictionary<string, string>? ReplicaResources { get; set; }
}

/// <summary>What the pool holds and who has it, written by the operator's pool reconciler.</summary>
public sealed class InferencePoolStatus
{
    [JsonPropertyName("observedGeneration")] public long? ObservedGeneration { get; set; }
    [JsonPropertyName("conditions")] public List<PipelineCondition> Conditions { get; set; } = [];

    /// <summary>Replicas the pool holds: <c>spec.replicas</c>, or what the matching Nodes hold.</summary>
    [JsonPropertyName("capacityReplicas")] public int? CapacityReplicas { get; set; }

    /// <summary>
    /// Replicas of the capacity that members' pods could not get (unschedulable): not planned with until
    /// <see cref="UnschedulableUntil"/>, then tried again.
    /// </summary>
    [JsonPropertyName("unschedulableReplicas")] public int? UnschedulableReplicas { get; set; }
    [JsonPropertyName("unschedulableUntil")] public DateTimeOffset? UnschedulableUntil { get; set; }

    /// <summary>Replicas the last joint decision gave out, over all members.</summary>
    [JsonPropertyName("allocatedReplicas")] public int? AllocatedReplicas { get; set; }

    [JsonPropertyName("members")] public List<PoolMemberStatus> Members { get; set; } = [];
    [JsonPropertyName("lastDecisionTime")] public DateTimeOffset? LastDecisionTime { get; set; }
    [JsonPropertyName("solveTimeMs")] public double? SolveTimeMs { get; set; }
}

/// <summary>One pipeline's share of the pool at the last joint decision.</summary>
public sealed class PoolMemberStatus
{
    [JsonPropertyName("namespace")] public string Namespace { get; set; } = "";
    [JsonPropertyName("name")] public string Name { get; set; } = "";
    [JsonPropertyName("priority")] public double Priority { get; set; }
    [JsonPropertyName("replicas")] public int Replicas { get; set; }

    /// <summary>What it would take planned alone with the whole pool.</summary>
    [JsonPropertyName("wantedReplicas")] public int WantedReplicas { get; set; }
}

/// <summary>A Node as the pool's capacity sees it: its labels, what it can allocate, and whether it takes pods.</summary>
public sealed record NodeCapacity(string Name, IReadOnlyDictionary<string, string> Labels, IReadOnlyDictionary<string, decimal> Allocatable, bool Schedulable);

/// <summary>The replicas a pool holds.</summary>
public static class PoolCapacity
{
    /// <summary>
    /// <see cref="InferencePoolSpec.Replicas"/> when given; else, over the schedulable Nodes that match the selector, how many
    /// replicas each holds (the fewest its allocatable resources allow, whole replicas), summed. A replica cannot span Nodes.
    /// </summary>
    public static int Of(InferencePool pool, IEnumerable<NodeCapacity> nodes, Func<string, decimal> quantity)
    {
        var spec = pool.Spec;
        if (spec.Replicas is { } replicas) return replicas;
        var perReplica = (spec.ReplicaResources ?? []).ToDictionary(r => r.Key, r => quantity(r.Value));
        return nodes
            .Where(n => n.Schedulable && (spec.NodeSelector ?? []).All(l => n.Labels.TryGetValue(l.Key, out var value) && value == l.Value))
            .Sum(n => perReplica.Count == 0 ? 0 : perReplica.Min(r => r.Value <= 0 ? int.MaxValue : (int)Math.Floor(n.Allocatable.GetValueOrDefault(r.Key) / r.Value)));
    }

    /// <summary>Checks a pool's spec; throws naming the field.</summary>
    public static void Validate(InferencePool pool, Func<string, decimal> quantity)
    {
        if (!InferencePipelineValidator.IsObjectName(pool.Metadata.Name))
            throw new Planning.PlanningInputException("metadata.name", $"'{pool.Metadata.Name}' must be lower-case letters, digits, '-' and '.', at most 253 characters");
        var spec = pool.Spec;
        if (spec.Replicas is { } replicas && replicas < 0) throw new Planning.PlanningInputException("spec.replicas", $"must be 0 or more, got {replicas}");
        if (spec.Replicas is null && (spec.ReplicaResources is null || spec.ReplicaResources.Count == 0))
            throw new Planning.PlanningInputException("spec.replicaResources", "is required without spec.replicas: it says what one replica takes of a Node");
        foreach (var (name, text) in spec.ReplicaResources ?? [])
        {
            decimal amount;
            try
            {
                amount = quantity(text);
            }
            catch (FormatException)
            {
                throw new Planning.PlanningInputException($"spec.replicaResources.{name}", $"'{text}' is not a quantity");
            }
            if (amount <= 0) throw new Planning.PlanningInputException($"spec.replicaResources.{name}", $"must be more than 0, got '{text}'");
        }
    }
}
