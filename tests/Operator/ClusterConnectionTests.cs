using System.Diagnostics;
using Adaptive.Operator.Cluster;
using Adaptive.Tests.Kubernetes;

namespace Adaptive.Tests.Operator;

/// <summary>Where the operator finds its cluster, in controller-runtime's order, and what it says when it finds none.</summary>
public sealed class ClusterConnectionTests : IDisposable
{
    readonly string directory = Directory.CreateTempSubdirectory("adaptive-connection-").FullName;
    readonly ClusterCredentials credentials = new();

    public void Dispose() => Directory.Delete(directory, recursive: true);

    string Kubeconfig(string name, string server, ClusterCredentials.Login login = ClusterCredentials.Login.Token)
    {
        string path = Path.Combine(directory, name);
        credentials.WriteKubeconfig(path, new Uri(server), login);
        return path;
    }

    static Func<string, string?> Environment(params (string Name, string Value)[] variables) =>
        name => variables.FirstOrDefault(v => v.Name == name).Value;

    [Fact]
    public void The_kubeconfig_flag_comes_first_and_carries_the_token_and_the_ca()
    {
        string flag = Kubeconfig("flag", "https://127.0.0.1:6443");
        string listed = Kubeconfig("listed", "https://127.0.0.2:6443");
        var config = ClusterConnection.Load(flag, null, Environment(("KUBECONFIG", listed)));
        Assert.Equal("https://127.0.0.1:6443", config.Host.TrimEnd('/'));
        Assert.Equal(credentials.Token, config.AccessToken);
        Assert.Equal(credentials.Authority.Thumbprint, Assert.Single(config.SslCaCerts!).Thumbprint);
    }

    /// <summary>KUBECONFIG lists files; missing ones are skipped and the first to name something wins, as with kubectl.</summary>
    [Fact]
    public void Kubeconfig_lists_are_merged_first_file_first()
    {
        string first = Kubeconfig("first", "https://127.0.0.1:6443", ClusterCredentials.Login.ClientCertificate);
        string second = Kubeconfig("second", "https://127.0.0.2:6443");
        string list = string.Join(Path.PathSeparator, Path.Combine(directory, "missing"), first, second);
        var config = ClusterConnection.Load(null, null, Environment(("KUBECONFIG", list), ("HOME", directory)));
        Assert.Equal("https://127.0.0.1:6443", config.Host.TrimEnd('/'));
        Assert.NotNull(config.ClientCertificateData);

        // A context of the kubeconfig other than its current one.
        File.WriteAllText(second, File.ReadAllText(second).Replace("name: double", "name: other").Replace("cluster: double", "cluster: other")
            .Replace("current-context: double", "current-context: other"));
        var other = ClusterConnection.Load(null, "other", Environment(("KUBECONFIG", string.Join(Path.PathSeparator, first, second))));
        Assert.Equal("https://127.0.0.2:6443", other.Host.TrimEnd('/'));
    }

    /// <summary>In a pod (no kubeconfig), the service account: its token file is re-read as it rotates, its CA checks the server.</summary>
    [Fact]
    public void A_pod_uses_its_service_account_before_the_home_kubeconfig()
    {
        string account = Path.Combine(directory, "serviceaccount");
        credentials.WriteServiceAccount(account, "team-a");
        Directory.CreateDirectory(Path.Combine(directory, ".kube"));
        Kubeconfig(Path.Combine(".kube", "config"), "https://127.0.0.9:6443");
        var pod = Environment(("KUBERNETES_SERVICE_HOST", "10.96.0.1"), ("KUBERNETES_SERVICE_PORT", "443"), ("HOME", directory));

        var config = ClusterConnection.Load(null, null, pod, account);
        Assert.Equal("https://10.96.0.1/", config.Host);
        Assert.Equal("team-a", config.Namespace);
        Assert.NotNull(config.TokenProvider);
        Assert.Single(config.SslCaCerts!);

        // Outside a pod, ~/.kube/config.
        var home = ClusterConnection.Load(null, null, Environment(("HOME", directory)), account);
        Assert.Equal("https://127.0.0.9:6443", home.Host.TrimEnd('/'));
    }

    [Fact]
    public void What_cannot_be_used_is_said_in_one_line()
    {
        string broken = Path.Combine(directory, "broken");
        File.WriteAllText(broken, "clusters: [ {");
        string account = Path.Combine(directory, "no-account");
        var none = Environment(("HOME", directory));
        foreach (var (load, expected) in new (Func<object>, string)[]
                 {
                     (() => ClusterConnection.Load(null, null, none, account), "no Kubernetes configuration"),
                     (() => ClusterConnection.Load(Path.Combine(directory, "nope"), null, none, account), "--kubeconfig: "),
                     (() => ClusterConnection.Load(broken, null, none, account), "--kubeconfig ("),
                     (() => ClusterConnection.Load(null, null, Environment(("KUBECONFIG", Path.Combine(directory, "nope"))), account), "KUBECONFIG: none of its files exists"),
                     (() => ClusterConnection.Load(Kubeconfig("ok", "https://127.0.0.1:6443"), "absent", none, account), "--kubeconfig ("),
                 })
        {
            var error = Assert.Throws<ClusterConfigurationException>(load);
            Assert.StartsWith(expected, error.Message);
            Assert.DoesNotContain('\n', error.Message);
        }
    }

    /// <summary>The operator without any configuration exits 2 with one line, not a stack trace.</summary>
    [Fact]
    public void The_operator_without_a_cluster_exits_2_saying_so()
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "adaptive-operator.dll"));
        start.Environment["HOME"] = directory;
        foreach (var variable in new[] { "KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT" }) start.Environment.Remove(variable);
        using var process = Process.Start(start)!;
        string error = process.StandardError.ReadToEnd();
        Assert.True(process.WaitForExit(TimeSpan.FromSeconds(30)));
        Assert.Equal(2, process.ExitCode);
        var line = Assert.Single(error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("adaptive-operator: no Kubernetes configuration", line);
    }
}
