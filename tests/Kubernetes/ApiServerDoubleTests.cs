using System.Net;
using System.Text.Json;
using k8s;
using k8s.Autorest;
using k8s.Models;

namespace Adaptive.Tests.Kubernetes;

/// <summary>
/// The API server double keeps the semantics the operator relies on, checked through KubernetesClient
/// over HTTPS exactly as the operator reaches a cluster; ApiServerDoubleTests.Strictness.cs checks each way
/// it is as strict as kube-apiserver.
/// </summary>
public sealed partial class ApiServerDoubleTests : IAsyncLifetime
{
    static readonly CancellationToken Cancel = TestContext.Current.CancellationToken;
    ApiServerDouble api = null!;
    k8s.Kubernetes client = null!;

    public async ValueTask InitializeAsync()
    {
        api = await ApiServerDouble.Start();
        client = new k8s.Kubernetes(api.ClientConfiguration());
    }

    public async ValueTask DisposeAsync()
    {
        client.Dispose();
        await api.DisposeAsync();
    }

    static V1ConfigMap ConfigMap(string name, string value, V1OwnerReference? owner = null) => new()
    {
        Metadata = new V1ObjectMeta { Name = name, Labels = new Dictionary<string, string> { ["app"] = "demo" }, OwnerReferences = owner is null ? null : [owner] },
        Data = new Dictionary<string, string> { ["value"] = value },
    };

    [Fact]
    public async Task Crud_with_resource_versions_conflicts_and_labels()
    {
        var created = await client.CoreV1.CreateNamespacedConfigMapAsync(ConfigMap("a", "1"), "ns", cancellationToken: Cancel);
        Assert.NotNull(created.Metadata.Uid);
        Assert.Equal(HttpStatusCode.Conflict, (await Refusal(() => client.CoreV1.CreateNamespacedConfigMapAsync(ConfigMap("a", "1"), "ns", cancellationToken: Cancel))).Code);

        created.Data["value"] = "2";
        var updated = await client.CoreV1.ReplaceNamespacedConfigMapAsync(created, "a", "ns", cancellationToken: Cancel);
        Assert.True(long.Parse(updated.Metadata.ResourceVersion) > long.Parse(created.Metadata.ResourceVersion));
        // The same stale object again: 409, the optimistic concurrency every controller must handle.
        Assert.Equal(HttpStatusCode.Conflict, (await Refusal(() => client.CoreV1.ReplaceNamespacedConfigMapAsync(created, "a", "ns", cancellationToken: Cancel))).Code);

        var patched = await client.CoreV1.PatchNamespacedConfigMapAsync(new V1Patch("{\"data\":{\"other\":\"x\"}}", V1Patch.PatchType.MergePatch), "a", "ns", cancellationToken: Cancel);
        Assert.Equal(["other", "value"], patched.Data.Keys.Order());

        await client.CoreV1.CreateNamespacedConfigMapAsync(ConfigMap("b", "1"), "other-ns", cancellationToken: Cancel);
        Assert.Single((await client.CoreV1.ListNamespacedConfigMapAsync("ns", cancellationToken: Cancel)).Items);
        Assert.Equal(2, (await client.CoreV1.ListConfigMapForAllNamespacesAsync(labelSelector: "app=demo", cancellationToken: Cancel)).Items.Count);
        Assert.Empty((await client.CoreV1.ListConfigMapForAllNamespacesAsync(labelSelector: "app=other", cancellationToken: Cancel)).Items);

        await client.CoreV1.DeleteNamespacedConfigMapAsync("a", "ns", cancellationToken: Cancel);
        Assert.Equal(HttpStatusCode.NotFound, (await Refusal(() => client.CoreV1.ReadNamespacedConfigMapAsync("a", "ns", cancellationToken: Cancel))).Code);
    }

