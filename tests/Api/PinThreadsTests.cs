using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Planning;
using Adaptive.Experiments.Manifests;
using Adaptive.Operator.Reconciliation;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Api;

/// <summary>A hardware class's <c>pinThreads</c>: what it requires of the replicas' resources, and what the operator passes on.</summary>
public sealed class PinThreadsTests
{
    /// <summary>The video sample (2 CPUs, requests equal to limits) with its one hardware class pinned.</summary>
    static InferencePipeline PinnedVideo()
    {
        var pipeline = ManifestReader.Parse(File.ReadAllText(RepoPaths.Of("samples", "video-pipeline.yaml")));
        pipeline.Spec.HardwareClasses[0].PinThreads = true;
        return pipeline;
    }

    static Dictionary<string, string> ModelServerEnvironment(InferencePipeline pipeline)
    {
        var plan = new CpSatPlanner().Plan(PlanningProblem.Single(PlanningProblemBuilder.Build(pipeline, 20, []))).Pipelines[0];
        var settings = new WorkloadSettings("ghcr.io/example/adaptive-server:1.0", TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(20));
        var allocations = DesiredState.Allocations(pipeline, plan, settings);
        Assert.NotEmpty(allocations);
        var environments = allocations.Select(a => a.Deployment.Spec.Template.Spec.Containers.Single().Env.ToDictionary(e => e.Name, e => e.Value)).ToList();
        Assert.All(environments, e => Assert.Equal(environments[0].GetValueOrDefault("ADAPTIVE_PIN_THREADS"), e.GetValueOrDefault("ADAPTIVE_PIN_THREADS")));
        return environments[0];
    }

    [Fact]
    public void Replicas_of_a_pinned_class_are_told_to_pin_their_threads()
    {
        var pinned = PinnedVideo();
        InferencePipelineValidator.Validate(pinned);
        Assert.Equal("true", ModelServerEnvironment(pinned)["ADAPTIVE_PIN_THREADS"]);

        pinned.Spec.HardwareClasses[0].PinThreads = false;
        Assert.False(ModelServerEnvironment(pinned).ContainsKey("ADAPTIVE_PIN_THREADS"));
    }

    [Fact]
    public void Whole_cpus_in_millicores_are_whole_cpus()
    {
        var pipeline = PinnedVideo();
        var resources = pipeline.Spec.HardwareClasses[0].Resources!;
        resources.Limits!["cpu"] = "2000m";
        resources.Requests!["cpu"] = "2";
        InferencePipelineValidator.Validate(pipeline);
    }

    public static TheoryData<string, string> NotOwnCpus() => new()
    {
        { "fractional-cpu", "spec.hardwareClasses[0].resources.limits.cpu: must be a whole number of CPUs, got '1500m': spec.hardwareClasses[0].pinThreads needs" },
        { "no-cpu-limit", "spec.hardwareClasses[0].resources.limits.cpu: must be a whole number of CPUs, got none" },
        { "cpu-request-below-limit", "spec.hardwareClasses[0].resources.requests.cpu: must equal limits.cpu (2), got '1'" },
        { "no-memory-limit", "spec.hardwareClasses[0].resources.limits.memory: is required" },
        { "memory-request-below-limit", "spec.hardwareClasses[0].resources.requests.memory: must equal limits.memory (2Gi), got '1Gi'" },
        { "profile-resources", "spec.stages[0].variants[1].profiles[0].resources.limits.cpu: must be a whole number of CPUs, got '0.5'" },
        { "more-threads-than-cpus", "spec.stages[1].variants[0].profiles[0].threads: 4 threads cannot each have one of the replica's 2 CPUs" },
    };

    [Theory]
    [MemberData(nameof(NotOwnCpus))]
    public void A_pinned_class_needs_whole_cpus_of_a_guaranteed_pod(string mistake, string message)
    {
        var pipeline = PinnedVideo();
        var resources = pipeline.Spec.HardwareClasses[0].Resources!;
        switch (mistake)
        {
            case "fractional-cpu": resources.Limits!["cpu"] = "1500m"; resources.Requests!["cpu"] = "1500m"; break;
            case "no-cpu-limit": resources.Limits!.Remove("cpu"); break;
            case "cpu-request-below-limit": resources.Requests!["cpu"] = "1"; break;
            case "no-memory-limit": resources.Limits!.Remove("memory"); break;
            case "memory-request-below-limit": resources.Requests!["memory"] = "1Gi"; break;
            case "profile-resources":
                pipeline.Spec.Stages[0].Variants[1].Profiles[0].Resources = new ResourcesSpec { Limits = new() { ["cpu"] = "0.5", ["memory"] = "1Gi" } };
                break;
            case "more-threads-than-cpus": pipeline.Spec.Stages[1].Variants[0].Profiles[0].Threads = 4; break;
        }
        var error = Assert.Throws<PlanningInputException>(() => InferencePipelineValidator.Validate(pipeline));
        Assert.StartsWith(message, error.Message);
    }
}
