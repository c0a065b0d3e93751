using System.Text.Json.Serialization;

namespace Adaptive.Core.Api.V1Alpha1;

/// <summary>
/// The InferencePipeline custom resource, group <see cref="Group"/>, version v1alpha1. These classes carry
/// no Kubernetes client dependency: the operator wraps them, the CLI reads them from files.
/// Property names map one to one (camelCase) to the CRD schema in crds/.
/// </summary>
public sealed class InferencePipeline
{
    public const string Group = "adaptive.dev";
    public const string Version = "v1alpha1";
    public const string KindName = "InferencePipeline";
    public const string Plural = "inferencepipelines";
    public const string ApiVersionString = Group + "/" + Version;

    [JsonPropertyName("apiVersion")] public string ApiVersion { get; set; } = ApiVersionString;
    [JsonPropertyName("kind")] public string Kind { get; set; } = KindName;
    [JsonPropertyName("metadata")] public ObjectMetadata Metadata { get; set; } = new();
    [JsonPropertyName("spec")] public InferencePipelineSpec Spec { get; set; } = new();
    [JsonPropertyName("status")] public InferencePipelineStatus? Status { get; set; }
}

/// <summary>The few metadata fields a manifest file needs; the operator uses the full Kubernetes metadata.</summary>
public sealed class ObjectMetadata
{
    [JsonPropertyName("name")] public string Name { get; set; } = "";
    [JsonPropertyName("namespace")] public string? Namespace { get; set; }
    [JsonPropertyName("labels")] public Dictionary<string, string>? Labels { get; set; }
    [JsonPropertyName("annotations")] public Dictionary<string, string>? Annotations { get; set; }

    /// <summary>Set by the API server; the operator owns its children through it and reports the generation it saw.</summary>
    [JsonPropertyName("uid")] public string? Uid { get; set; }
    [JsonPropertyName("generation")] public long? Generation { get; set; }
    [JsonPropertyName("resourceVersion")] public string? ResourceVersion { get; set; }

    /// <summary>Set by the API server when the pipeline is being deleted; the operator then leaves it alone.</summary>
    [JsonPropertyName("deletionTimestamp")] public DateTimeOffset? DeletionTimestamp { get; set; }
}

public sealed class InferencePipelineSpec
{
    /// <summary>End-to-end latency objective of the whole pipeline, in milliseconds.</summary>
    [JsonPropertyName("sloMs")] public double SloMs { get; set; }

    [JsonPropertyName("objective")] public ObjectiveSpec Objective { get; set; } = new();

    /// <summary>The most the pipeline may cost, in the unit of the classes' costPerReplica; none when absent.</summary>
    [JsonPropertyName("budget")] public double? Budget { get; set; }

    [JsonPropertyName("hardwareClasses")] public List<HardwareClassSpec> HardwareClasses { get; set; } = [];

    /// <summary>The stages in the order a request passes through them.</summary>
    [JsonPropertyName("stages")] public List<StageSpec> Stages { get; set; } = [];

    [JsonPropertyName("adaptation")] public AdaptationSpec Adaptation { get; set; } = new();

    /// <summary>
    /// How the router calls the stages' model servers: <c>rest</c> (the default; binary tensors when the client sends
    /// them) or <c>grpc</c> (port 8081). Clients may use either with the router whatever this says.
    /// </summary>
    [JsonPropertyName("stageTransport")] public string StageTransport { get; set; } = "rest";

    /// <summary>Where s3:// models are read from and with what keys; absent: AWS, anonymously (a public bucket).</summary>
    [JsonPropertyName("modelStorage")] public ModelStorageSpec? ModelStorage { get; set; }
}

public sealed class ModelStorageSpec
{
    /// <summary>
    /// A Secret of the pipeline's namespace whose keys become the model fetch's environment: <c>AWS_ENDPOINT_URL</c>
    /// (an S3-compatible store such as MinIO; absent: AWS), <c>AWS_REGION</c>, <c>AWS_ACCESS_KEY_ID</c>, <c>AWS_SECRET_ACCESS_KEY</c>.
    /// </summary>
    [JsonPropertyName("secretName")] public string SecretName { get; set; } = "";
}

public sealed class ObjectiveSpec
{
    /// <summary><c>sum</c>, <c>average</c> or <c>product</c> of the stage accuracies.</summary>
    [JsonPropertyName("accuracyMethod")] public string AccuracyMethod { get; set; } = "sum";

    [JsonPropertyName("weights")] public WeightsSpec Weights { get; set; } = new();

    /// <summary>
    /// How much this pipeline's objective counts against others' where they share an InferencePool: planned
    /// together, the pools' replicas go where priority × objective gains most. 1 by default.
    /// </summary>
    [JsonPropertyName("priority")] public double Priority { get; set; } = 1;
}

