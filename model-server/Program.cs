using Adaptive.Core.Routing;
using System.CommandLine;
using Adaptive.ModelServer.Backend;
using Adaptive.ModelServer.Hosting;
using Adaptive.ModelServer.Routing;
using Adaptive.ModelServer.Scheduling;
using Adaptive.ModelServer.Serving;
using Adaptive.ModelServer.Storage;
using static Adaptive.ModelServer.Hosting.EnvironmentOptions;

// adaptive-server serve | router: both read flags, or the ADAPTIVE_* environment variables the
// operator sets on its pods, and exit 2 with one line naming the bad setting.
var host = Create("--host", "Address to listen on", "0.0.0.0");
var port = Create("--port", "Port to listen on", 8080);
var maxBody = Create("--max-body-bytes", "Largest request body accepted", 64L * 1024 * 1024);
var timeout = Create("--request-timeout-ms", "Deadline of each request from its arrival", 1000.0);
var drainDelay = Create("--drain-delay-ms", "After SIGTERM, keep serving while not ready for this long", 5000.0);
var drainTimeout = Create("--drain-timeout-ms", "Then wait at most this long for requests in flight", 30000.0);

var grpcPort = Create("--grpc-port", "Port of the Open Inference Protocol's gRPC service (HTTP/2 without TLS); -1 for none", 8081);

var modelPath = Required("--model", "ONNX model file");
var modelName = Required("--name", "Model name clients call (/v2/models/{name}); the pipeline stage");
var variant = Create("--variant", "Variant name for the metrics' variant label (default: the model name)", "");
var maxBatch = Create("--max-batch", "Most rows per ONNX Runtime call", 8);
var maxDelay = Create("--max-queue-delay-ms", "Longest the oldest request waits for its batch to fill", 5.0);
var queueCapacity = Create("--queue-capacity", "Most requests waiting; more are refused with 429", 256);
var intraThreads = Create("--intra-op-threads", "ONNX Runtime threads within an operator (0: one per CPU the process may use, within its container's limit)", 0);
var interThreads = Create("--inter-op-threads", "ONNX Runtime threads across operators", 1);
var device = Create("--device", "auto (CUDA when present, else CPU), cpu, or cuda (exit when CUDA cannot run the model)", Device.Auto);
var bodyBudget = Create("--max-inflight-body-bytes", "Most bytes of request bodies read at once, over all requests; more are refused with 429", ModelServerOptions.DefaultBodyBudgetBytes);
var warmUp = Create("--warm-up", "Before listening, send the model two requests of zeros (JSON and binary) so that the first client's is not the slow first one", true);
var pinThreads = Create("--pin-threads", "Give each intra-op thread a CPU of its own; only for a pod with exclusive CPUs (Guaranteed, whole CPUs, the kubelet's static CPU manager policy)", false);

var fetchUri = Required("--uri", "https:// or s3:// URI of the model file (s3: AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)");
var fetchSha256 = Create("--sha256", "SHA-256 the file must have, lowercase hex (required for https://)", "");
var fetchOut = Required("--out", "Where to write the model file");
var fetchMaxBytes = Create("--max-bytes", "Largest file accepted", 4L * 1024 * 1024 * 1024);
var fetchTimeout = Create("--timeout-seconds", "Longest the download may take", 600.0);
var fetchCaFile = Create("--ca-file", "PEM certificates to trust in place of the system's (a private CA)", "");

var config = Required("--config", "Router configuration file (JSON), reloaded when it changes");
var pollInterval = Create("--config-poll-ms", "How often to check the configuration file for changes", 2000.0);
var maxInFlight = Create("--max-inflight", "Most pipeline requests in progress; more are refused with 429", 1024);

Option[] common = [host, port, grpcPort, maxBody, timeout, drainDelay, drainTimeout, bodyBudget];
var serve = new Command("serve", "Serve one ONNX model variant over the Open Inference Protocol with dynamic batching");
foreach (var option in common.Concat([modelPath, modelName, variant, maxBatch, maxDelay, queueCapacity, intraThreads, interThreads, device, pinThreads, warmUp])) serve.Options.Add(option);
var router = new Command("router", "Route pipeline requests through the stages, splitting each stage's load among its variants by weight");
foreach (var option in common.Concat([config, pollInterval, maxInFlight])) router.Options.Add(option);

serve.SetAction(parse => Run(() =>
{
    Check(parse.GetValue(maxBatch) >= 1, "--max-batch must be at least 1");
    Check(parse.GetValue(maxDelay) >= 0, "--max-queue-delay-ms must not be negative");
    Check(parse.GetValue(queueCapacity) >= 1, "--queue-capacity must be at least 1");
    Check(parse.GetValue(intraThreads) >= 0, "--intra-op-threads must not be negative");
    Check(parse.GetValue(interThreads) >= 1, "--inter-op-threads must be at least 1");
    string name = parse.GetValue(modelName)!;
    var options = new ModelServerOptions(Http(parse), parse.GetValue(modelPath)!, name,
        parse.GetValue(variant) is { Length: > 0 } v ? v : name,
        new BatchingOptions(parse.GetValue(maxBatch), TimeSpan.FromMilliseconds(parse.GetValue(maxDelay)), parse.GetValue(queueCapacity)),
        new RuntimeOptions(parse.GetValue(intraThreads), parse.GetValue(interThreads), parse.GetValue(device), parse.GetValue(pinThreads)),
        parse.GetValue(bodyBudget), parse.GetValue(warmUp));
    return ModelServerApp.Build(options);
}));
router.SetAction(parse => Run(() =>
{
    Check(parse.GetValue(pollInterval) >= 10, "--config-poll-ms must be at least 10");
    Check(parse.GetValue(maxInFlight) >= 1, "--max-inflight must be at least 1");
    return RouterApp.Build(new RouterOptions(Http(parse), parse.GetValue(config)!,
        TimeSpan.FromMilliseconds(parse.GetValue(pollInterval)), parse.GetValue(maxInFlight), parse.GetValue(bodyBudget)));
}));

