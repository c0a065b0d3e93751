using System.Text.Json;
using System.Text.Json.Nodes;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Experiments.Manifests;
using Adaptive.Operator.Adaptation;
using Adaptive.Operator.Cluster;
using Adaptive.Operator.Hosting;
using Adaptive.Operator.Metrics;
using Adaptive.Operator.Reconciliation;
using Adaptive.Tests.Kubernetes;
using Adaptive.Tests.Support;
using k8s;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging.Abstractions;

namespace Adaptive.Tests.Operator;

/// <summary>The operator, in this process, against the API server double, with timings shortened for tests.</summary>
public sealed class OperatorHarness : IAsyncDisposable
{
    public const string Namespace = "ml";
    public ApiServerDouble Api { get; }
    public k8s.Kubernetes Client { get; }
    readonly OperatorOptions options;
    WebApplication? app;

    readonly string directory = System.IO.Directory.CreateTempSubdirectory("adaptive-operator-").FullName;

    /// <summary>A folder of the test's, removed with the harness: kubeconfigs, the service account.</summary>
    public string Directory => directory;
    readonly KubernetesClientConfiguration connection;

    OperatorHarness(ApiServerDouble api, OperatorOptions options, Login login)
    {
        Api = api;
        this.options = options;
        Client = new k8s.Kubernetes(api.ClientConfiguration());
        connection = Connect(login);
    }

    /// <summary>How the operator under test reaches the API server, each as a user's cluster would have it.</summary>
    public enum Login
    {
        /// <summary>A kubeconfig with the CA and a bearer token, named by --kubeconfig.</summary>
        KubeconfigToken,
        /// <summary>A kubeconfig with the CA and a client certificate, named by KUBECONFIG among a missing file.</summary>
        KubeconfigClientCertificate,
        /// <summary>A kubeconfig whose exec plugin prints the token.</summary>
        KubeconfigExecPlugin,
        /// <summary>A pod's service account: KUBERNETES_SERVICE_HOST/PORT and the mounted token and CA.</summary>
        InCluster,
    }

    KubernetesClientConfiguration Connect(Login login)
    {
        string kubeconfig = Path.Combine(directory, "kubeconfig");
        switch (login)
        {
            case Login.KubeconfigToken:
                Api.Credentials.WriteKubeconfig(kubeconfig, Api.Address, ClusterCredentials.Login.Token);
                return ClusterConnection.Load(kubeconfig, null, _ => null);
            case Login.KubeconfigClientCertificate:
                Api.Credentials.WriteKubeconfig(kubeconfig, Api.Address, ClusterCredentials.Login.ClientCertificate);
                var environment = new Dictionary<string, string?> { ["KUBECONFIG"] = $"{Path.Combine(directory, "missing")}{Path.PathSeparator}{kubeconfig}" };
                return ClusterConnection.Load(null, null, environment.GetValueOrDefault);
            case Login.KubeconfigExecPlugin:
                Api.Credentials.WriteKubeconfig(kubeconfig, Api.Address, ClusterCredentials.Login.ExecPlugin);
                return ClusterConnection.Load(kubeconfig, null, _ => null);
            default:
                string account = Path.Combine(directory, "serviceaccount");
                Api.Credentials.WriteServiceAccount(account, Namespace);
                var pod = new Dictionary<string, string?> { ["KUBERNETES_SERVICE_HOST"] = Api.Address.Host, ["KUBERNETES_SERVICE_PORT"] = Api.Address.Port.ToString(System.Globalization.CultureInfo.InvariantCulture) };
                return ClusterConnection.Load(null, null, pod.GetValueOrDefault, account);
        }
    }

