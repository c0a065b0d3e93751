using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Adaptive.Experiments.Manifests;
using Adaptive.Operator.Reconciliation;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Operator;

/// <summary>The chart renders, by Helm's engine, to valid manifests with the settings a cluster needs, and its dashboard queries real metrics.</summary>
public sealed class HelmChartTests : IDisposable
{
    static readonly string Chart = RepoPaths.Of("helm", "adaptive");
    readonly string directory = Directory.CreateTempSubdirectory("adaptive-chart-").FullName;

    /// <summary>Values the chart is rendered with in <see cref="Every_values_combination_renders_what_it_asks_for_and_validates"/>, by case.</summary>
    static readonly Dictionary<string, Dictionary<string, JsonNode?>> Matrix = new()
    {
        ["defaults"] = [],
        ["namespaced"] = new() { ["watchNamespace"] = "team-a" },
        ["no leader election"] = new() { ["leaderElection"] = false },
        ["service monitor"] = new() { ["serviceMonitor.enabled"] = true, ["serviceMonitor.interval"] = "30s", ["serviceMonitor.labels"] = JsonNode.Parse("""{"release": "kube-prometheus-stack"}""") },
        ["router monitor"] = new() { ["routerMonitor.enabled"] = true, ["routerMonitor.labels"] = JsonNode.Parse("""{"release": "kube-prometheus-stack"}""") },
        ["namespaced router monitor"] = new() { ["routerMonitor.enabled"] = true, ["routerMonitor.interval"] = "10s", ["watchNamespace"] = "team-a" },
        ["no dashboard"] = new() { ["grafanaDashboard.enabled"] = false },
        ["custom images and resources"] = new()
        {
            ["image.repository"] = "registry.example.com/ml/adaptive-operator", ["image.tag"] = "1.2.3",
            ["modelServerImage"] = "registry.example.com/ml/adaptive-server:1.2.3", ["modelServerGpuImage"] = "registry.example.com/ml/adaptive-server:1.2.3-gpu",
            ["resources"] = JsonNode.Parse("""{"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}"""),
        },
    };

    public static TheoryData<string> Cases => [.. Matrix.Keys];

