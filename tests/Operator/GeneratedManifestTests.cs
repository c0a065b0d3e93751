using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Planning;
using Adaptive.Experiments.Manifests;
using Adaptive.Operator.Reconciliation;
using Adaptive.Tests.Support;
using k8s;

namespace Adaptive.Tests.Operator;

/// <summary>The objects the operator builds for the samples pass the upstream Kubernetes schemas.</summary>
public sealed class GeneratedManifestTests : IDisposable
{
    readonly string directory = Directory.CreateTempSubdirectory("adaptive-generated-").FullName;

    [Theory]
    [InlineData("resnet-mixed.yaml", 60)]
    [InlineData("video-pipeline.yaml", 25)]
    public void Objects_built_for_a_sample_validate(string sample, double rate)
    {
        var pipeline = Sample(sample);
        var plan = new CpSatPlanner().Plan(PlanningProblem.Single(PlanningProblemBuilder.Build(pipeline, rate, []))).Pipelines[0];
        var settings = new WorkloadSettings("ghcr.io/example/adaptive-server:1.0", TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(20));
        var allocations = DesiredState.Allocations(pipeline, plan, settings);
        var (router, routerService) = DesiredState.Router(pipeline, settings);
        var routes = DesiredState.RoutesConfigMap(pipeline, DesiredState.Routes(pipeline, [.. allocations.Select(a => (a.Stage, a.Route))]));
        var objects = allocations.SelectMany(a => new object[] { a.Deployment, a.Service }).Concat([router, routerService, routes]).ToList();
        Assert.True(objects.Count >= 5);
        string file = Path.Combine(directory, Path.ChangeExtension(sample, ".generated.yaml"));
        File.WriteAllText(file, string.Join("\n---\n", objects.Select(o => KubernetesYaml.Serialize(o))));

        var result = K8sValidate.Run(file);

        Assert.True(result.ExitCode == 0, result.Output);
        Assert.Contains($"{objects.Count} valid", result.Output);
    }

    /// <summary>
    /// A server still loading its model is not restarted: the startup probe allows it <see cref="WorkloadSettings.StartupAllowance"/>,
    /// several times the slowest load in the samples (the video sample's yolov5l, 46 s on a CPU, where the liveness probe alone,
    /// 3 failures 10 s apart, would restart it after about 30 s), before the liveness probe takes over. Readiness is checked every second.
    /// </summary>
    [Fact]
    public void A_server_loading_a_slow_model_has_time_to_start_before_its_liveness_counts()
    {
        var pipeline = Sample("video-pipeline.yaml");
        var plan = new PipelinePlan(pipeline.Metadata.Name, null,
            [new StagePlan("detect", [new Allocation("yolov5l", "cpu", 1, 1, 10)]), new StagePlan("classify", [new Allocation("resnet18", "cpu", 1, 1, 10)])]);
        var settings = new WorkloadSettings("registry/adaptive-server:1.0", TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(20));
        var server = DesiredState.Allocations(pipeline, plan, settings).Single(a => a.Allocation.Variant == "yolov5l").Deployment.Spec.Template.Spec.Containers[0];
        double slowestLoad = pipeline.Spec.Stages.SelectMany(s => s.Variants).SelectMany(v => v.Profiles).Max(p => p.LoadTimeSeconds);
        Assert.InRange(slowestLoad, 40, 60);

        Assert.Equal("/v2/health/live", server.StartupProbe.HttpGet.Path);
        Assert.True(server.StartupProbe.PeriodSeconds * server.StartupProbe.FailureThreshold >= 3 * slowestLoad);
        Assert.True(server.LivenessProbe.PeriodSeconds * server.LivenessProbe.FailureThreshold < slowestLoad); // why the startup probe is there
        Assert.Equal(1, server.ReadinessProbe.PeriodSeconds);
    }

