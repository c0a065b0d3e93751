using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Tests.Kubernetes;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Operator;

/// <summary>
/// The README's flow, driven by the real kubectl against the API server double with the operator running:
/// apply the CRD and the samples, list them with their printer columns, describe one with its conditions
/// and events, delete them and watch their children go.
/// </summary>
[Collection("serving")]
public sealed class KubectlFlowTests
{
    static readonly CancellationToken Cancel = TestContext.Current.CancellationToken;

    [Fact]
    public async Task Kubectl_applies_lists_describes_and_deletes_pipelines()
    {
        Kubectl.SkipUnlessInstalled();
        await using var harness = await OperatorHarness.Start(installCrds: false);
        string kubeconfig = Path.Combine(harness.Directory, "kubectl-config");
        harness.Api.Credentials.WriteKubeconfig(kubeconfig, harness.Api.Address, ClusterCredentials.Login.Token, OperatorHarness.Namespace);
        var kubectl = new Kubectl(kubeconfig);

        // Two commands, as on a real cluster: kubectl maps every object of one command to its kind before
        // creating any, so the pipelines of a command that also creates their CRD are not yet known.
        var crd = await kubectl.Run("apply", "-f", "crds/");
        Assert.True(crd.ExitCode == 0, crd.Output);
        Assert.Contains("customresourcedefinition.apiextensions.k8s.io/inferencepipelines.adaptive.dev created", crd.Stdout);
        var apply = await kubectl.Run("apply", "-f", "samples/");
        Assert.True(apply.ExitCode == 0, apply.Output);
        Assert.Contains("inferencepipeline.adaptive.dev/video created", apply.Stdout);
        Assert.Contains("inferencepipeline.adaptive.dev/resnet-mixed created", apply.Stdout);
        Assert.Contains("inferencepool.adaptive.dev/gpus created", apply.Stdout);

        foreach (var name in new[] { "video", "resnet-mixed" })
            await OperatorHarness.Eventually(() => harness.Pipeline(name),
                p => p.Status?.Conditions.Any(c => c.Type == PipelineCondition.Ready && c.Status == "True") == true, $"{name} to be Ready", seconds: 60);

        var get = await kubectl.Run("get", "ipl");
        Assert.True(get.ExitCode == 0, get.Output);
        var lines = get.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(["NAME", "CONFIGURATION", "LOAD", "SLO-MS", "READY", "AGE"], lines[0].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        var video = lines.Single(l => l.StartsWith("video ", StringComparison.Ordinal));
        var status = (await harness.Pipeline("video")).Status!;
        Assert.Contains(status.Summary!, video);
        Assert.Contains(" True ", video);

        // The sample pool: no Node matches its selector here, and no pipeline names it.
        await OperatorHarness.Eventually(() => kubectl.Run("get", "ipool"), r => r.Stdout.Contains("gpus "), "the pool's status", seconds: 30);
        var pools = (await kubectl.Run("get", "ipool")).Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(["NAME", "CAPACITY", "ALLOCATED", "UNSCHEDULABLE", "AGE"], pools[0].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(["gpus", "0", "0"], pools[1].Split(' ', StringSplitOptions.RemoveEmptyEntries)[..3]);

        var describe = await kubectl.Run("describe", "ipl", "video");
        Assert.True(describe.ExitCode == 0, describe.Output);
        foreach (var text in new[] { "Name:         video", "Conditions:", "Type:", "SLOFeasible", "Events:", "Reconfigured", "adaptive-operator" })
            Assert.Contains(text, describe.Stdout);

        var delete = await kubectl.Run("delete", "-f", "samples/");
        Assert.True(delete.ExitCode == 0, delete.Output);
        Assert.Contains("inferencepipeline.adaptive.dev \"video\" deleted", delete.Stdout);
        await OperatorHarness.Eventually(() => Task.FromResult(new[] { "deployments", "services", "configmaps" }.Sum(kind => harness.Api.List(kind, OperatorHarness.Namespace).Count)),
            count => count == 0, "the pipelines' children to be collected");
        var empty = await kubectl.Run("get", "ipl");
        Assert.Contains("No resources found in ml namespace.", empty.Output);
    }
}