    /// <summary>
    /// Rendered by Helm's own engine for each case, every object valid against the upstream schemas (and the
    /// Prometheus Operator's), the values valid against values.schema.json as Helm checks them, and each case's
    /// switch doing what it says: RBAC only where the operator works, no Lease RBAC and one replica without leader election.
    /// </summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void Every_values_combination_renders_what_it_asks_for_and_validates(string name)
    {
        Assert.SkipWhen(HelmTemplate.Binary is null, HelmTemplate.Missing);
        var set = Matrix[name];
        Assert.Empty(SchemaErrors(set));
        string rendered = HelmTemplate.Render(Chart, "adaptive", "adaptive-system", set);
        string file = Path.Combine(directory, "rendered.yaml");
        // The validator skips any file with "{{" (an unrendered template); here the only ones left are Grafana's
        // legend placeholders inside the dashboard's JSON string, which no schema looks into.
        File.WriteAllText(file, rendered.Replace("{{", "<<").Replace("}}", ">>"));
        var result = K8sValidate.Run(Path.Combine(Chart, "crds"), file);
        Assert.True(result.ExitCode == 0, result.Output);

        var objects = YamlJson.Documents(rendered);
        var kinds = objects.Select(o => $"{o["kind"]}/{o["metadata"]!["name"]}").ToList();
        Assert.Contains($"{objects.Count + 2} valid", result.Output); // and the two CRDs
        bool namespaced = set.ContainsKey("watchNamespace"), leader = !set.ContainsKey("leaderElection");
        Assert.Equal(!namespaced, kinds.Contains("ClusterRole/adaptive-operator") && kinds.Contains("ClusterRoleBinding/adaptive-operator"));
        Assert.Equal(namespaced, kinds.Contains("Role/adaptive-operator") && kinds.Contains("RoleBinding/adaptive-operator"));
        if (namespaced)
            Assert.All(objects.Where(o => o["kind"]!.GetValue<string>() is "Role" or "RoleBinding" && o["metadata"]!["name"]!.GetValue<string>() == "adaptive-operator"),
                o => Assert.Equal("team-a", o["metadata"]!["namespace"]!.GetValue<string>()));
        Assert.Equal(leader, kinds.Contains("Role/adaptive-leader-election") && kinds.Contains("RoleBinding/adaptive-leader-election"));
        // Pools and Nodes are cluster-scoped: read cluster-wide in either mode, and nothing else there.
        var poolRules = objects.Single(o => $"{o["kind"]}/{o["metadata"]!["name"]}" == "ClusterRole/adaptive-operator-pools")["rules"]!.AsArray();
        Assert.Equal(["adaptive.dev/inferencepools", "adaptive.dev/inferencepools/status", "/nodes"],
            poolRules.Select(r => $"{r!["apiGroups"]![0]}/{string.Join(",", r["resources"]!.AsArray().Select(x => x!.GetValue<string>()))}"));
        Assert.Contains("ClusterRoleBinding/adaptive-operator-pools", kinds);
        Assert.Equal(set.ContainsKey("serviceMonitor.enabled"), kinds.Contains("ServiceMonitor/adaptive-operator"));
        Assert.Equal(!set.ContainsKey("grafanaDashboard.enabled"), kinds.Contains("ConfigMap/adaptive-dashboard"));
        Assert.Equal(set.ContainsKey("routerMonitor.enabled"), kinds.Contains("PodMonitor/adaptive-routers"));
        // The labels a Prometheus selects monitors by, beside the chart's own.
        foreach (var (key, kind) in new[] { ("serviceMonitor", "ServiceMonitor"), ("routerMonitor", "PodMonitor") })
            if (set.TryGetValue($"{key}.labels", out var extra))
            {
                var labels = objects.Single(o => o["kind"]!.GetValue<string>() == kind)["metadata"]!["labels"]!.AsObject();
                Assert.All(extra!.AsObject(), l => Assert.Equal(l.Value!.GetValue<string>(), labels[l.Key]!.GetValue<string>()));
                Assert.Equal("adaptive", labels["app.kubernetes.io/instance"]!.GetValue<string>());
            }
        if (set.ContainsKey("routerMonitor.enabled"))
        {
            var monitor = objects.Single(o => o["kind"]!.GetValue<string>() == "PodMonitor")["spec"]!;
            // The labels the operator gives a router's pods, and only those pods; in the watched namespace, or in all.
            var sample = ManifestReader.Parse(File.ReadAllText(RepoPaths.Of("samples", "resnet-mixed.yaml")));
            var labels = DesiredState.Router(sample, new WorkloadSettings("image", TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(20))).Deployment.Spec.Template.Metadata.Labels;
            var selector = monitor["selector"]!["matchLabels"]!.AsObject().ToDictionary(l => l.Key, l => l.Value!.GetValue<string>());
            Assert.All(selector, l => Assert.Equal(l.Value, labels[l.Key]));
            Assert.Contains(Names.Component, selector.Keys);
            Assert.Equal(namespaced ? "{\"matchNames\":[\"team-a\"]}" : "{\"any\":true}", monitor["namespaceSelector"]!.ToJsonString());
            var endpoint = monitor["podMetricsEndpoints"]![0]!;
            Assert.Equal(("http", "/metrics", set.TryGetValue("routerMonitor.interval", out var interval) ? interval!.GetValue<string>() : "5s"),
                (endpoint["port"]!.GetValue<string>(), endpoint["path"]!.GetValue<string>(), endpoint["interval"]!.GetValue<string>()));
        }

        var deployment = objects.Single(o => o["kind"]!.GetValue<string>() == "Deployment");
        Assert.Equal(leader ? 2 : 1, deployment["spec"]!["replicas"]!.GetValue<long>());
        var container = deployment["spec"]!["template"]!["spec"]!["containers"]![0]!;
        var args = container["args"]!.AsArray().Select(a => a!.GetValue<string>()).ToList();
        Assert.Equal(leader, args.Contains("--leader-election"));
        Assert.Equal(namespaced, args.Contains("--namespace=team-a"));
        if (name == "custom images and resources")
        {
            Assert.Equal("registry.example.com/ml/adaptive-operator:1.2.3", container["image"]!.GetValue<string>());
            Assert.Contains("--model-server-gpu-image=registry.example.com/ml/adaptive-server:1.2.3-gpu", args);
            // Helm merges a map given for a value into its default: the default CPU limit stays.
            var merged = JsonNode.Parse("{\"limits\": {\"cpu\": \"1\", \"memory\": \"512Mi\"}, \"requests\": {\"cpu\": \"250m\", \"memory\": \"256Mi\"}}");
            Assert.True(JsonNode.DeepEquals(merged, container["resources"]), container["resources"]!.ToJsonString());
        }
        else Assert.DoesNotContain(args, a => a.StartsWith("--model-server-gpu-image", StringComparison.Ordinal));
        // What the operator's pod must be, whatever the values: non-root, read-only, no capabilities, probed.
        foreach (var line in new[] { "runAsNonRoot: true", "readOnlyRootFilesystem: true", "drop:", "allowPrivilegeEscalation: false", "path: /readyz", "path: /healthz" })
            Assert.Contains(line, rendered);
    }

