using System.Text.Json.Nodes;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Operator.Reconciliation;
using Adaptive.Tests.Support;
using k8s;
using k8s.Models;

namespace Adaptive.Tests.Operator;

/// <summary>
/// What a real cluster asks of the operator and the strict API server double now asks too: credentials on
/// every request, quantities and names as the API server has them, deletion that takes its time.
/// </summary>
[Collection("serving")]
public sealed class RealClusterTests
{
    static readonly CancellationToken Cancel = TestContext.Current.CancellationToken;

    static Task<InferencePipeline> Ready(OperatorHarness harness, string name) =>
        OperatorHarness.Eventually(() => harness.Pipeline(name),
            p => p.Status?.Conditions.Any(c => c.Type == PipelineCondition.Ready && c.Status == "True") == true, $"{name} to be Ready");

    /// <summary>
    /// Every way a user's operator finds its cluster: a kubeconfig with a token (--kubeconfig), with a client
    /// certificate (KUBECONFIG, beside a missing file), with an exec plugin, and a pod's service account. The
    /// double answers 401 to any request without credentials, the watches included.
    /// </summary>
    [Theory]
    [InlineData(OperatorHarness.Login.KubeconfigToken)]
    [InlineData(OperatorHarness.Login.KubeconfigClientCertificate)]
    [InlineData(OperatorHarness.Login.KubeconfigExecPlugin)]
    [InlineData(OperatorHarness.Login.InCluster)]
    public async Task The_operator_reconciles_through_every_kind_of_credentials(OperatorHarness.Login login)
    {
        await using var harness = await OperatorHarness.Start(login: login);
        await harness.Create(OperatorHarness.Sample("video-pipeline.yaml"));
        await Ready(harness, "video");

        // And its watches work: a deleted child comes back.
        string victim = harness.Api.List("deployments", OperatorHarness.Namespace).First()["metadata"]!["name"]!.GetValue<string>();
        await harness.Client.AppsV1.DeleteNamespacedDeploymentAsync(victim, OperatorHarness.Namespace, cancellationToken: Cancel);
        await OperatorHarness.Eventually(() => Task.FromResult(harness.Api.List("deployments", OperatorHarness.Namespace)),
            list => list.Any(d => d["metadata"]!["name"]!.GetValue<string>() == victim), "the deleted Deployment to come back");
    }

    /// <summary>
    /// <c>cpu: 2</c> written unquoted comes back from the API server as a JSON number (the CRD says
    /// int-or-string); the pipeline is read and its replicas get the quantities.
    /// </summary>
    [Fact]
    public async Task Quantities_written_as_numbers_are_read()
    {
        await using var harness = await OperatorHarness.Start();
        var sample = OperatorHarness.Sample("video-pipeline.yaml");
        var cpu = sample["spec"]!["hardwareClasses"]!.AsArray().Single(c => c!["name"]!.GetValue<string>() == "cpu")!;
        cpu["resources"] = new JsonObject
        {
            ["requests"] = new JsonObject { ["cpu"] = 2, ["memory"] = "4Gi" },
            ["limits"] = new JsonObject { ["cpu"] = 2, ["memory"] = "4Gi" },
        };
        await harness.Create(sample);
        var stored = harness.Api.List("inferencepipelines", OperatorHarness.Namespace).Single();
        Assert.Equal(System.Text.Json.JsonValueKind.Number, stored["spec"]!["hardwareClasses"]![0]!["resources"]!["requests"]!["cpu"]!.GetValueKind());

        await Ready(harness, "video");
        var onCpu = harness.Api.List("deployments", OperatorHarness.Namespace)
            .Where(d => d["metadata"]!["labels"]![Names.HardwareClass]?.GetValue<string>() == "cpu").ToList();
        Assert.NotEmpty(onCpu);
        foreach (var deployment in onCpu)
            Assert.Equal("2", deployment["spec"]!["template"]!["spec"]!["containers"]![0]!["resources"]!["limits"]!["cpu"]!.GetValue<string>());
    }

    /// <summary>
    /// Valid pipeline names that are not valid Service names or label values: a leading digit, and the
    /// longest name the API server takes (253 characters, with dots). Every child, label and Event is accepted.
    /// </summary>
    [Theory]
    [InlineData("1-video")]
    [InlineData("long")]
    public async Task Pipelines_whose_names_are_no_service_names_or_label_values_get_their_children(string kind)
    {
        string name = kind == "long" ? string.Join('.', Enumerable.Repeat(new string('v', 63), 4))[..253].TrimEnd('.') : kind;
        Assert.True(name.Length >= 252 || name == "1-video");
        await using var harness = await OperatorHarness.Start();
        var sample = OperatorHarness.Sample("video-pipeline.yaml");
        sample["metadata"]!["name"] = name;
        await harness.Create(sample);
        await Ready(harness, name);
        var services = harness.Api.List("services", OperatorHarness.Namespace);
        Assert.Equal(harness.Api.List("deployments", OperatorHarness.Namespace).Count, services.Count); // one per model server, and the router's
        Assert.Single(services, s => s["metadata"]!["name"]!.GetValue<string>() == Names.Dns(name));
        Assert.All(harness.Api.List("deployments", OperatorHarness.Namespace),
            d => Assert.Equal(Names.LabelValue(name), d["metadata"]!["labels"]![Names.Pipeline]!.GetValue<string>()));
        Assert.Contains("Reconfigured", harness.Api.List("events", OperatorHarness.Namespace).Select(e => e["reason"]!.GetValue<string>()));
    }