var fetch = new Command("fetch-model", "Download a model file over HTTPS or from S3, checked against its SHA-256, before the server starts (the operator's init container)");
foreach (var option in new Option[] { fetchUri, fetchSha256, fetchOut, fetchMaxBytes, fetchTimeout, fetchCaFile }) fetch.Options.Add(option);
fetch.SetAction(parse =>
{
    string sha256 = parse.GetValue(fetchSha256)!;
    string? problem = !Uri.TryCreate(parse.GetValue(fetchUri), UriKind.Absolute, out var uri) || uri.Scheme is not ("https" or "s3") ? $"--uri must be an https:// or s3:// URI, got '{parse.GetValue(fetchUri)}'"
        : sha256.Length == 0 && uri.Scheme == "https" ? "--sha256 is required for an https:// URI"
        : sha256.Length > 0 && !Adaptive.Core.Models.ModelSource.IsSha256(sha256) ? $"--sha256 must be 64 lowercase hexadecimal digits, got '{sha256}'"
        : parse.GetValue(fetchMaxBytes) < 1 ? "--max-bytes must be at least 1"
        : !(parse.GetValue(fetchTimeout) > 0) ? "--timeout-seconds must be greater than 0"
        : parse.GetValue(fetchCaFile) is { Length: > 0 } ca && !File.Exists(ca) ? $"--ca-file {ca} does not exist"
        : null;
    if (problem is not null)
    {
        Console.Error.WriteLine($"adaptive-server: {problem}");
        return 2;
    }
    try
    {
        ModelFetcher.Fetch(new FetchOptions(uri!, sha256.Length > 0 ? sha256 : null, parse.GetValue(fetchOut)!, parse.GetValue(fetchMaxBytes),
            TimeSpan.FromSeconds(parse.GetValue(fetchTimeout)), parse.GetValue(fetchCaFile) is { Length: > 0 } caFile ? caFile : null,
            uri!.Scheme == "s3" ? S3Settings.FromEnvironment(Environment.GetEnvironmentVariable) : null), CancellationToken.None).GetAwaiter().GetResult();
        return 0;
    }
    catch (Exception e) when (e is FetchException or IOException or UnauthorizedAccessException)
    {
        Console.Error.WriteLine($"adaptive-server: fetch-model: {e.Message}");
        return 1;
    }
});

var root = new RootCommand("adaptive-server: the Adaptive model server and pipeline router") { serve, router, fetch };
var parsed = root.Parse(args);
if (parsed.Errors.Count > 0)
{
    foreach (var error in parsed.Errors) Console.Error.WriteLine($"adaptive-server: {error.Message}");
    return 2;
}
return parsed.Invoke();

HttpOptions Http(ParseResult parse)
{
    Check(System.Net.IPAddress.TryParse(parse.GetValue(host), out _), $"--host must be an IP address, got '{parse.GetValue(host)}'");
    Check(parse.GetValue(port) is >= 0 and <= 65535, $"--port must be between 0 and 65535, got {parse.GetValue(port)}");
    Check(parse.GetValue(grpcPort) is >= -1 and <= 65535, $"--grpc-port must be between 0 and 65535, or -1 for none; got {parse.GetValue(grpcPort)}");
    Check(parse.GetValue(grpcPort) != parse.GetValue(port) || parse.GetValue(port) == 0, $"--grpc-port must differ from --port ({parse.GetValue(port)})");
    Check(parse.GetValue(maxBody) is >= 1024 and <= int.MaxValue, "--max-body-bytes must be between 1024 and 2147483647");
    Check(parse.GetValue(bodyBudget) >= parse.GetValue(maxBody), "--max-inflight-body-bytes must be at least --max-body-bytes");
    Check(parse.GetValue(timeout) > 0, "--request-timeout-ms must be greater than 0");
    Check(parse.GetValue(drainDelay) >= 0 && parse.GetValue(drainTimeout) >= 0, "--drain-delay-ms and --drain-timeout-ms must not be negative");
    return new HttpOptions(parse.GetValue(host)!, parse.GetValue(port), parse.GetValue(maxBody),
        TimeSpan.FromMilliseconds(parse.GetValue(timeout)), TimeSpan.FromMilliseconds(parse.GetValue(drainDelay)),
        TimeSpan.FromMilliseconds(parse.GetValue(drainTimeout)), parse.GetValue(grpcPort) is >= 0 and var grpc ? grpc : null);
}

static int Run(Func<WebApplication> build)
{
    WebApplication app;
    try
    {
        app = build();
    }
    catch (Exception e) when (e is ConfigurationException or FileNotFoundException or InvalidDataException or RouterConfigException or DeviceUnavailableException)
    {
        Console.Error.WriteLine($"adaptive-server: {e.Message}");
        return 2;
    }
    app.Run();
    return 0;
}
