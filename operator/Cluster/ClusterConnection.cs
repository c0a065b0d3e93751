using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using k8s;
using k8s.Authentication;
using k8s.Exceptions;
using k8s.KubeConfigModels;

namespace Adaptive.Operator.Cluster;

/// <summary>The operator cannot find or read its cluster's configuration; the message says which and why, in one line.</summary>
public sealed class ClusterConfigurationException(string message) : Exception(message);

/// <summary>
/// Where the operator finds its cluster, looked for in the order controller-runtime uses: the
/// <c>--kubeconfig</c> file; the files of <c>KUBECONFIG</c>, merged as kubectl merges them (the first to set
/// a value wins, missing files are skipped); the pod's service account (in a cluster); <c>~/.kube/config</c>.
/// Every credential KubernetesClient supports comes with it: bearer tokens (a service account's is re-read
/// as it rotates), client certificates, exec plugins; the server is checked against the given CA.
/// </summary>
public static class ClusterConnection
{
    public const string ServiceAccountDirectory = "/var/run/secrets/kubernetes.io/serviceaccount";

    /// <param name="kubeconfig">The <c>--kubeconfig</c> flag: this file and nothing else.</param>
    /// <param name="context">The <c>--context</c> flag: a context of the kubeconfig other than its current one.</param>
    /// <param name="environment">Reads an environment variable (the process's, or a test's).</param>
    /// <param name="serviceAccountDirectory">Where a pod's service account token and CA are mounted.</param>
    public static KubernetesClientConfiguration Load(string? kubeconfig, string? context, Func<string, string?> environment,
        string serviceAccountDirectory = ServiceAccountDirectory)
    {
        if (kubeconfig is { Length: > 0 })
        {
            if (!File.Exists(kubeconfig)) throw new ClusterConfigurationException($"--kubeconfig: {kubeconfig} does not exist");
            return FromFiles([kubeconfig], context, "--kubeconfig");
        }
        if (environment("KUBECONFIG") is { Length: > 0 } list)
        {
            var files = list.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries).Where(File.Exists).ToList();
            if (files.Count == 0) throw new ClusterConfigurationException($"KUBECONFIG: none of its files exists ({list})");
            return FromFiles(files, context, "KUBECONFIG");
        }
        if (InCluster(environment, serviceAccountDirectory) is { } inCluster)
        {
            if (context is not null) throw new ClusterConfigurationException("--context needs a kubeconfig; in a cluster the pod's service account is used");
            return inCluster;
        }
        string home = Path.Combine(environment("HOME") ?? "/", ".kube", "config");
        if (File.Exists(home)) return FromFiles([home], context, home);
        throw new ClusterConfigurationException(
            $"no Kubernetes configuration: no --kubeconfig, no KUBECONFIG, no service account (KUBERNETES_SERVICE_HOST/PORT and a token in {serviceAccountDirectory}), no {home}");
    }

    static KubernetesClientConfiguration FromFiles(IReadOnlyList<string> files, string? context, string source)
    {
        try
        {
            // Relative paths in a file are taken from that file's folder, as kubectl does.
            var merged = KubernetesClientConfiguration.LoadKubeConfig(new FileInfo(files[0]));
            foreach (var next in files.Skip(1)) Merge(merged, KubernetesClientConfiguration.LoadKubeConfig(new FileInfo(next)));
            return KubernetesClientConfiguration.BuildConfigFromConfigObject(merged, context);
        }
        catch (Exception e) when (e is KubeConfigException or IOException or YamlDotNet.Core.YamlException or ArgumentException or FormatException or CryptographicException)
        {
            throw new ClusterConfigurationException($"{source} ({string.Join(Path.PathSeparator, files)}): {e.Message.ReplaceLineEndings(" ")}");
        }
    }

    /// <summary>kubectl's merge of several kubeconfig files: the first to name a cluster, user or context, or to set the current context, wins.</summary>
    static void Merge(K8SConfiguration into, K8SConfiguration from)
    {
        into.CurrentContext ??= from.CurrentContext;
        into.Clusters = [.. into.Clusters ?? [], .. (from.Clusters ?? []).Where(c => into.Clusters?.All(k => k.Name != c.Name) != false)];
        into.Users = [.. into.Users ?? [], .. (from.Users ?? []).Where(u => into.Users?.All(k => k.Name != u.Name) != false)];
        into.Contexts = [.. into.Contexts ?? [], .. (from.Contexts ?? []).Where(c => into.Contexts?.All(k => k.Name != c.Name) != false)];
    }

    /// <summary>The pod's service account, as client-go's in-cluster configuration reads it; null outside a cluster.</summary>
    static KubernetesClientConfiguration? InCluster(Func<string, string?> environment, string directory)
    {
        string? host = environment("KUBERNETES_SERVICE_HOST"), port = environment("KUBERNETES_SERVICE_PORT");
        string token = Path.Combine(directory, "token"), ca = Path.Combine(directory, "ca.crt");
        if (string.IsNullOrEmpty(host) || string.IsNullOrEmpty(port) || !File.Exists(token) || !File.Exists(ca)) return null;
        if (!int.TryParse(port, out int portNumber) || portNumber is < 1 or > 65535)
            throw new ClusterConfigurationException($"KUBERNETES_SERVICE_PORT: '{port}' is not a port number");
        var authorities = new X509Certificate2Collection();
        try
        {
            authorities.ImportFromPemFile(ca);
        }
        catch (CryptographicException e)
        {
            throw new ClusterConfigurationException($"{ca}: not a PEM certificate ({e.Message})");
        }
        string namespaceFile = Path.Combine(directory, "namespace");
        return new KubernetesClientConfiguration
        {
            Host = new UriBuilder("https", host, portNumber).Uri.ToString(),
            TokenProvider = new TokenFileAuth(token), // re-read as the kubelet rotates it
            SslCaCerts = authorities,
            Namespace = File.Exists(namespaceFile) ? File.ReadAllText(namespaceFile).Trim() : null,
        };
    }
}
