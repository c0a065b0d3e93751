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

    public void Dispose() => Directory.Delete(directory, recursive: true);
}