    /// <summary>
    /// A class whose replicas request <c>nvidia.com/gpu</c> runs the GPU image with <c>--device cuda</c> (the server
    /// exits rather than serve on the CPU); a CPU class the model-server image with <c>--device cpu</c>; a class's
    /// own image wins. The pipeline with a class image and the objects validate against the CRD and upstream schemas.
    /// </summary>
    [Fact]
    public void Each_hardware_class_runs_its_image_and_gpu_classes_require_cuda()
    {
        var pipeline = Sample("resnet-mixed.yaml");
        var plan = new PipelinePlan(pipeline.Metadata.Name, null,
            [new StagePlan("classify", [new Allocation("resnet18", "cpu", 2, 1, 30), new Allocation("resnet50", "gpu", 1, 4, 30)])]);
        (string Image, string Device) Server(WorkloadSettings settings, string hardwareClass)
        {
            var container = DesiredState.Allocations(pipeline, plan, settings).Single(a => a.Allocation.Hardware == hardwareClass).Deployment.Spec.Template.Spec.Containers[0];
            return (container.Image, container.Env.Single(e => e.Name == "ADAPTIVE_DEVICE").Value);
        }

        var withGpuImage = new WorkloadSettings("registry/adaptive-server:1.0", TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(20), "registry/adaptive-server-gpu:1.0");
        Assert.Equal(("registry/adaptive-server:1.0", "cpu"), Server(withGpuImage, "cpu"));
        Assert.Equal(("registry/adaptive-server-gpu:1.0", "cuda"), Server(withGpuImage, "gpu"));
        Assert.Equal("registry/adaptive-server:1.0", DesiredState.Router(pipeline, withGpuImage).Deployment.Spec.Template.Spec.Containers[0].Image);
        var oneImage = withGpuImage with { ModelServerGpuImage = null };
        Assert.Equal(("registry/adaptive-server:1.0", "cuda"), Server(oneImage, "gpu"));

        pipeline.Spec.HardwareClasses.Single(c => c.Name == "cpu").Image = "registry/custom-server:2.1";
        Assert.Equal(("registry/custom-server:2.1", "cpu"), Server(withGpuImage, "cpu"));
        string file = Path.Combine(directory, "class-images.yaml");
        File.WriteAllText(file, string.Join("\n---\n", DesiredState.Allocations(pipeline, plan, withGpuImage)
            .SelectMany(a => new object[] { a.Deployment, a.Service }).Append(pipeline).Select(o => KubernetesYaml.Serialize(o))));
        var result = K8sValidate.Run(RepoPaths.Of("crds"), file);
        Assert.True(result.ExitCode == 0, result.Output);
        Assert.Contains("7 valid", result.Output); // the two CRDs, the pipeline, two Deployments and their Services

        pipeline.Spec.HardwareClasses[0].Image = "registry/adaptive server";
        var bad = Assert.Throws<PlanningInputException>(() => InferencePipelineValidator.Validate(pipeline));
        Assert.Contains("spec.hardwareClasses[0].image", bad.Message);
    }

