using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Tests.Support;
using k8s;
using k8s.Autorest;
using k8s.Models;

namespace Adaptive.Tests.Kubernetes;

// Each way the API server double is as strict as kube-apiserver, checked on its own: what a real server
// would refuse, it refuses in the same words and shape; what it would change, it changes.
public sealed partial class ApiServerDoubleTests
{
    static async Task<(HttpStatusCode Code, JsonObject Status)> Refusal(Func<Task> call)
    {
        var e = await Assert.ThrowsAsync<HttpOperationException>(call);
        return (e.Response.StatusCode, JsonNode.Parse(e.Response.Content)!.AsObject());
    }

    /// <summary>The video sample as kubectl would send it, under another name.</summary>
    static JsonObject Pipeline(string name = "video")
    {
        var sample = YamlJson.Documents(File.ReadAllText(RepoPaths.Of("samples", "video-pipeline.yaml"))).Single();
        sample["metadata"] = new JsonObject { ["name"] = name, ["namespace"] = "ml" };
        return sample;
    }

    Task<object> CreatePipeline(JsonObject pipeline) =>
        client.CustomObjects.CreateNamespacedCustomObjectAsync(pipeline, InferencePipeline.Group, InferencePipeline.Version, "ml", InferencePipeline.Plural, cancellationToken: Cancel);

