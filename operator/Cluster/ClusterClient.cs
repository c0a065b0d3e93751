using k8s;

namespace Adaptive.Operator.Cluster;

/// <summary>
/// KubernetesClient's client, plus <see cref="Send"/> for the requests its generated API does not make
/// as the watcher needs them (a watch stream of raw JSON for any kind): they take KubernetesClient's own
/// path, so they carry the same credentials (token, exec plugin, client certificate) and TLS checks.
/// A status that is not 2xx comes back as <see cref="k8s.Autorest.HttpOperationException"/>.
/// </summary>
public sealed class ClusterClient(KubernetesClientConfiguration configuration) : k8s.Kubernetes(configuration)
{
    public Task<HttpResponseMessage> Send(HttpRequestMessage request, CancellationToken cancellation) =>
        SendRequestRaw("", request, cancellation);
}