    /// <summary>
    /// A pipeline held by a finalizer (another controller's) is deleted in the foreground: while it lingers
    /// with a deletion timestamp the operator writes nothing for it, and the garbage collector takes its
    /// children and then the pipeline itself once the finalizer is gone.
    /// </summary>
    [Fact]
    public async Task A_pipeline_being_deleted_is_left_to_the_garbage_collector()
    {
        await using var harness = await OperatorHarness.Start();
        var sample = OperatorHarness.Sample("video-pipeline.yaml");
        sample["metadata"]!["finalizers"] = new JsonArray("example.com/backup");
        await harness.Create(sample);
        await Ready(harness, "video");

        await harness.Client.CustomObjects.DeleteNamespacedCustomObjectAsync(InferencePipeline.Group, InferencePipeline.Version, OperatorHarness.Namespace,
            InferencePipeline.Plural, "video", body: new V1DeleteOptions { PropagationPolicy = "Foreground" }, cancellationToken: Cancel);
        int writesBefore = harness.Api.Writes.Count;
        await OperatorHarness.Eventually(() => Task.FromResult(harness.Api.List("deployments", OperatorHarness.Namespace).Count), count => count == 0,
            "the collector to delete the children");
        await Task.Delay(TimeSpan.FromSeconds(3), Cancel); // past an adaptation interval (2 s)
        var pipeline = await harness.Pipeline("video");
        Assert.NotNull(pipeline.Metadata.DeletionTimestamp);
        Assert.Empty(harness.Api.List("deployments", OperatorHarness.Namespace)); // not applied again
        var operatorWrites = harness.Api.Writes.Skip(writesBefore).Where(w => !w.StartsWith("DELETE", StringComparison.Ordinal)).ToList();
        Assert.True(operatorWrites.Count == 0, string.Join("\n", operatorWrites));

        // The other controller lets go: the pipeline is gone.
        await harness.Client.CustomObjects.PatchNamespacedCustomObjectAsync(new V1Patch("{\"metadata\":{\"finalizers\":null}}", V1Patch.PatchType.MergePatch),
            InferencePipeline.Group, InferencePipeline.Version, OperatorHarness.Namespace, InferencePipeline.Plural, "video", cancellationToken: Cancel);
        await OperatorHarness.Eventually(() => Task.FromResult(harness.Api.List("inferencepipelines", OperatorHarness.Namespace).Count + harness.Api.List("services", OperatorHarness.Namespace).Count),
            count => count == 0, "the pipeline and its Services to be gone");
    }

    /// <summary>
    /// Children are owned with blockOwnerDeletion, which clusters enforcing owner-reference permissions allow
    /// only to a user who may update the owner's finalizers: the chart's ClusterRole grants it.
    /// </summary>
    [Fact]
    public void The_chart_grants_what_blocking_owner_references_need()
    {
        var pipeline = Adaptive.Experiments.Manifests.ManifestReader.Parse(File.ReadAllText(RepoPaths.Of("samples", "video-pipeline.yaml")));
        pipeline.Metadata.Namespace = "ml";
        pipeline.Metadata.Uid = "6f1c1d52-4b7e-4a53-9a2e-0b7a4f0c2d11";
        var (router, _) = DesiredState.Router(pipeline, new WorkloadSettings("image", TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(20)));
        Assert.True(router.Metadata.OwnerReferences.Single().BlockOwnerDeletion);

        Assert.SkipWhen(HelmTemplate.Binary is null, HelmTemplate.Missing);
        string rendered = HelmTemplate.Render(RepoPaths.Of("helm", "adaptive"), "adaptive", "adaptive-system");
        var role = YamlJson.Documents(rendered).Single(d => d["kind"]?.GetValue<string>() == "ClusterRole" && d["metadata"]!["name"]!.GetValue<string>() == "adaptive-operator");
        Assert.Contains(role["rules"]!.AsArray(), rule =>
            rule!["apiGroups"]!.AsArray().Any(g => g!.GetValue<string>() == InferencePipeline.Group)
            && rule["resources"]!.AsArray().Any(r => r!.GetValue<string>() == $"{InferencePipeline.Plural}/finalizers")
            && rule["verbs"]!.AsArray().Any(v => v!.GetValue<string>() == "update"));
    }
}
