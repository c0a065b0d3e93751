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
        var pipeline = ManifestReader.Parse(File.ReadAllText(RepoPaths.Of("samples", sample)));
        pipeline.Metadata.Namespace = "ml";
        pipeline.Metadata.Uid = "6f1c1d52-4b7e-4a53-9a2e-0b7a4f0c2d11";
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
    /// A class whose replicas request <c>nvidia.com/gpu</c> runs the GPU image with <c>--device cuda</c> (the server
    /// exits rather than serve on the CPU); a CPU class the model-server image with <c>--device cpu</c>; a class's
    /// own image wins. The pipeline with a class image and the objects validate against the CRD and upstream schemas.
    /// </summary>
    [Fact]
    public void Each_hardware_class_runs_its_image_and_gpu_classes_require_cuda()
    {
        var pipeline = ManifestReader.Parse(File.ReadAllText(RepoPaths.Of("samples", "resnet-mixed.yaml")));
        pipeline.Metadata.Namespace = "ml";
        pipeline.Metadata.Uid = "6f1c1d52-4b7e-4a53-9a2e-0b7a4f0c2d11";
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
        Assert.Contains("6 valid", result.Output); // the CRD, the pipeline, two Deployments and their Services

        pipeline.Spec.HardwareClasses[0].Image = "registry/adaptive server";
        var bad = Assert.Throws<PlanningInputException>(() => InferencePipelineValidator.Validate(pipeline));
        Assert.Contains("spec.hardwareClasses[0].image", bad.Message);
    }

    public void Dispose() => Directory.Delete(directory, recursive: true);
}