/// <summary>α, β, γ, δ of α·accuracy − β·cost − γ·batch − δ·loading.</summary>
public sealed class WeightsSpec
{
    [JsonPropertyName("accuracy")] public double Accuracy { get; set; } = 1;
    [JsonPropertyName("cost")] public double Cost { get; set; }
    [JsonPropertyName("batch")] public double Batch { get; set; }
    [JsonPropertyName("loading")] public double Loading { get; set; }
}

/// <summary>A kind of node the model servers can run on, e.g. a CPU pool or a GPU pool.</summary>
public sealed class HardwareClassSpec
{
    [JsonPropertyName("name")] public string Name { get; set; } = "";
    [JsonPropertyName("costPerReplica")] public double CostPerReplica { get; set; }

    /// <summary>The most replicas of this pipeline on the class, over all stages; unlimited when absent.</summary>
    [JsonPropertyName("maxReplicas")] public int? MaxReplicas { get; set; }

    [JsonPropertyName("nodeSelector")] public Dictionary<string, string>? NodeSelector { get; set; }
    [JsonPropertyName("tolerations")] public List<TolerationSpec>? Tolerations { get; set; }

    /// <summary>Resources of one replica on this class; a variant's profile may override them.</summary>
    [JsonPropertyName("resources")] public ResourcesSpec? Resources { get; set; }

    /// <summary>
    /// The model-server image of this class's replicas; absent: the operator's (its GPU image for a class
    /// whose replicas request <c>nvidia.com/gpu</c>).
    /// </summary>
    [JsonPropertyName("image")] public string? Image { get; set; }

    /// <summary>
    /// Give each ONNX Runtime thread of a replica a CPU of its own (<c>adaptive-server serve --pin-threads</c>):
    /// a shorter tail at low load. Only for nodes whose kubelet runs the static CPU manager policy, which
    /// gives whole CPUs to Guaranteed pods: so the resources must be whole CPUs, requests equal to limits.
    /// </summary>
    [JsonPropertyName("pinThreads")] public bool PinThreads { get; set; }

    /// <summary>
    /// The InferencePool this class's replicas count against, with the replicas of every other pipeline's
    /// class that names it; absent: the class is this pipeline's alone (within <see cref="MaxReplicas"/>).
    /// </summary>
    [JsonPropertyName("pool")] public string? Pool { get; set; }
}

public sealed class TolerationSpec
{
    [JsonPropertyName("key")] public string? Key { get; set; }
    [JsonPropertyName("operator")] public string? Operator { get; set; }
    [JsonPropertyName("value")] public string? Value { get; set; }
    [JsonPropertyName("effect")] public string? Effect { get; set; }
    [JsonPropertyName("tolerationSeconds")] public long? TolerationSeconds { get; set; }
}

/// <summary>Kubernetes resource quantities, e.g. <c>cpu: "2"</c>, <c>memory: 4Gi</c>, <c>nvidia.com/gpu: "1"</c>.</summary>
public sealed class ResourcesSpec
{
    [JsonPropertyName("requests"), JsonConverter(typeof(QuantityMapConverter))] public Dictionary<string, string>? Requests { get; set; }
    [JsonPropertyName("limits"), JsonConverter(typeof(QuantityMapConverter))] public Dictionary<string, string>? Limits { get; set; }
}

public sealed class StageSpec
{
    [JsonPropertyName("name")] public string Name { get; set; } = "";

    /// <summary><c>single</c>: one variant at a time (IPA); <c>mixed</c>: a set of variants sharing the load (InfAdapter).</summary>
    [JsonPropertyName("mode")] public string Mode { get; set; } = "single";

    /// <summary>The batch sizes the stage may use.</summary>
    [JsonPropertyName("batchSizes")] public List<int> BatchSizes { get; set; } = [1];

    [JsonPropertyName("minReplicas")] public int MinReplicas { get; set; } = 1;
    [JsonPropertyName("maxReplicas")] public int MaxReplicas { get; set; }

    /// <summary>How long the model server may hold a request waiting for a batch to fill; <see cref="DefaultMaxQueueDelayMs"/> when absent.</summary>
    [JsonPropertyName("maxQueueDelayMs")] public double? MaxQueueDelayMs { get; set; }

    public const double DefaultMaxQueueDelayMs = 5;

    [JsonPropertyName("variants")] public List<VariantSpec> Variants { get; set; } = [];
}

public sealed class VariantSpec
{
    [JsonPropertyName("name")] public string Name { get; set; } = "";

    /// <summary>Where the model server loads the ONNX model from: file:///path, pvc://claim/path, https://host/path or s3://bucket/key (<see cref="Models.ModelSource"/>).</summary>
    [JsonPropertyName("modelUri")] public string ModelUri { get; set; } = "";