    /// <summary>Values Helm would refuse by the chart's schema: a typo, a bad enum, a bad number; the defaults pass.</summary>
    [Fact]
    public void The_values_schema_refuses_what_the_chart_cannot_use()
    {
        Assert.Empty(SchemaErrors([]));
        Assert.NotEmpty(SchemaErrors(new() { ["replica"] = 3 }));
        Assert.NotEmpty(SchemaErrors(new() { ["replicas"] = 0 }));
        Assert.NotEmpty(SchemaErrors(new() { ["logLevel"] = "Verbose" }));
        Assert.NotEmpty(SchemaErrors(new() { ["prometheusUrl"] = "prometheus:9090" }));
        Assert.NotEmpty(SchemaErrors(new() { ["watchNamespace"] = "Team_A" }));
        Assert.NotEmpty(SchemaErrors(new() { ["serviceMonitor.interval"] = "15 seconds" }));
        Assert.NotEmpty(SchemaErrors(new() { ["routerMonitor.labels"] = JsonNode.Parse("""{"release": 1}""") }));
    }

    /// <summary>What values.schema.json says of values.yaml with <paramref name="set"/> applied, as Helm checks it; empty when valid.</summary>
    static List<string> SchemaErrors(Dictionary<string, JsonNode?> set)
    {
        var values = YamlJson.Documents(File.ReadAllText(Path.Combine(Chart, "values.yaml"))).Single();
        foreach (var (path, value) in set)
        {
            var parts = path.Split('.');
            var node = values;
            foreach (string part in parts[..^1]) node = (JsonObject)(node[part] ??= new JsonObject());
            node[parts[^1]] = value?.DeepClone();
        }
        var schema = Json.Schema.JsonSchema.FromText(File.ReadAllText(Path.Combine(Chart, "values.schema.json")));
        var result = schema.Evaluate(JsonSerializer.SerializeToElement(values), new Json.Schema.EvaluationOptions { OutputFormat = Json.Schema.OutputFormat.List });
        return result.IsValid ? [] : [.. (result.Details ?? []).Where(d => d.Errors is { Count: > 0 }).SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation}: {e.Value}"))];
    }

    [Fact]
    public void The_charts_crds_are_the_projects_crds()
    {
        var project = Directory.GetFiles(RepoPaths.Of("crds")).Select(f => Path.GetFileName(f)).Order().ToList();
        Assert.Equal(project, Directory.GetFiles(Path.Combine(Chart, "crds")).Select(Path.GetFileName).Order());
        foreach (string file in project) Assert.Equal(File.ReadAllText(RepoPaths.Of("crds", file)), File.ReadAllText(Path.Combine(Chart, "crds", file)));
    }

    /// <summary>Every metric the dashboard queries is one the router, model server or operator exports.</summary>
    [Fact]
    public void The_dashboard_queries_metrics_that_exist()
    {
        using var dashboard = JsonDocument.Parse(File.ReadAllText(Path.Combine(Chart, "dashboards", "adaptive.json")));
        var queries = dashboard.RootElement.GetProperty("panels").EnumerateArray()
            .SelectMany(p => p.GetProperty("targets").EnumerateArray()).Select(t => t.GetProperty("expr").GetString()!).ToList();
        Assert.True(queries.Count >= 8);
        string sources = string.Join('\n', new[] { "operator", "model-server" }
            .SelectMany(d => Directory.GetFiles(RepoPaths.Of(d), "*.cs", SearchOption.AllDirectories)).Where(f => !f.Contains("/obj/")).Select(File.ReadAllText));
        foreach (Match metric in Regex.Matches(string.Join('\n', queries), @"adaptive_[a-z_]+"))
        {
            string name = Regex.Replace(metric.Value, "_(bucket|sum|count)$", "");
            Assert.True(sources.Contains($"\"{name}\"", StringComparison.Ordinal), $"the dashboard queries {metric.Value}, which nothing exports");
        }
    }

    public void Dispose() => Directory.Delete(directory, recursive: true);
}
