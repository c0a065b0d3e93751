using System.Text.Json;
using System.Text.RegularExpressions;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Operator;

/// <summary>The chart renders to valid manifests with the settings a cluster needs, and its dashboard queries real metrics.</summary>
public sealed class HelmChartTests : IDisposable
{
    static readonly string Chart = RepoPaths.Of("helm", "adaptive");
    readonly string directory = Directory.CreateTempSubdirectory("adaptive-chart-").FullName;

    [Fact]
    public void Default_values_render_valid_manifests()
    {
        string rendered = HelmTemplate.Render(Chart, "adaptive", "adaptive-system");
        string file = Path.Combine(directory, "rendered.yaml");
        // The validator skips any file with "{{" (an unrendered template); here the only ones left are Grafana's
        // legend placeholders inside the dashboard's JSON string, which no schema looks into.
        File.WriteAllText(file, rendered.Replace("{{", "<<").Replace("}}", ">>"));

        var result = K8sValidate.Run(Path.Combine(Chart, "crds"), file);

        Assert.True(result.ExitCode == 0, result.Output);
        foreach (var kind in new[] { "ServiceAccount/adaptive-operator", "ClusterRole/adaptive-operator", "ClusterRoleBinding/adaptive-operator",
                     "Role/adaptive-leader-election", "RoleBinding/adaptive-leader-election", "Deployment/adaptive-operator",
                     "Service/adaptive-operator-metrics", "ConfigMap/adaptive-dashboard" })
            Assert.Contains(kind, result.Output);
        Assert.Contains("9 valid", result.Output); // the eight objects and the CRD
        Assert.DoesNotContain("ServiceMonitor", rendered);

        // What the operator's pod must be: non-root, read-only, no capabilities, probed; two replicas behind a Lease.
        foreach (var line in new[] { "runAsNonRoot: true", "readOnlyRootFilesystem: true", "drop: [ALL]", "allowPrivilegeEscalation: false",
                     "path: /readyz", "path: /healthz", "- --leader-election", "replicas: 2", "- --lease-namespace=adaptive-system" })
            Assert.Contains(line, rendered);
        Assert.DoesNotContain("--namespace=", rendered);
        Assert.DoesNotContain("--model-server-gpu-image", rendered);
    }

    [Fact]
    public void Values_switch_the_optional_parts()
    {
        string rendered = HelmTemplate.Render(Chart, "ml", "ops", new Dictionary<string, object?>
        {
            ["serviceMonitor.enabled"] = true,
            ["grafanaDashboard.enabled"] = false,
            ["watchNamespace"] = "team-a",
            ["leaderElection"] = false,
            ["modelServerGpuImage"] = "registry/adaptive-server:0.1.0-gpu",
        });
        Assert.Contains("kind: ServiceMonitor", rendered);
        Assert.DoesNotContain("grafana_dashboard", rendered);
        Assert.Contains("- --namespace=team-a", rendered);
        Assert.DoesNotContain("--leader-election", rendered);
        Assert.Contains("- --model-server-gpu-image=registry/adaptive-server:0.1.0-gpu", rendered);
    }

    [Fact]
    public void The_charts_crd_is_the_projects_crd() =>
        Assert.Equal(File.ReadAllText(RepoPaths.Of("crds", "inferencepipelines.adaptive.dev.yaml")),
            File.ReadAllText(Path.Combine(Chart, "crds", "inferencepipelines.adaptive.dev.yaml")));

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
