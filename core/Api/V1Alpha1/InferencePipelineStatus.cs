using System.Text.Json.Serialization;

namespace Adaptive.Core.Api.V1Alpha1;

/// <summary>What runs now and why, written by the operator.</summary>
public sealed class InferencePipelineStatus
{
    [JsonPropertyName("observedGeneration")] public long? ObservedGeneration { get; set; }
    [JsonPropertyName("conditions")] public List<PipelineCondition> Conditions { get; set; } = [];

    /// <summary>The running configuration, stage by stage.</summary>
    [JsonPropertyName("stages")] public List<StageStatus> Stages { get; set; } = [];

    /// <summary>One line for <c>kubectl get</c>: each stage's variants and replicas, e.g. <c>classify=resnet50x3+resnet18x1</c>.</summary>
    [JsonPropertyName("summary")] public string? Summary { get; set; }

    /// <summary>The load the last decision planned for: the forecast, held up by the scale-down stabilization window or raised by a surge.</summary>
    [JsonPropertyName("predictedLoadRps")] public double? PredictedLoadRps { get; set; }
    [JsonPropertyName("observedLoadRps")] public double? ObservedLoadRps { get; set; }
    [JsonPropertyName("expectedAccuracy")] public double? ExpectedAccuracy { get; set; }
    [JsonPropertyName("expectedCost")] public double? ExpectedCost { get; set; }
    [JsonPropertyName("expectedLatencyMs")] public double? ExpectedLatencyMs { get; set; }

    /// <summary>The planner's verdict on the last decision: <c>optimal</c>, <c>feasible</c> or <c>infeasible</c>.</summary>
    [JsonPropertyName("planStatus")] public string? PlanStatus { get; set; }

    [JsonPropertyName("lastDecisionTime")] public DateTimeOffset? LastDecisionTime { get; set; }

    /// <summary>When capacity last grew; the next surge decision waits a while after it.</summary>
    [JsonPropertyName("lastScaleUpTime")] public DateTimeOffset? LastScaleUpTime { get; set; }

    /// <summary>The load the last scale-up was for (a surge's rate, without its headroom): the scale-down stabilization window holds plans at it while that scale-up is in the window.</summary>
    [JsonPropertyName("lastScaleUpLoadRps")] public double? LastScaleUpLoadRps { get; set; }

    /// <summary>The load the last scale-up planned for, a surge's headroom included: plans hold it for two decision intervals.</summary>
    [JsonPropertyName("lastScaleUpPlannedRps")] public double? LastScaleUpPlannedRps { get; set; }
    [JsonPropertyName("solveTimeMs")] public double? SolveTimeMs { get; set; }

    /// <summary>For a pipeline with a class in an InferencePool: its share at the pool's last joint decision.</summary>
    [JsonPropertyName("pool")] public PoolShareStatus? Pool { get; set; }
}

/// <summary>A pipeline's share of its InferencePool.</summary>
public sealed class PoolShareStatus
{
    [JsonPropertyName("name")] public string Name { get; set; } = "";
    [JsonPropertyName("replicas")] public int Replicas { get; set; }

    /// <summary>What it would take planned alone with the whole pool; more than <see cref="Replicas"/> when others got some of it.</summary>
    [JsonPropertyName("wantedReplicas")] public int WantedReplicas { get; set; }
}

/// <summary>A status condition as Kubernetes conventions define it.</summary>
public sealed class PipelineCondition
{
    public const string Ready = "Ready";
    public const string Adapting = "Adapting";
    public const string Degraded = "Degraded";
    public const string SloFeasible = "SLOFeasible";

    /// <summary>True when the pipeline got fewer of its InferencePool's replicas than it would alone, because others share the pool.</summary>
    public const string PoolConstrained = "PoolConstrained";

    [JsonPropertyName("type")] public string Type { get; set; } = "";

    /// <summary><c>True</c>, <c>False</c> or <c>Unknown</c>.</summary>
    [JsonPropertyName("status")] public string Status { get; set; } = "Unknown";

    [JsonPropertyName("reason")] public string Reason { get; set; } = "";
    [JsonPropertyName("message")] public string Message { get; set; } = "";
    [JsonPropertyName("observedGeneration")] public long? ObservedGeneration { get; set; }
    [JsonPropertyName("lastTransitionTime")] public DateTimeOffset LastTransitionTime { get; set; }
}

public sealed class StageStatus
{
    [JsonPropertyName("name")] public string Name { get; set; } = "";
    [JsonPropertyName("allocations")] public List<AllocationStatus> Allocations { get; set; } = [];
    [JsonPropertyName("latencyMs")] public double? LatencyMs { get; set; }
}

public sealed class AllocationStatus
{
    [JsonPropertyName("variant")] public string Variant { get; set; } = "";
    [JsonPropertyName("hardwareClass")] public string HardwareClass { get; set; } = "";
    [JsonPropertyName("replicas")] public int Replicas { get; set; }
    [JsonPropertyName("batch")] public int Batch { get; set; }

    /// <summary>Requests per second routed to this allocation.</summary>
    [JsonPropertyName("shareRps")] public double ShareRps { get; set; }
}