    /// <summary>
    /// <c>stageTransport: grpc</c> gives the router each variant's Service at the gRPC port, marked for gRPC; the default
    /// keeps REST's port and a configuration without the field. The pipeline validates against the CRD; another value is
    /// refused naming the field.
    /// </summary>
    [Fact]
    public void Stages_called_over_grpc_are_routed_to_the_grpc_port()
    {
        var pipeline = ManifestReader.Parse(File.ReadAllText(RepoPaths.Of("samples", "video-pipeline.yaml")));
        pipeline.Metadata.Namespace = "ml";
        var plan = new CpSatPlanner().Plan(PlanningProblem.Single(PlanningProblemBuilder.Build(pipeline, 10, []))).Pipelines[0];
        var settings = new WorkloadSettings("ghcr.io/example/adaptive-server:1.0", TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(20));
        Adaptive.Core.Routing.RouterConfig Routes()
        {
            var allocations = DesiredState.Allocations(pipeline, plan, settings);
            string text = DesiredState.RoutesConfigMap(pipeline, DesiredState.Routes(pipeline, [.. allocations.Select(a => (a.Stage, a.Route))])).Data["routes.json"];
            Assert.Equal(pipeline.Spec.StageTransport == "grpc", text.Contains("\"transport\": \"grpc\"", StringComparison.Ordinal));
            return Adaptive.Core.Routing.RouterConfig.Parse(text);
        }

        Assert.All(Routes().Stages.SelectMany(s => s.Variants), v => Assert.EndsWith(":8080", v.Endpoint));
        pipeline.Spec.StageTransport = "grpc";
        var variants = Routes().Stages.SelectMany(s => s.Variants).ToList();
        Assert.Equal(2, variants.Count);
        Assert.All(variants, v => Assert.Equal(Adaptive.Core.Routing.StageTransport.Grpc, v.Transport));
        Assert.All(variants, v => Assert.EndsWith(":8081", v.Endpoint));
        string file = Path.Combine(directory, "grpc-stages.yaml");
        File.WriteAllText(file, KubernetesYaml.Serialize(pipeline));
        var result = K8sValidate.Run(RepoPaths.Of("crds"), file);
        Assert.True(result.ExitCode == 0, result.Output);

        pipeline.Spec.StageTransport = "http3";
        Assert.Equal("spec.stageTransport: must be one of rest, grpc, got 'http3'",
            Assert.Throws<PlanningInputException>(() => InferencePipelineValidator.Validate(pipeline)).Message);
    }

