using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Models;
using Adaptive.Core.Planning;
using Adaptive.Core.Routing;
using k8s.Models;

namespace Adaptive.Operator.Reconciliation;

/// <summary>One running (stage, variant, hardware class) of a plan, with what its Deployment needs.</summary>
public sealed record AllocationObjects(string Stage, Allocation Allocation, V1Deployment Deployment, V1Service Service, StageTransport Transport)
{
    public string Name => Deployment.Metadata.Name;

    /// <summary>The router's entry for it: its Service at the transport's port, weighted by its share of the stage's load.</summary>
    public VariantRoute Route => new($"{Allocation.Variant}-{Allocation.Hardware}",
        $"http://{Name}:{(Transport == StageTransport.Grpc ? WorkloadSettings.GrpcPort : WorkloadSettings.Port)}", Math.Max(Allocation.Share, 1e-6), Transport);
}

/// <param name="ModelServerImage">The image of <c>adaptive-server</c>, for routers and the model servers of CPU classes.</param>
/// <param name="DrainDelay">The model server's drain delay; the pod's grace period covers it and the drain timeout.</param>
/// <param name="ModelServerGpuImage">The image for model servers of classes that request <c>nvidia.com/gpu</c> (built with the GPU runtime); null: <paramref name="ModelServerImage"/>.</param>
public sealed record WorkloadSettings(string ModelServerImage, TimeSpan DrainDelay, TimeSpan DrainTimeout, string? ModelServerGpuImage = null)
{
    public const int Port = 8080;
    /// <summary>The Open Inference Protocol's gRPC service of every model server and router.</summary>
    public const int GrpcPort = 8081;

    /// <summary>The extended resource of NVIDIA's device plugin: a class whose replicas request it runs on GPUs.</summary>
    public const string GpuResource = "nvidia.com/gpu";

    /// <summary>
    /// How long a server may take to listen (loading its model, then warming up) before Kubernetes restarts it: the startup
    /// probe's allowance, within which the liveness probe waits. Without it the liveness probe, 3 failures 10 s apart,
    /// would restart a server still loading after about 30 s, over and over: the video sample's yolov5l loads in 46 s on a CPU.
    /// </summary>
    public static readonly TimeSpan StartupAllowance = TimeSpan.FromMinutes(5);

    /// <summary>
    /// The image a hardware class's model servers run: its own, else the GPU image for a class whose replicas
    /// request GPUs, else the model-server image.
    /// </summary>
    public string ImageFor(HardwareClassSpec hardware, bool requestsGpu) =>
        hardware.Image ?? (requestsGpu ? ModelServerGpuImage ?? ModelServerImage : ModelServerImage);
}

/// <summary>
/// The objects a plan asks for, built without touching the cluster: a Deployment and a Service per
/// (stage, variant, hardware class) with replicas, the model server's batching and thread settings,
/// probes on its health endpoints, and the class's resources, node selector and tolerations; and the
/// router's Deployment, Service and ConfigMap. Everything is owned by the pipeline, so deleting it
/// deletes them.
/// </summary>
public static class DesiredState
{
    public static IReadOnlyList<AllocationObjects> Allocations(InferencePipeline pipeline, PipelinePlan plan, WorkloadSettings settings)
    {
        var result = new List<AllocationObjects>();
        foreach (var stage in plan.Stages)
        {
            var stageSpec = pipeline.Spec.Stages.Single(s => s.Name == stage.Name);
            foreach (var allocation in stage.Allocations.Where(a => a.Replicas > 0))
            {
                var variant = stageSpec.Variants.Single(v => v.Name == allocation.Variant);
                var profile = variant.Profiles.Single(p => p.HardwareClass == allocation.Hardware);
                var hardware = pipeline.Spec.HardwareClasses.Single(c => c.Name == allocation.Hardware);
                string name = Names.Allocation(pipeline.Metadata.Name, stage.Name, allocation.Variant, allocation.Hardware);
                var labels = new Dictionary<string, string>
                {
                    [Names.ManagedBy] = Names.FieldManager,
                    [Names.Pipeline] = Names.LabelValue(pipeline.Metadata.Name),
                    [Names.Component] = Names.ModelServer,
                    [Names.Stage] = stage.Name,
                    [Names.Variant] = allocation.Variant,
                    [Names.HardwareClass] = allocation.Hardware,
                };
                var source = ModelSource.Of(variant, $"variant {variant.Name}");
                var environment = new Dictionary<string, string>
                {
                    ["ADAPTIVE_MODEL"] = ModelPath(source),
                    ["ADAPTIVE_NAME"] = stage.Name,
                    ["ADAPTIVE_VARIANT"] = allocation.Variant,
                    ["ADAPTIVE_MAX_BATCH"] = Invariant(allocation.Batch),
                    ["ADAPTIVE_MAX_QUEUE_DELAY_MS"] = Invariant(stageSpec.MaxQueueDelayMs ?? StageSpec.DefaultMaxQueueDelayMs),
                    ["ADAPTIVE_INTRA_OP_THREADS"] = Invariant(profile.Threads ?? 0),
                    // A request later than the pipeline's SLO is of no use to anyone: refuse it instead.
                    ["ADAPTIVE_REQUEST_TIMEOUT_MS"] = Invariant(pipeline.Spec.SloMs),
                };
                if (hardware.PinThreads) environment["ADAPTIVE_PIN_THREADS"] = "true";
                var resources = profile.Resources ?? hardware.Resources;
                bool gpu = RequestsGpu(resources);
                // A GPU class's server exits rather than fall back to the CPU; a CPU class's never takes a GPU.
                environment["ADAPTIVE_DEVICE"] = gpu ? "cuda" : "cpu";
                var deployment = Deployment(pipeline, name, labels, allocation.Replicas, settings, settings.ImageFor(hardware, gpu), ["serve"], environment,
                    resources, hardware);
                MountModel(deployment.Spec.Template.Spec, source, pipeline.Spec.ModelStorage);
                deployment.Metadata.Annotations = new Dictionary<string, string> { [Names.Batch] = Invariant(allocation.Batch) };
                result.Add(new AllocationObjects(stage.Name, allocation, deployment, Service(pipeline, name, labels),
                    pipeline.Spec.StageTransport == "grpc" ? StageTransport.Grpc : StageTransport.Rest));
            }
        }
        return result;
    }