    /// <summary>The SHA-256 of the model file, lowercase hex: a download (https://, required; s3://, optional) is checked against it.</summary>
    [JsonPropertyName("sha256")] public string? Sha256 { get; set; }

    /// <summary>The variant's accuracy, as a fraction (e.g. ImageNet top-1 0.7613).</summary>
    [JsonPropertyName("accuracy")] public double Accuracy { get; set; }

    /// <summary>How the variant performs on each hardware class it may run on.</summary>
    [JsonPropertyName("profiles")] public List<VariantProfileSpec> Profiles { get; set; } = [];
}

public sealed class VariantProfileSpec
{
    [JsonPropertyName("hardwareClass")] public string HardwareClass { get; set; } = "";

    /// <summary>Seconds a new replica takes to load the model before it can serve.</summary>
    [JsonPropertyName("loadTimeSeconds")] public double LoadTimeSeconds { get; set; }

    /// <summary>Overrides the class's cost per replica for this variant (e.g. a larger memory request).</summary>
    [JsonPropertyName("costPerReplica")] public double? CostPerReplica { get; set; }

    /// <summary>Overrides the class's resources per replica for this variant.</summary>
    [JsonPropertyName("resources")] public ResourcesSpec? Resources { get; set; }

    /// <summary>ONNX Runtime intra-op threads per replica; when absent, the model server runs one per CPU the pod may use.</summary>
    [JsonPropertyName("threads")] public int? Threads { get; set; }

    [JsonPropertyName("batches")] public List<BatchProfileSpec> Batches { get; set; } = [];
}

/// <summary>One replica at one batch size: the time a batch takes and the requests per second it sustains.</summary>
public sealed class BatchProfileSpec
{
    [JsonPropertyName("batch")] public int Batch { get; set; }
    [JsonPropertyName("latencyMs")] public double LatencyMs { get; set; }
    [JsonPropertyName("throughputRps")] public double ThroughputRps { get; set; }
}

public sealed class AdaptationSpec
{
    /// <summary>Seconds between adaptation decisions.</summary>
    [JsonPropertyName("intervalSeconds")] public int IntervalSeconds { get; set; } = 30;

    /// <summary>
    /// How the next interval's peak load is predicted: <c>last-value</c>, <c>moving-max</c>, <c>ewma-trend</c>, <c>learned</c>.
    /// The default is the one with the fewest SLO violations when replaying held-out windows of the Twitter trace (README).
    /// </summary>
    [JsonPropertyName("forecaster")] public string Forecaster { get; set; } = "learned";

    /// <summary>
    /// How long a lower load must last before capacity is removed, against flapping: every plan is made for at
    /// least the highest arrival rate of this many last seconds (Kubernetes' HPA default, 300). At most
    /// <c>metrics.historySeconds</c>, the history it is read from.
    /// </summary>
    [JsonPropertyName("scaleDownStabilizationSeconds")] public int ScaleDownStabilizationSeconds { get; set; } = 300;

    /// <summary>
    /// How the planner models a stage's latency: <c>queueing</c> (replicas sized so that the p99 with queueing
    /// meets the SLO) or <c>batch-fill</c> (the papers' model, with no queueing).
    /// </summary>
    [JsonPropertyName("latencyModel")] public string LatencyModel { get; set; } = "queueing";

    /// <summary>
    /// The plan is made for the predicted load divided by this, and the surge rule reads the observed rate the same
    /// way. The queueing model needs no headroom; with batch-fill, whose replicas run at their profiled (saturation)
    /// throughput, a value below 1 keeps queues short. Above 1 plans for less than predicted (at most
    /// <see cref="InferencePipelineValidator.MaxTargetUtilization"/>): the predicted peak and the 99th percentile are
    /// both cautious, and a tight budget may buy more accuracy by risking some of its SLO (what an HPA at over 100 %
    /// of its requests does).
    /// </summary>
    [JsonPropertyName("targetUtilization")] public double TargetUtilization { get; set; } = 1;

    /// <summary>The search time the planner may spend on one decision.</summary>
    [JsonPropertyName("plannerTimeLimitSeconds")] public double PlannerTimeLimitSeconds { get; set; } = 5;

    [JsonPropertyName("metrics")] public MetricsSourceSpec Metrics { get; set; } = new();
}

public sealed class MetricsSourceSpec
{
    /// <summary>The Prometheus to query; the operator's configured one when absent.</summary>
    [JsonPropertyName("prometheusUrl")] public string? PrometheusUrl { get; set; }

    /// <summary>Seconds of arrival-rate history the forecaster looks at.</summary>
    [JsonPropertyName("historySeconds")] public int HistorySeconds { get; set; } = 600;
}