    /// <param name="installCrds">Whether the API server starts with the project's CRDs, as after <c>helm install</c>.</param>
    public static async Task<OperatorHarness> Start(TimeSpan? retireAfter = null, Uri? prometheus = null, bool leaderElection = false, string identity = "test",
        Login login = Login.KubeconfigToken, bool installCrds = true)
    {
        var options = new OperatorOptions("127.0.0.1", 0, null, prometheus, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1),
            new ReconcilerSettings(new WorkloadSettings("adaptive-server:test", TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(20)),
                retireAfter ?? TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1)),
            Workers: 2, LeaderElection: leaderElection, LeaseNamespace: Namespace, Identity: identity) { LeaseDuration = TimeSpan.FromSeconds(3) };
        Environment.SetEnvironmentVariable("Logging__LogLevel__Default", "Warning");
        var harness = new OperatorHarness(await ApiServerDouble.Start(installCrds), options, login);
        await harness.StartOperator();
        return harness;
    }

    /// <summary>
    /// A pipeline reconciler on its own, without the operator's watches and queue, for tests that drive reconciles one by one:
    /// metrics from <paramref name="prometheus"/> (none: every metrics read fails, so only decisions written into a status run).
    /// </summary>
    public static PipelineReconciler Reconciler(k8s.Kubernetes client, Uri? prometheus, TimeSpan step, TimeSpan scrapeInterval)
    {
        var pipelines = new PipelineClient(client, TimeProvider.System, NullLogger<PipelineClient>.Instance);
        var decisions = new DecisionRecorder(new LoadEstimator(new HttpClient(), prometheus, step, scrapeInterval),
            pipelines, new OperatorMetrics(Prometheus.Metrics.NewCustomRegistry()), NullLogger<DecisionRecorder>.Instance);
        return new PipelineReconciler(client, pipelines, decisions,
            new ReconcilerSettings(new WorkloadSettings("adaptive-server:test", TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(20)), TimeSpan.FromSeconds(90), TimeSpan.FromSeconds(1)),
            NullLogger<PipelineReconciler>.Instance, TimeProvider.System);
    }

    /// <summary>Starts the operator process (again, after <see cref="StopOperator"/>: a restart).</summary>
    public async Task StartOperator()
    {
        app = OperatorApp.Build(options, connection);
        await app.StartAsync();
    }

    /// <summary>A second operator replica against the same API server, under another identity; the caller disposes it.</summary>
    public async Task<WebApplication> StartReplica(string identity)
    {
        var replica = OperatorApp.Build(options with { Identity = identity }, connection);
        await replica.StartAsync();
        return replica;
    }

    /// <summary>The address of the running operator's /metrics and health endpoints.</summary>
    public Uri OperatorAddress => new(app!.Urls.First());

    public async Task StopOperator()
    {
        if (app is null) return;
        await app.StopAsync();
        await app.DisposeAsync();
        app = null;
    }

    /// <summary>A sample manifest with its adaptation sped up for tests, as the JSON the API server stores.</summary>
    public static JsonObject Sample(string file, Action<InferencePipeline>? edit = null)
    {
        var pipeline = ManifestReader.Parse(File.ReadAllText(RepoPaths.Of("samples", file)));
        pipeline.Spec.Adaptation.IntervalSeconds = 2;
        pipeline.Spec.Adaptation.ScaleDownStabilizationSeconds = 0;
        pipeline.Spec.Adaptation.PlannerTimeLimitSeconds = 2;
        pipeline.Spec.Adaptation.Metrics.HistorySeconds = 10;
        edit?.Invoke(pipeline);
        var json = (JsonObject)JsonSerializer.SerializeToNode(pipeline, new JsonSerializerOptions { DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull })!;
        json["metadata"]!["namespace"] = Namespace;
        return json;
    }

    public Task Create(JsonObject pipeline) =>
        Client.CustomObjects.CreateNamespacedCustomObjectAsync(pipeline, InferencePipeline.Group, InferencePipeline.Version, Namespace, InferencePipeline.Plural);

    public Task<InferencePipeline> Pipeline(string name) => Read(Client, name);

    /// <summary>The pipeline <paramref name="name"/> in the test namespace, as <paramref name="client"/> reads it.</summary>
    public static async Task<InferencePipeline> Read(k8s.Kubernetes client, string name) =>
        ((JsonElement)await client.CustomObjects.GetNamespacedCustomObjectAsync(InferencePipeline.Group, InferencePipeline.Version, Namespace, InferencePipeline.Plural, name))
        .Deserialize<InferencePipeline>()!;

    /// <summary>
    /// Polls until <paramref name="condition"/> holds (20 s at most) and returns its last value. A read the
    /// API server fails (faults the test injected: 5xx, 409) or answers 404 counts as not yet.
    /// </summary>
    public static async Task<T> Eventually<T>(Func<Task<T>> read, Func<T, bool> condition, string what, double seconds = 20)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        T? value = default;
        while (true)
        {
            try
            {
                value = await read();
                if (condition(value)) return value;
            }
            catch (k8s.Autorest.HttpOperationException e) when ((int)e.Response.StatusCode is >= 500 or 404 or 409)
            {
                // not there yet, or an injected failure: try again
            }
            if (clock.Elapsed > TimeSpan.FromSeconds(seconds)) { string last = JsonSerializer.Serialize(value); Assert.Fail($"timed out after {seconds} s waiting for {what}; last: {(last.Length > 600 ? last[..600] + "…" : last)}"); }
            await Task.Delay(100);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopOperator();
        Client.Dispose();
        await Api.DisposeAsync();
        System.IO.Directory.Delete(directory, recursive: true);
    }
}
