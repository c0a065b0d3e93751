using System.Net.Http.Json;
using System.Text.Json;
using Adaptive.ModelServer.Backend;
using Adaptive.ModelServer.Grpc.V2;
using Grpc.Net.Client;
using Adaptive.ModelServer.Hosting;
using Adaptive.ModelServer.Routing;
using Adaptive.ModelServer.Scheduling;
using Adaptive.ModelServer.Serving;
using Microsoft.AspNetCore.Builder;

namespace Adaptive.Tests.Support;

/// <summary>A model server or router started in this process on a free loopback port, stopped on dispose.</summary>
public sealed class RunningServer : IAsyncDisposable
{
    readonly WebApplication app;

    public Uri Address { get; }
    public HttpClient Client { get; }
    /// <summary>The gRPC service's address, when the server has one (a model server started with <see cref="ModelOptions"/> does).</summary>
    public Uri? GrpcAddress { get; }
    public IServiceProvider Services => app.Services;

    static RunningServer() => Environment.SetEnvironmentVariable("Logging__LogLevel__Default", "Warning");

    RunningServer(WebApplication app)
    {
        this.app = app;
        Address = new Uri(app.Urls.First());
        GrpcAddress = app.Urls.Skip(1).Select(url => new Uri(url)).FirstOrDefault();
        Client = new HttpClient { BaseAddress = Address, Timeout = TimeSpan.FromSeconds(30) };
    }

    public static HttpOptions Http(double requestTimeoutMs = 5000, long maxBodyBytes = 1 << 20, double drainDelayMs = 0) =>
        new("127.0.0.1", 0, maxBodyBytes, TimeSpan.FromMilliseconds(requestTimeoutMs), TimeSpan.FromMilliseconds(drainDelayMs), TimeSpan.FromSeconds(10));

    public static ModelServerOptions ModelOptions(string modelPath, string name = "classify", string variant = "resnet18",
        int maxBatch = 8, double maxQueueDelayMs = 5, int queueCapacity = 64, HttpOptions? http = null) =>
        new((http ?? Http()) with { GrpcPort = 0 }, modelPath, name, variant,
            new BatchingOptions(maxBatch, TimeSpan.FromMilliseconds(maxQueueDelayMs), queueCapacity),
            new RuntimeOptions(IntraOpThreads: 1, InterOpThreads: 1, Device.Cpu));

    public static Task<RunningServer> StartModel(ModelServerOptions options) => Start(ModelServerApp.Build(options));

    public static Task<RunningServer> StartRouter(RouterOptions options) => Start(RouterApp.Build(options));

    static async Task<RunningServer> Start(WebApplication app)
    {
        await app.StartAsync(TestContext.Current.CancellationToken);
        return new RunningServer(app);
    }

    /// <summary>A client of the server's gRPC service; dispose the channel.</summary>
    public (GRPCInferenceService.GRPCInferenceServiceClient Client, GrpcChannel Channel) GrpcClient()
    {
        var channel = GrpcChannel.ForAddress(GrpcAddress ?? throw new InvalidOperationException("this server has no gRPC service"),
            new GrpcChannelOptions { MaxReceiveMessageSize = 64 << 20, MaxSendMessageSize = 64 << 20 });
        return (new(channel), channel);
    }

    /// <summary>The value of one series in the Prometheus text exposition, e.g. <c>name{a="b"}</c>; 0 when absent.</summary>
    public async Task<double> Metric(string series)
    {
        string text = await Client.GetStringAsync("/metrics");
        var line = text.Split('\n').FirstOrDefault(l => l.StartsWith(series + " ", StringComparison.Ordinal));
        return line is null ? 0 : double.Parse(line[(series.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>What SIGTERM does to the process: the host stops (draining first); the task ends when it has.</summary>
    public Task StopAsync() => app.StopAsync();

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await app.StopAsync();
        await app.DisposeAsync();
    }
}

/// <summary>Builds v2 inference request bodies.</summary>
public static class V2
{
    public static string Request(string inputName, long[] shape, float[] data, string? id = null) =>
        JsonSerializer.Serialize(new
        {
            id,
            inputs = new[] { new { name = inputName, shape, datatype = "FP32", data } },
        });

    public static StringContent Json(string body) => new(body, System.Text.Encoding.UTF8, "application/json");

    /// <summary>A body with the binary tensor data extension: the JSON header, then raw bytes, and the header's length in Inference-Header-Content-Length.</summary>
    public static ByteArrayContent Binary(string header, ReadOnlySpan<byte> data)
    {
        byte[] head = System.Text.Encoding.UTF8.GetBytes(header);
        var content = new ByteArrayContent([.. head, .. data]);
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/octet-stream");
        content.Headers.Add("Inference-Header-Content-Length", head.Length.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return content;
    }

    public static async Task<float[]> Output(HttpResponseMessage response, string name)
    {
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var output = json.RootElement.GetProperty("outputs").EnumerateArray().Single(o => o.GetProperty("name").GetString() == name);
        return [.. output.GetProperty("data").EnumerateArray().Select(v => v.GetSingle())];
    }

    public static async Task<string> Error(HttpResponseMessage response) =>
        (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("error").GetString()!;
}