    [Fact]
    public async Task Requests_without_credentials_from_this_cluster_get_401()
    {
        using var anonymous = api.HttpClient(authenticated: false);
        using var answer = await anonymous.GetAsync("/api/v1/namespaces/ml/configmaps", Cancel);
        Assert.Equal(HttpStatusCode.Unauthorized, answer.StatusCode);
        Assert.Equal("Unauthorized", JsonNode.Parse(await answer.Content.ReadAsStringAsync(Cancel))!["reason"]!.GetValue<string>());
        // A watch too: the operator's list-and-watch used to go out without the token.
        using var watch = await anonymous.GetAsync("/apis/apps/v1/deployments?watch=true", Cancel);
        Assert.Equal(HttpStatusCode.Unauthorized, watch.StatusCode);

        using var wrongToken = api.HttpClient(authenticated: false);
        wrongToken.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", "not-the-token");
        Assert.Equal(HttpStatusCode.Unauthorized, (await wrongToken.GetAsync("/api/v1/namespaces/ml/configmaps", Cancel)).StatusCode);

        // Plain HTTP is not served at all, and the server's certificate is only trusted through the cluster's CA.
        using var plain = new HttpClient();
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => plain.GetAsync(new Uri($"http://127.0.0.1:{api.Address.Port}/api"), Cancel));
        using var untrusting = new HttpClient();
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => untrusting.GetAsync(new Uri(api.Address, "/api"), Cancel));

        Assert.Empty((await client.CoreV1.ListNamespacedConfigMapAsync("ml", cancellationToken: Cancel)).Items); // the token works
    }

    [Fact]
    public async Task A_client_certificate_works_only_when_this_clusters_ca_issued_it()
    {
        string directory = Directory.CreateTempSubdirectory("adaptive-double-").FullName;
        try
        {
            string kubeconfig = Path.Combine(directory, "kubeconfig");
            api.Credentials.WriteKubeconfig(kubeconfig, api.Address, ClusterCredentials.Login.ClientCertificate);
            using var withCertificate = new k8s.Kubernetes(KubernetesClientConfiguration.BuildConfigFromConfigFile(kubeconfig));
            Assert.Empty((await withCertificate.CoreV1.ListNamespacedConfigMapAsync("ml", cancellationToken: Cancel)).Items);

            // The same kubeconfig with a certificate of a foreign CA (a fresh double's): 401.
            var foreign = new ClusterCredentials();
            foreign.WriteKubeconfig(kubeconfig, api.Address, ClusterCredentials.Login.ClientCertificate);
            var text = File.ReadAllText(kubeconfig);
            api.Credentials.WriteKubeconfig(Path.Combine(directory, "trusting"), api.Address, ClusterCredentials.Login.ClientCertificate);
            string ownCa = File.ReadAllLines(Path.Combine(directory, "trusting")).Single(l => l.Contains("certificate-authority-data", StringComparison.Ordinal));
            File.WriteAllLines(kubeconfig, text.Split('\n').Select(l => l.Contains("certificate-authority-data", StringComparison.Ordinal) ? ownCa : l));
            using var foreigner = new k8s.Kubernetes(KubernetesClientConfiguration.BuildConfigFromConfigFile(kubeconfig));
            Assert.Equal(HttpStatusCode.Unauthorized, (await Refusal(() => foreigner.CoreV1.ListNamespacedConfigMapAsync("ml", cancellationToken: Cancel))).Code);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>Written custom resources are pruned of unknown fields, defaulted and validated against the CRD's schema.</summary>
    [Fact]
    public async Task Custom_resources_are_pruned_defaulted_and_validated_against_the_crd()
    {
        var pipeline = Pipeline();
        pipeline["spec"]!["unknownField"] = "dropped";
        pipeline["spec"]!["stages"]![0]!["colour"] = "dropped too";
        pipeline["spec"]!.AsObject().Remove("adaptation");
        ((JsonObject)pipeline["spec"]!["stages"]![0]!).Remove("mode");
        pipeline["spec"]!["hardwareClasses"]![0]!["resources"] = new JsonObject { ["requests"] = new JsonObject { ["cpu"] = 2, ["memory"] = "4Gi" } };
        var stored = JsonSerializer.SerializeToNode(await CreatePipeline(pipeline))!;
        Assert.Null(stored["spec"]!["unknownField"]);
        Assert.Null(stored["spec"]!["stages"]![0]!["colour"]);
        Assert.Equal("single", stored["spec"]!["stages"]![0]!["mode"]!.GetValue<string>());
        Assert.Null(stored["spec"]!["adaptation"]); // defaults go only into objects that are there
        Assert.Equal(2, stored["spec"]!["hardwareClasses"]![0]!["resources"]!["requests"]!["cpu"]!.GetValue<int>()); // int-or-string keeps the number
        Assert.Equal(1, stored["metadata"]!["generation"]!.GetValue<long>());

        var invalid = Pipeline("broken");
        invalid["spec"]!["stages"]![0]!["maxReplicas"] = 0;
        invalid["spec"]!["stages"]![1]!["mode"] = "both";
        invalid["spec"]!["hardwareClasses"]![0]!["resources"] = new JsonObject { ["limits"] = new JsonObject { ["cpu"] = 0.5 } };
        ((JsonObject)invalid["spec"]!).Remove("sloMs");
        var (code, status) = await Refusal(() => CreatePipeline(invalid));
        Assert.Equal((HttpStatusCode)422, code);
        Assert.Equal(("Status", "Failure", "Invalid", 422), (status["kind"]!.GetValue<string>(), status["status"]!.GetValue<string>(), status["reason"]!.GetValue<string>(), status["code"]!.GetValue<int>()));
        Assert.StartsWith("InferencePipeline.adaptive.dev \"broken\" is invalid: [", status["message"]!.GetValue<string>());
        var fields = status["details"]!["causes"]!.AsArray().Select(c => c!["field"]!.GetValue<string>()).Order().ToList();
        Assert.Equal(["spec.hardwareClasses[0].resources.limits.cpu", "spec.sloMs", "spec.stages[0].maxReplicas", "spec.stages[1].mode"], fields);
        Assert.Contains("spec.stages[1].mode: Unsupported value: \"both\": supported values: \"single\", \"mixed\"", status["message"]!.GetValue<string>());

        // Status is validated too, through its subresource.
        var (statusCode, _) = await Refusal(() => client.CustomObjects.PatchNamespacedCustomObjectStatusAsync(new V1Patch("{\"status\":{\"planStatus\":\"great\"}}", V1Patch.PatchType.MergePatch),
            InferencePipeline.Group, InferencePipeline.Version, "ml", InferencePipeline.Plural, "video", cancellationToken: Cancel));
        Assert.Equal((HttpStatusCode)422, statusCode);
    }

    [Fact]
    public async Task Names_and_labels_are_validated_for_their_kind()
    {
        var service = new V1Service { Metadata = new V1ObjectMeta { Name = "1-video" }, Spec = new V1ServiceSpec { Ports = [new V1ServicePort { Port = 80 }] } };
        var (code, status) = await Refusal(() => client.CoreV1.CreateNamespacedServiceAsync(service, "ml", cancellationToken: Cancel));
        Assert.Equal((HttpStatusCode)422, code);
        Assert.Contains("metadata.name: Invalid value: \"1-video\": a DNS-1035 label", status["message"]!.GetValue<string>());
        // The same name is fine for a ConfigMap (a DNS-1123 subdomain) but not at 254 characters.
        await client.CoreV1.CreateNamespacedConfigMapAsync(new V1ConfigMap { Metadata = new V1ObjectMeta { Name = "1-video" } }, "ml", cancellationToken: Cancel);
        Assert.Equal((HttpStatusCode)422, (await Refusal(() => client.CoreV1.CreateNamespacedConfigMapAsync(new V1ConfigMap { Metadata = new V1ObjectMeta { Name = new string('a', 254) } }, "ml", cancellationToken: Cancel))).Code);
        Assert.Equal((HttpStatusCode)422, (await Refusal(() => CreatePipeline(Pipeline("Video")))).Code);

        var labelled = new V1ConfigMap { Metadata = new V1ObjectMeta { Name = "labelled", Labels = new Dictionary<string, string> { ["adaptive.dev/pipeline"] = new string('p', 64) } } };
        var (labelCode, labelStatus) = await Refusal(() => client.CoreV1.CreateNamespacedConfigMapAsync(labelled, "ml", cancellationToken: Cancel));
        Assert.Equal((HttpStatusCode)422, labelCode);
        Assert.Contains("must be no more than 63 characters", labelStatus["message"]!.GetValue<string>());
    }

    [Fact]
    public async Task Replacing_a_custom_resource_needs_its_resource_version()
    {
        var created = JsonSerializer.SerializeToNode(await CreatePipeline(Pipeline()))!.AsObject();
        var withoutVersion = (JsonObject)created.DeepClone();
        ((JsonObject)withoutVersion["metadata"]!).Remove("resourceVersion");
        var (code, status) = await Refusal(() => client.CustomObjects.ReplaceNamespacedCustomObjectAsync(withoutVersion, InferencePipeline.Group, InferencePipeline.Version, "ml", InferencePipeline.Plural, "video", cancellationToken: Cancel));
        Assert.Equal((HttpStatusCode)422, code);
        Assert.Contains("metadata.resourceVersion: Invalid value: 0x0: must be specified for an update", status["message"]!.GetValue<string>());

        created["spec"]!["sloMs"] = 900;
        await client.CustomObjects.ReplaceNamespacedCustomObjectAsync(created, InferencePipeline.Group, InferencePipeline.Version, "ml", InferencePipeline.Plural, "video", cancellationToken: Cancel);
        Assert.Equal(HttpStatusCode.Conflict, (await Refusal(() => client.CustomObjects.ReplaceNamespacedCustomObjectAsync(created, InferencePipeline.Group, InferencePipeline.Version, "ml", InferencePipeline.Plural, "video", cancellationToken: Cancel))).Code);
    }

    /// <summary>Generation: kept by Deployments and custom resources and bumped by spec changes only; Services and ConfigMaps have none.</summary>
    [Fact]
    public async Task Generation_is_kept_only_where_the_real_server_keeps_it()
    {
        await CreatePipeline(Pipeline());
        var path = (InferencePipeline.Group, InferencePipeline.Version, "ml", InferencePipeline.Plural, "video");
        async Task<long> Generation() => JsonSerializer.SerializeToNode(await client.CustomObjects.GetNamespacedCustomObjectAsync(path.Group, path.Version, path.Item3, path.Plural, path.Item5, Cancel))!["metadata"]!["generation"]!.GetValue<long>();
        await client.CustomObjects.PatchNamespacedCustomObjectAsync(new V1Patch("{\"metadata\":{\"labels\":{\"team\":\"a\"}}}", V1Patch.PatchType.MergePatch), path.Group, path.Version, path.Item3, path.Plural, path.Item5, cancellationToken: Cancel);
        await client.CustomObjects.PatchNamespacedCustomObjectStatusAsync(new V1Patch("{\"status\":{\"summary\":\"x\"}}", V1Patch.PatchType.MergePatch), path.Group, path.Version, path.Item3, path.Plural, path.Item5, cancellationToken: Cancel);
        Assert.Equal(1, await Generation());
        await client.CustomObjects.PatchNamespacedCustomObjectAsync(new V1Patch("{\"spec\":{\"sloMs\":700}}", V1Patch.PatchType.MergePatch), path.Group, path.Version, path.Item3, path.Plural, path.Item5, cancellationToken: Cancel);
        Assert.Equal(2, await Generation());

        var map = await client.CoreV1.CreateNamespacedConfigMapAsync(new V1ConfigMap { Metadata = new V1ObjectMeta { Name = "m" } }, "ml", cancellationToken: Cancel);
        Assert.Null(map.Metadata.Generation);
        var service = await client.CoreV1.CreateNamespacedServiceAsync(new V1Service { Metadata = new V1ObjectMeta { Name = "s" }, Spec = new V1ServiceSpec() }, "ml", cancellationToken: Cancel);
        Assert.Null(service.Metadata.Generation);
    }

    static V1Deployment Deployment(params (string Name, string Value)[] environment) => new()
    {
        ApiVersion = "apps/v1", Kind = "Deployment",
        Metadata = new V1ObjectMeta { Name = "server", Annotations = new Dictionary<string, string> { ["a"] = "1", ["b"] = "2" } },
        Spec = new V1DeploymentSpec
        {
            Replicas = 2,
            Selector = new V1LabelSelector { MatchLabels = new Dictionary<string, string> { ["app"] = "server" } },
            Template = new V1PodTemplateSpec
            {
                Metadata = new V1ObjectMeta { Labels = new Dictionary<string, string> { ["app"] = "server" } },
                Spec = new V1PodSpec
                {
                    Containers = [new V1Container
                    {
                        Name = "server", Image = "server:1",
                        Ports = [new V1ContainerPort { ContainerPort = 8080, Name = "http" }],
                        Env = [.. environment.Select(e => new V1EnvVar { Name = e.Name, Value = e.Value })],
                    }],
                },
            },
        },
    };

    Task<V1Deployment> Apply(V1Deployment deployment, string manager, bool force = true) =>
        client.AppsV1.PatchNamespacedDeploymentAsync(new V1Patch(deployment, V1Patch.PatchType.ApplyPatch), "server", "ml", fieldManager: manager, force: force, cancellationToken: Cancel);

    /// <summary>
    /// Server-side apply keeps field ownership: what a manager stops applying is removed unless another owns it;
    /// lists of containers, ports and env merge by key; changing another manager's field conflicts unless forced.
    /// </summary>
    [Fact]
    public async Task Server_side_apply_tracks_who_owns_each_field()
    {
        await Apply(Deployment(("A", "1"), ("B", "2")), "operator");
        // Another manager adds an env entry and an annotation with a merge patch: it owns them.
        await client.AppsV1.PatchNamespacedDeploymentAsync(new V1Patch("{\"metadata\":{\"annotations\":{\"c\":\"3\"}}}", V1Patch.PatchType.MergePatch), "server", "ml", fieldManager: "person", cancellationToken: Cancel);
        var withSidecarEnv = await client.AppsV1.PatchNamespacedDeploymentAsync(new V1Patch(
            "{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"server\",\"env\":[{\"name\":\"C\",\"value\":\"3\"}]}]}}}}", V1Patch.PatchType.StrategicMergePatch),
            "server", "ml", fieldManager: "person", cancellationToken: Cancel);
        Assert.Equal(["A", "B", "C"], withSidecarEnv.Spec.Template.Spec.Containers.Single().Env.Select(e => e.Name).Order()); // merged by name, not replaced

        // The operator stops applying annotation b and env B: they go; what the person set stays.
        var next = Deployment(("A", "1"));
        next.Metadata.Annotations.Remove("b");
        var applied = await Apply(next, "operator");
        Assert.Equal(["a", "c"], applied.Metadata.Annotations.Keys.Order());
        var container = applied.Spec.Template.Spec.Containers.Single();
        Assert.Equal(["A", "C"], container.Env.Select(e => e.Name).Order());
        Assert.Equal(8080, container.Ports.Single().ContainerPort);
        Assert.Contains(applied.Metadata.ManagedFields, f => f.Manager == "operator" && f.Operation == "Apply" && f.FieldsType == "FieldsV1");
        Assert.Contains(applied.Metadata.ManagedFields, f => f.Manager == "person" && f.Operation == "Update");

        // The person's field, changed by another apply: a conflict, unless forced (which takes it over).
        var takeover = Deployment(("A", "1"), ("C", "other"));
        var (code, status) = await Refusal(() => Apply(takeover, "tool", force: false));
        Assert.Equal(HttpStatusCode.Conflict, code);
        Assert.Contains("conflict with \"person\"", status["message"]!.GetValue<string>());
        var forced = await Apply(takeover, "tool", force: true);
        Assert.Equal("other", forced.Spec.Template.Spec.Containers.Single().Env.Single(e => e.Name == "C").Value);

        // The same apply again changes nothing: no new resourceVersion.
        var again = await Apply(next, "operator");
        Assert.Equal(again.Metadata.ResourceVersion, (await Apply(next, "operator")).Metadata.ResourceVersion);
    }

    /// <summary>
    /// Deletion takes its time, as in a cluster: a finalizer holds an object (with a deletion timestamp) until
    /// removed; foreground deletion deletes the dependents first; orphaning leaves them without the owner;
    /// background deletion leaves them to the garbage collector, which removes them a moment later.
    /// </summary>
    [Fact]
    public async Task Deletion_waits_for_finalizers_and_dependents_go_through_the_garbage_collector()
    {
        async Task<V1ConfigMap> Map(string name, V1ConfigMap? owner = null, bool block = false, IList<string>? finalizers = null) =>
            await client.CoreV1.CreateNamespacedConfigMapAsync(new V1ConfigMap
            {
                Metadata = new V1ObjectMeta
                {
                    Name = name, Finalizers = finalizers,
                    OwnerReferences = owner is null ? null : [new V1OwnerReference { ApiVersion = "v1", Kind = "ConfigMap", Name = owner.Metadata.Name, Uid = owner.Metadata.Uid, BlockOwnerDeletion = block }],
                },
            }, "ml", cancellationToken: Cancel);
        Task<IList<V1ConfigMap>> Maps() => client.CoreV1.ListNamespacedConfigMapAsync("ml", cancellationToken: Cancel).ContinueWith(t => t.Result.Items, TaskScheduler.Default);
        Task Delete(string name, string policy) => client.CoreV1.DeleteNamespacedConfigMapAsync(name, "ml", body: new V1DeleteOptions { PropagationPolicy = policy }, cancellationToken: Cancel);
        async Task Until(Func<IList<V1ConfigMap>, bool> condition, string what)
        {
            for (int i = 0; i < 100 && !condition(await Maps()); i++) await Task.Delay(50, Cancel);
            Assert.True(condition(await Maps()), what);
        }

        // A finalizer holds the object.
        await Map("held", finalizers: ["example.com/keep"]);
        await Delete("held", "Background");
        var held = (await Maps()).Single(m => m.Metadata.Name == "held");
        Assert.NotNull(held.Metadata.DeletionTimestamp);
        Assert.Equal((HttpStatusCode)422, (await Refusal(() => client.CoreV1.PatchNamespacedConfigMapAsync(
            new V1Patch("{\"metadata\":{\"finalizers\":[\"example.com/keep\",\"example.com/more\"]}}", V1Patch.PatchType.MergePatch), "held", "ml", cancellationToken: Cancel))).Code);
        await client.CoreV1.PatchNamespacedConfigMapAsync(new V1Patch("{\"metadata\":{\"finalizers\":null}}", V1Patch.PatchType.MergePatch), "held", "ml", cancellationToken: Cancel);
        Assert.DoesNotContain(await Maps(), m => m.Metadata.Name == "held");

        // Background: the owner goes at once, its dependent a moment later.
        var owner = await Map("owner");
        await Map("child", owner);
        await Delete("owner", "Background");
        Assert.Contains(await Maps(), m => m.Metadata.Name == "child");
        await Until(maps => maps.All(m => m.Metadata.Name != "child"), "the collector to delete the dependent");

        // Foreground: the owner stays, being deleted, until its blocking dependents are gone.
        var parent = await Map("parent");
        await Map("blocking", parent, block: true);
        await Delete("parent", "Foreground");
        var deleting = (await Maps()).Single(m => m.Metadata.Name == "parent");
        Assert.Contains("foregroundDeletion", deleting.Metadata.Finalizers);
        await Until(maps => maps.All(m => m.Metadata.Name is not ("parent" or "blocking")), "the dependent, then the owner, to go");

        // Orphan: the dependents stay, without the owner's reference.
        var orphaning = await Map("orphaning");
        await Map("orphan", orphaning);
        await Delete("orphaning", "Orphan");
        await Until(maps => maps.All(m => m.Metadata.Name != "orphaning"), "the orphaning owner to go");
        Assert.Null((await Maps()).Single(m => m.Metadata.Name == "orphan").Metadata.OwnerReferences);
    }

    [Fact]
    public async Task Watches_that_allow_bookmarks_get_them_and_selectors_filter_events()
    {
        api.BookmarkPeriod = TimeSpan.FromMilliseconds(200);
        var labels = new Dictionary<string, string> { ["app"] = "a" };
        await client.CoreV1.CreateNamespacedConfigMapAsync(new V1ConfigMap { Metadata = new V1ObjectMeta { Name = "x", Labels = labels } }, "ml", cancellationToken: Cancel);
        await client.CoreV1.CreateNamespacedConfigMapAsync(new V1ConfigMap { Metadata = new V1ObjectMeta { Name = "y" } }, "ml", cancellationToken: Cancel);
        using var http = api.HttpClient();
        string text = await http.GetStringAsync("/api/v1/namespaces/ml/configmaps?watch=true&resourceVersion=1000&allowWatchBookmarks=true&timeoutSeconds=1&labelSelector=app%3Da", Cancel);
        var events = text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal("x", Assert.Single(events, e => e["type"]!.GetValue<string>() == "ADDED")["object"]!["metadata"]!["name"]!.GetValue<string>());
        var bookmark = events.First(e => e["type"]!.GetValue<string>() == "BOOKMARK")["object"]!;
        Assert.Equal("ConfigMap", bookmark["kind"]!.GetValue<string>());
        Assert.True(long.Parse(bookmark["metadata"]!["resourceVersion"]!.GetValue<string>(), System.Globalization.CultureInfo.InvariantCulture) >= 1002);
    }
}