    [Fact]
    public async Task Server_side_apply_creates_then_merges_and_owner_deletion_collects_dependents()
    {
        var deployment = new V1Deployment
        {
            ApiVersion = "apps/v1", Kind = "Deployment",
            Metadata = new V1ObjectMeta { Name = "owner" },
            Spec = new V1DeploymentSpec { Replicas = 2, Selector = new V1LabelSelector { MatchLabels = new Dictionary<string, string> { ["a"] = "b" } }, Template = new V1PodTemplateSpec() },
        };
        var applied = await client.AppsV1.PatchNamespacedDeploymentAsync(new V1Patch(deployment, V1Patch.PatchType.ApplyPatch), "owner", "ns", fieldManager: "test", force: true, cancellationToken: Cancel);
        Assert.Equal(2, applied.Spec.Replicas);
        Assert.Equal(1, applied.Metadata.Generation);
        deployment.Spec.Replicas = 3;
        var reapplied = await client.AppsV1.PatchNamespacedDeploymentAsync(new V1Patch(deployment, V1Patch.PatchType.ApplyPatch), "owner", "ns", fieldManager: "test", force: true, cancellationToken: Cancel);
        Assert.Equal(3, reapplied.Spec.Replicas);
        Assert.Equal(2, reapplied.Metadata.Generation);

        // Status is a subresource: written on its own, and it does not bump the generation.
        var status = await client.AppsV1.PatchNamespacedDeploymentStatusAsync(new V1Patch("{\"status\":{\"readyReplicas\":3}}", V1Patch.PatchType.MergePatch), "owner", "ns", cancellationToken: Cancel);
        Assert.Equal(3, status.Status.ReadyReplicas);
        Assert.Equal(2, status.Metadata.Generation);

        var owner = new V1OwnerReference { ApiVersion = "apps/v1", Kind = "Deployment", Name = "owner", Uid = reapplied.Metadata.Uid, Controller = true };
        await client.CoreV1.CreateNamespacedConfigMapAsync(ConfigMap("child", "1", owner), "ns", cancellationToken: Cancel);
        await client.CoreV1.CreateNamespacedConfigMapAsync(ConfigMap("unrelated", "1"), "ns", cancellationToken: Cancel);
        await client.AppsV1.DeleteNamespacedDeploymentAsync("owner", "ns", cancellationToken: Cancel);
        // The garbage collector is asynchronous, as a cluster's is: the child goes a moment later.
        for (int i = 0; i < 100 && api.List("configmaps", "ns").Count > 1; i++) await Task.Delay(50, Cancel);
        Assert.Equal(["unrelated"], (await client.CoreV1.ListNamespacedConfigMapAsync("ns", cancellationToken: Cancel)).Items.Select(c => c.Metadata.Name));
    }

    /// <summary>A watch from a resourceVersion sees exactly what came after it; after compaction, 410 Gone.</summary>
    [Fact]
    public async Task Watch_resumes_from_a_resource_version_and_answers_gone_when_compacted()
    {
        var first = await client.CoreV1.CreateNamespacedConfigMapAsync(ConfigMap("a", "1"), "ns", cancellationToken: Cancel);
        await client.CoreV1.CreateNamespacedConfigMapAsync(ConfigMap("b", "1"), "ns", cancellationToken: Cancel);
        await client.CoreV1.DeleteNamespacedConfigMapAsync("a", "ns", cancellationToken: Cancel);

        var events = await ReadWatch($"/api/v1/namespaces/ns/configmaps?watch=true&resourceVersion={first.Metadata.ResourceVersion}&timeoutSeconds=1");
        Assert.Equal(["ADDED b", "DELETED a"], events.Select(e => $"{e.GetProperty("type").GetString()} {e.GetProperty("object").GetProperty("metadata").GetProperty("name").GetString()}"));

        api.Compact();
        var gone = await ReadWatch($"/api/v1/namespaces/ns/configmaps?watch=true&resourceVersion={first.Metadata.ResourceVersion}");
        var error = Assert.Single(gone);
        Assert.Equal("ERROR", error.GetProperty("type").GetString());
        Assert.Equal(410, error.GetProperty("object").GetProperty("code").GetInt32());
    }

    [Fact]
    public async Task Injected_failures_and_dropped_watches()
    {
        api.FailNext(2);
        Assert.Equal(HttpStatusCode.InternalServerError, (await Refusal(() => client.CoreV1.ListNamespacedConfigMapAsync("ns", cancellationToken: Cancel))).Code);
        Assert.Equal(HttpStatusCode.InternalServerError, (await Refusal(() => client.CoreV1.ListNamespacedConfigMapAsync("ns", cancellationToken: Cancel))).Code);
        Assert.Empty((await client.CoreV1.ListNamespacedConfigMapAsync("ns", cancellationToken: Cancel)).Items);

        using var http = api.HttpClient();
        using var response = await http.GetAsync("/api/v1/namespaces/ns/configmaps?watch=true&resourceVersion=1000", HttpCompletionOption.ResponseHeadersRead, Cancel);
        var reading = new StreamReader(await response.Content.ReadAsStreamAsync(Cancel)).ReadToEndAsync(Cancel);
        for (int i = 0; i < 50 && api.OpenWatches == 0; i++) await Task.Delay(20, Cancel);
        Assert.Equal(1, api.OpenWatches);
        api.DropWatches();
        Assert.Equal("", await reading.WaitAsync(TimeSpan.FromSeconds(5), Cancel));
    }

    async Task<List<JsonElement>> ReadWatch(string path)
    {
        using var http = api.HttpClient();
        string text = await http.GetStringAsync(path, Cancel);
        return [.. text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement.Clone())];
    }
}
