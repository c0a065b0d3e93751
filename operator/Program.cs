using System.CommandLine;
using Adaptive.Core.Forecasting;
using Adaptive.Operator.Cluster;
using Adaptive.Operator.Hosting;
using Adaptive.Operator.Reconciliation;
using k8s;

// adaptive-operator: flags, as the Helm chart sets them; a bad one exits 2 with a line naming it.
var kubeconfig = new Option<string?>("--kubeconfig") { Description = "The kubeconfig to use (default: KUBECONFIG's files, else the pod's service account, else ~/.kube/config)" };
var context = new Option<string?>("--context") { Description = "The kubeconfig context to use (default: its current context)" };
var watchNamespace = new Option<string?>("--namespace") { Description = "Namespace to watch (default: all)" };
var prometheus = new Option<string?>("--prometheus-url") { Description = "Prometheus for pipelines that name none" };
var image = new Option<string>("--model-server-image") { Description = "Image of adaptive-server for routers and CPU model servers", DefaultValueFactory = _ => "adaptive-server:latest" };
var gpuImage = new Option<string?>("--model-server-gpu-image") { Description = "Image of adaptive-server built for GPUs, for classes that request nvidia.com/gpu (default: --model-server-image)" };
var host = new Option<string>("--host") { Description = "Address for /metrics and health", DefaultValueFactory = _ => "0.0.0.0" };
var port = new Option<int>("--port") { Description = "Port for /metrics and health", DefaultValueFactory = _ => 8081 };
var workers = new Option<int>("--workers") { Description = "Pipelines reconciled at once", DefaultValueFactory = _ => 2 };
var retireAfter = new Option<double>("--retire-after-seconds") { Description = "How long a replaced variant keeps running after its traffic moved", DefaultValueFactory = _ => 90 };
var scrapeInterval = new Option<double>("--scrape-interval-seconds") { Description = "How often Prometheus scrapes the routers, assumed for a router until Prometheus holds two scrapes of it to measure it from: it sets the windows of the rate queries", DefaultValueFactory = _ => ArrivalHistory.OperatorScrapeSeconds };
var leaderElection = new Option<bool>("--leader-election") { Description = "Take a Lease before reconciling (for several replicas)" };
var leaseNamespace = new Option<string>("--lease-namespace") { Description = "Namespace of the Lease", DefaultValueFactory = _ => Environment.GetEnvironmentVariable("POD_NAMESPACE") ?? "default" };

var root = new RootCommand("adaptive-operator: keeps InferencePipelines fast, accurate and cheap as their load changes")
{
    kubeconfig, context, watchNamespace, prometheus, image, gpuImage, host, port, workers, retireAfter, scrapeInterval, leaderElection, leaseNamespace,
};
root.SetAction(parse =>
{
    string? problem = parse.GetValue(port) is < 0 or > 65535 ? "--port must be between 0 and 65535"
        : parse.GetValue(workers) < 1 ? "--workers must be at least 1"
        : parse.GetValue(retireAfter) < 0 ? "--retire-after-seconds must not be negative"
        : !(parse.GetValue(scrapeInterval) > 0) ? "--scrape-interval-seconds must be greater than 0"
        : !System.Net.IPAddress.TryParse(parse.GetValue(host), out _) ? "--host must be an IP address"
        : parse.GetValue(prometheus) is { } p && !IsHttpUrl(p) ? $"--prometheus-url must be an http(s) URL, got '{p}'"
        : null;
    if (problem is not null)
    {
        Console.Error.WriteLine($"adaptive-operator: {problem}");
        return 2;
    }
    KubernetesClientConfiguration cluster;
    try
    {
        cluster = ClusterConnection.Load(parse.GetValue(kubeconfig), parse.GetValue(context), Environment.GetEnvironmentVariable);
    }
    catch (ClusterConfigurationException e)
    {
        Console.Error.WriteLine($"adaptive-operator: {e.Message}");
        return 2;
    }
    var scrape = TimeSpan.FromSeconds(parse.GetValue(scrapeInterval));
    var options = new OperatorOptions(parse.GetValue(host)!, parse.GetValue(port), parse.GetValue(watchNamespace),
        parse.GetValue(prometheus) is { } prometheusUrl ? new Uri(prometheusUrl) : null,
        TimeSpan.FromSeconds(ArrivalHistory.OperatorStepSeconds), scrape,
        new ReconcilerSettings(new WorkloadSettings(parse.GetValue(image)!, TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(20), parse.GetValue(gpuImage) is { Length: > 0 } gpu ? gpu : null),
            TimeSpan.FromSeconds(parse.GetValue(retireAfter)), TimeSpan.FromSeconds(10)),
        parse.GetValue(workers), parse.GetValue(leaderElection), parse.GetValue(leaseNamespace)!,
        Environment.GetEnvironmentVariable("POD_NAME") ?? Environment.MachineName);
    OperatorApp.Build(options, cluster).Run();
    return 0;
});
var parsed = root.Parse(args);
if (parsed.Errors.Count > 0)
{
    foreach (var error in parsed.Errors) Console.Error.WriteLine($"adaptive-operator: {error.Message}");
    return 2;
}
return parsed.Invoke();

static bool IsHttpUrl(string text) => Uri.TryCreate(text, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https";