    /// <summary>
    /// A model on a PersistentVolumeClaim is mounted read-only, nothing copied; an https:// or s3:// model is fetched by
    /// an init container running the server image's <c>fetch-model</c>, checked against the variant's sha256, into a
    /// volume the server reads. The pods validate; bad URIs and digests are refused naming the field.
    /// </summary>
    [Fact]
    public void Models_on_a_claim_behind_https_or_in_s3_reach_the_server_before_it_starts()
    {
        var pipeline = Sample("resnet-mixed.yaml");
        var variants = pipeline.Spec.Stages[0].Variants;
        variants.Single(v => v.Name == "resnet18").ModelUri = "pvc://model-store/zoo/resnet18.onnx";
        variants.Single(v => v.Name == "resnet34").ModelUri = "s3://model-bucket/zoo/resnet34.onnx";
        pipeline.Spec.ModelStorage = new ModelStorageSpec { SecretName = "minio-credentials" };
        string digest = new('a', 64);
        var resnet50 = variants.Single(v => v.Name == "resnet50");
        (resnet50.ModelUri, resnet50.Sha256) = ("https://models.example.com/zoo/resnet50.onnx", digest);
        InferencePipelineValidator.Validate(pipeline);
        var plan = new PipelinePlan(pipeline.Metadata.Name, null,
            [new StagePlan("classify", [new Allocation("resnet18", "cpu", 2, 1, 20), new Allocation("resnet34", "cpu", 1, 1, 20), new Allocation("resnet50", "gpu", 1, 4, 20)])]);
        var settings = new WorkloadSettings("registry/adaptive-server:1.0", TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(20), "registry/adaptive-server-gpu:1.0");
        var allocations = DesiredState.Allocations(pipeline, plan, settings);
        string Model(k8s.Models.V1Container container) => container.Env.Single(e => e.Name == "ADAPTIVE_MODEL").Value;

        var claimPod = allocations.Single(a => a.Allocation.Variant == "resnet18").Deployment.Spec.Template.Spec;
        Assert.Null(claimPod.InitContainers);
        var claim = claimPod.Volumes.Single(v => v.Name == "model").PersistentVolumeClaim;
        Assert.Equal(("model-store", true), (claim.ClaimName, claim.ReadOnlyProperty == true));
        Assert.Contains(claimPod.Containers[0].VolumeMounts, m => m.Name == "model" && m.MountPath == "/mnt/model-claim" && m.ReadOnlyProperty == true);
        Assert.Equal("/mnt/model-claim/zoo/resnet18.onnx", Model(claimPod.Containers[0]));

        var downloadPod = allocations.Single(a => a.Allocation.Variant == "resnet50").Deployment.Spec.Template.Spec;
        var fetch = Assert.Single(downloadPod.InitContainers);
        Assert.Equal("registry/adaptive-server-gpu:1.0", fetch.Image); // the server's own image, its own command
        Assert.Equal(["fetch-model", "--uri", "https://models.example.com/zoo/resnet50.onnx", "--sha256", digest, "--out", "/mnt/model/model.onnx"], fetch.Args);
        Assert.NotNull(downloadPod.Volumes.Single(v => v.Name == "model").EmptyDir);
        Assert.Contains(downloadPod.Containers[0].VolumeMounts, m => m.Name == "model" && m.MountPath == "/mnt/model" && m.ReadOnlyProperty == true);
        Assert.Equal("/mnt/model/model.onnx", Model(downloadPod.Containers[0]));
        Assert.Null(fetch.EnvFrom);

        // An S3 object: the same init container, its digest unchecked when not given, the storage Secret as its environment.
        var s3Pod = allocations.Single(a => a.Allocation.Variant == "resnet34").Deployment.Spec.Template.Spec;
        var s3Fetch = Assert.Single(s3Pod.InitContainers);
        Assert.Equal(["fetch-model", "--uri", "s3://model-bucket/zoo/resnet34.onnx", "--out", "/mnt/model/model.onnx"], s3Fetch.Args);
        Assert.Equal("minio-credentials", Assert.Single(s3Fetch.EnvFrom).SecretRef.Name);

        string file = Path.Combine(directory, "model-sources.yaml");
        File.WriteAllText(file, string.Join("\n---\n", allocations.SelectMany(a => new object[] { a.Deployment, a.Service }).Append(pipeline).Select(o => KubernetesYaml.Serialize(o))));
        var result = K8sValidate.Run(RepoPaths.Of("crds"), file);
        Assert.True(result.ExitCode == 0, result.Output);
        Assert.Contains("9 valid", result.Output); // the two CRDs, the pipeline, three Deployments and their Services

        string at = $"spec.stages[0].variants[{variants.IndexOf(resnet50)}]";
        void Refused(string uri, string? sha256, string field, string message)
        {
            (resnet50.ModelUri, resnet50.Sha256) = (uri, sha256);
            var refused = Assert.Throws<PlanningInputException>(() => InferencePipelineValidator.Validate(pipeline));
            Assert.Contains(field, refused.Message);
            Assert.Contains(message, refused.Message);
        }
        Refused("gs://bucket/resnet50.onnx", null, $"{at}.modelUri", "the scheme 'gs' is not served; use file:///path, pvc://claim/path, https://host/path or s3://bucket/key");
        Refused("s3://Models_Bucket/resnet50.onnx", null, $"{at}.modelUri", "is not an S3 bucket name");
        Refused("s3://models", null, $"{at}.modelUri", "names no object");
        Refused("https://models.example.com/resnet50.onnx", null, $"{at}.sha256", "is required for an https:// modelUri");
        Refused("https://models.example.com/resnet50.onnx", "ABC", $"{at}.sha256", "must be 64 lowercase hexadecimal digits");
        Refused("file:///models/resnet50.onnx", digest, $"{at}.sha256", "is checked on https:// and s3:// downloads only");
        Refused("pvc://model-store", null, $"{at}.modelUri", "names no file on the claim");
        Refused("pvc://Model_Store/resnet50.onnx", null, $"{at}.modelUri", "is not a PersistentVolumeClaim name");
    }

    /// <summary>A sample pipeline as the API server would hand it to the operator: in a namespace, with a uid for owner references.</summary>
    static InferencePipeline Sample(string file)
    {
        var pipeline = ManifestReader.Parse(File.ReadAllText(RepoPaths.Of("samples", file)));
        pipeline.Metadata.Namespace = "ml";
        pipeline.Metadata.Uid = "6f1c1d52-4b7e-4a53-9a2e-0b7a4f0c2d11";
        return pipeline;
    }

    public void Dispose() => Directory.Delete(directory, recursive: true);
}