    /// <summary>The router's configuration: the given routes, grouped by stage in the pipeline's order, and the pipeline's SLO.</summary>
    public static RouterConfig Routes(InferencePipeline pipeline, IReadOnlyList<(string Stage, VariantRoute Route)> routed) =>
        new(pipeline.Metadata.Name, [.. pipeline.Spec.Stages.Select(s => new StageRoute(s.Name, [.. routed.Where(r => r.Stage == s.Name).Select(r => r.Route)]))],
            pipeline.Spec.SloMs);

    public static V1ConfigMap RoutesConfigMap(InferencePipeline pipeline, RouterConfig routes) => new()
    {
        ApiVersion = "v1",
        Kind = "ConfigMap",
        Metadata = Metadata(pipeline, Names.RoutesConfigMap(pipeline.Metadata.Name), RouterLabels(pipeline)),
        Data = new Dictionary<string, string> { ["routes.json"] = routes.Write() },
    };

    public static (V1Deployment Deployment, V1Service Service) Router(InferencePipeline pipeline, WorkloadSettings settings)
    {
        var labels = RouterLabels(pipeline);
        string name = Names.RouterName(pipeline.Metadata.Name);
        var environment = new Dictionary<string, string>
        {
            ["ADAPTIVE_CONFIG"] = "/etc/adaptive/routes.json",
            ["ADAPTIVE_REQUEST_TIMEOUT_MS"] = Invariant(pipeline.Spec.SloMs * 4),
        };
        var deployment = Deployment(pipeline, name, labels, 1, settings, settings.ModelServerImage, ["router"], environment, null, null);
        var pod = deployment.Spec.Template.Spec;
        pod.Volumes.Add(new V1Volume { Name = "routes", ConfigMap = new V1ConfigMapVolumeSource { Name = Names.RoutesConfigMap(pipeline.Metadata.Name) } });
        pod.Containers[0].VolumeMounts.Add(new V1VolumeMount { Name = "routes", MountPath = "/etc/adaptive", ReadOnlyProperty = true });
        // The pipeline's entry point keeps the pipeline's name, and Prometheus scrapes its arrival counter.
        var service = Service(pipeline, Names.Dns(pipeline.Metadata.Name), labels);
        service.Metadata.Annotations = new Dictionary<string, string>
        {
            ["prometheus.io/scrape"] = "true",
            ["prometheus.io/port"] = Invariant(WorkloadSettings.Port),
            ["prometheus.io/path"] = "/metrics",
        };
        return (deployment, service);
    }

    static Dictionary<string, string> RouterLabels(InferencePipeline pipeline) => new()
    {
        [Names.ManagedBy] = Names.FieldManager,
        [Names.Pipeline] = Names.LabelValue(pipeline.Metadata.Name),
        [Names.Component] = Names.Router,
    };

    /// <summary>Where a claim's files appear in the server's container, read-only.</summary>
    const string ClaimMount = "/mnt/model-claim";

    /// <summary>Where a downloaded model is written by the init container and read by the server.</summary>
    const string DownloadMount = "/mnt/model";
    const string DownloadFile = "model.onnx";

    /// <summary>The model file inside the server's container.</summary>
    static string ModelPath(ModelSource source) => source switch
    {
        ModelSource.LocalFile file => file.Path,
        ModelSource.Claim claim => $"{ClaimMount}/{claim.Path}",
        ModelSource.Download => $"{DownloadMount}/{DownloadFile}",
        _ => throw new ArgumentOutOfRangeException(nameof(source), source, "unknown model source"),
    };

    /// <summary>
    /// What a model source needs in the pod: a claim mounted read-only (nothing copied), or an emptyDir that an
    /// init container running the server image's own <c>fetch-model</c> fills and checks before the server starts
    /// (bounded in size and time; a failure shows as the pod's init container's termination message), with the
    /// pipeline's storage Secret as its environment for s3:// objects.
    /// </summary>
    static void MountModel(V1PodSpec pod, ModelSource source, ModelStorageSpec? storage)
    {
        var server = pod.Containers[0];
        switch (source)
        {
            case ModelSource.Claim claim:
                pod.Volumes.Add(new V1Volume { Name = "model", PersistentVolumeClaim = new V1PersistentVolumeClaimVolumeSource { ClaimName = claim.ClaimName, ReadOnlyProperty = true } });
                server.VolumeMounts.Add(new V1VolumeMount { Name = "model", MountPath = ClaimMount, ReadOnlyProperty = true });
                break;
            case ModelSource.Download download:
                pod.Volumes.Add(new V1Volume { Name = "model", EmptyDir = new V1EmptyDirVolumeSource() });
                server.VolumeMounts.Add(new V1VolumeMount { Name = "model", MountPath = DownloadMount, ReadOnlyProperty = true });
                pod.InitContainers =
                [
                    new V1Container
                    {
                        Name = "fetch-model",
                        Image = server.Image,
                        Args = ["fetch-model", "--uri", download.Uri.AbsoluteUri, .. download.Sha256 is { } sha256 ? new[] { "--sha256", sha256 } : [], "--out", $"{DownloadMount}/{DownloadFile}"],
                        EnvFrom = download.Uri.Scheme == "s3" && storage is not null ? [new V1EnvFromSource { SecretRef = new V1SecretEnvSource { Name = storage.SecretName } }] : null,
                        VolumeMounts = [new V1VolumeMount { Name = "model", MountPath = DownloadMount }, new V1VolumeMount { Name = "tmp", MountPath = "/tmp" }],
                        TerminationMessagePolicy = "FallbackToLogsOnError",
                        SecurityContext = server.SecurityContext,
                    },
                ];
                break;
        }
    }

    /// <summary>Whether replicas with <paramref name="resources"/> ask for at least one GPU (as a request or a limit: the device plugin takes either).</summary>
    static bool RequestsGpu(ResourcesSpec? resources) =>
        new[] { resources?.Requests, resources?.Limits }.Any(quantities =>
            quantities?.TryGetValue(WorkloadSettings.GpuResource, out var quantity) == true && new ResourceQuantity(quantity).ToDecimal() > 0);

    static V1Deployment Deployment(InferencePipeline pipeline, string name, Dictionary<string, string> labels, int replicas, WorkloadSettings settings,
        string image, List<string> args, Dictionary<string, string> environment, ResourcesSpec? resources, HardwareClassSpec? hardware)
    {
        var selector = labels.Where(l => l.Key != Names.ManagedBy).ToDictionary(l => l.Key, l => l.Value);
        var container = new V1Container
        {
            Name = "adaptive-server",
            Image = image,
            Args = args,
            Env = [.. environment.Concat(new Dictionary<string, string>
            {
                ["ADAPTIVE_PORT"] = Invariant(WorkloadSettings.Port),
                ["ADAPTIVE_GRPC_PORT"] = Invariant(WorkloadSettings.GrpcPort),
                ["ADAPTIVE_DRAIN_DELAY_MS"] = Invariant(settings.DrainDelay.TotalMilliseconds),
                ["ADAPTIVE_DRAIN_TIMEOUT_MS"] = Invariant(settings.DrainTimeout.TotalMilliseconds),
            }).Select(e => new V1EnvVar { Name = e.Key, Value = e.Value })],
            Ports = [new V1ContainerPort { ContainerPort = WorkloadSettings.Port, Name = "http" }, new V1ContainerPort { ContainerPort = WorkloadSettings.GrpcPort, Name = "grpc" }],
            // A server that cannot start says why in one line on stderr: the pod's status shows it, and the operator reports it.
            TerminationMessagePolicy = "FallbackToLogsOnError",
            // Checked every second, so that a started replica gets traffic within about a second of its being ready, as
            // with the readiness probe alone every 2 s before there was a startup probe (the readiness probe waits for it).
            StartupProbe = Probe("/v2/health/live", StartupProbePeriodSeconds, failureThreshold: (int)(WorkloadSettings.StartupAllowance.TotalSeconds / StartupProbePeriodSeconds)),
            ReadinessProbe = Probe("/v2/health/ready", periodSeconds: 1),
            LivenessProbe = Probe("/v2/health/live", periodSeconds: 10),
            Resources = resources is null ? null : new V1ResourceRequirements
            {
                Requests = resources.Requests?.ToDictionary(r => r.Key, r => new ResourceQuantity(r.Value)),
                Limits = resources.Limits?.ToDictionary(r => r.Key, r => new ResourceQuantity(r.Value)),
            },
            // The root filesystem is read-only; .NET and ONNX Runtime still want a writable /tmp.
            VolumeMounts = [new V1VolumeMount { Name = "tmp", MountPath = "/tmp" }],
            SecurityContext = new V1SecurityContext
            {
                RunAsNonRoot = true,
                ReadOnlyRootFilesystem = true,
                AllowPrivilegeEscalation = false,
                Capabilities = new V1Capabilities { Drop = ["ALL"] },
            },
        };
        return new V1Deployment
        {
            ApiVersion = "apps/v1",
            Kind = "Deployment",
            Metadata = Metadata(pipeline, name, labels),
            Spec = new V1DeploymentSpec
            {
                Replicas = replicas,
                Selector = new V1LabelSelector { MatchLabels = selector },
                Template = new V1PodTemplateSpec
                {
                    Metadata = new V1ObjectMeta { Labels = labels },
                    Spec = new V1PodSpec
                    {
                        Containers = [container],
                        Volumes = [new V1Volume { Name = "tmp", EmptyDir = new V1EmptyDirVolumeSource() }],
                        NodeSelector = hardware?.NodeSelector,
                        Tolerations = hardware?.Tolerations?.Select(t => new V1Toleration
                        {
                            Effect = t.Effect, Key = t.Key, OperatorProperty = t.Operator, TolerationSeconds = t.TolerationSeconds, Value = t.Value,
                        }).ToList(),
                        // SIGTERM → drain delay (still serving while endpoints update) → drain timeout → exit.
                        TerminationGracePeriodSeconds = (long)Math.Ceiling((settings.DrainDelay + settings.DrainTimeout).TotalSeconds) + 5,
                        SecurityContext = new V1PodSecurityContext { RunAsNonRoot = true, RunAsUser = 10001, SeccompProfile = new V1SeccompProfile { Type = "RuntimeDefault" } },
                    },
                },
            },
        };
    }

    static V1Service Service(InferencePipeline pipeline, string name, Dictionary<string, string> labels) => new()
    {
        ApiVersion = "v1",
        Kind = "Service",
        Metadata = Metadata(pipeline, name, labels),
        Spec = new V1ServiceSpec
        {
            Selector = labels.Where(l => l.Key != Names.ManagedBy).ToDictionary(l => l.Key, l => l.Value),
            Ports =
            [
                new V1ServicePort { Port = WorkloadSettings.Port, Name = "http", TargetPort = WorkloadSettings.Port },
                // HTTP/2 without TLS: the appProtocol tells service meshes and gateways how to speak to it.
                new V1ServicePort { Port = WorkloadSettings.GrpcPort, Name = "grpc", TargetPort = WorkloadSettings.GrpcPort, AppProtocol = "kubernetes.io/h2c" },
            ],
        },
    };

    /// <summary>How often the startup probe asks: its failures, this far apart, add up to <see cref="WorkloadSettings.StartupAllowance"/>.</summary>
    const int StartupProbePeriodSeconds = 1;

    static V1Probe Probe(string path, int periodSeconds, int failureThreshold = 3) => new()
    {
        HttpGet = new V1HTTPGetAction { Path = path, Port = WorkloadSettings.Port },
        PeriodSeconds = periodSeconds,
        FailureThreshold = failureThreshold,
    };

    static V1ObjectMeta Metadata(InferencePipeline pipeline, string name, Dictionary<string, string> labels) => new()
    {
        Name = name,
        NamespaceProperty = pipeline.Metadata.Namespace,
        Labels = labels,
        OwnerReferences =
        [
            new V1OwnerReference
            {
                ApiVersion = InferencePipeline.ApiVersionString,
                Kind = InferencePipeline.KindName,
                Name = pipeline.Metadata.Name,
                Uid = pipeline.Metadata.Uid,
                Controller = true,
                BlockOwnerDeletion = true,
            },
        ],
    };

    static string Invariant(double value) => value.ToString(System.Globalization.CultureInfo.InvariantCulture);
}
