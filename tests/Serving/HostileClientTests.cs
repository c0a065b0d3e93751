using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using Adaptive.Experiments.Live;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Serving;

/// <summary>
/// The model server as a hostile client sees it: bodies that overflow, stall, break their chunking or stop
/// halfway get 4xx answers (or are counted as gone), never a 500; large wrong bodies cannot take the memory.
/// </summary>
[Collection("serving")]
public sealed class HostileClientTests(TestModels models) : IDisposable
{
    static readonly CancellationToken Cancel = TestContext.Current.CancellationToken;
    readonly string directory = Directory.CreateTempSubdirectory("adaptive-hostile-").FullName;

    public void Dispose() => Directory.Delete(directory, recursive: true);

    const string Errors = "adaptive_model_requests_total{model=\"classify\",variant=\"resnet18\",outcome=\"error\"}";

    static byte[] Head(string lines) => Encoding.ASCII.GetBytes($"POST /v2/models/classify/infer HTTP/1.1\r\nHost: localhost\r\n{lines}\r\n");

    [Fact]
    public async Task Client_errors_are_4xx_and_a_client_that_goes_away_is_no_error()
    {
        await using var server = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18, maxBatch: 4, http: RunningServer.Http(requestTimeoutMs: 1000)));

        // Shapes whose element count overflows, in JSON and in a binary header.
        string huge = "[2147483647,2147483647,2147483647,2147483647]";
        var json = await server.Client.PostAsync("/v2/models/classify/infer", V2.Json($"{{\"inputs\":[{{\"name\":\"input\",\"shape\":{huge},\"datatype\":\"FP32\",\"data\":[1]}}]}}"), Cancel);
        Assert.Equal(HttpStatusCode.BadRequest, json.StatusCode);
        Assert.Contains("more elements than any tensor can", await V2.Error(json));
        var binaryAnswer = await server.Client.PostAsync("/v2/models/classify/infer",
            V2.Binary($"{{\"inputs\":[{{\"name\":\"input\",\"shape\":{huge},\"datatype\":\"FP32\",\"parameters\":{{\"binary_data_size\":16}}}}]}}", new byte[16]), Cancel);
        Assert.Equal(HttpStatusCode.BadRequest, binaryAnswer.StatusCode);

        // A body that stalls halfway: 408 once the request's deadline (1 s) passes, not when Kestrel's own timers do.
        var stalled = System.Diagnostics.Stopwatch.StartNew();
        string slow = await RawHttp.Exchange(server.Address, [.. Head("Content-Type: application/json\r\nContent-Length: 100000\r\n"), .. Encoding.ASCII.GetBytes("{\"inputs\":[")], TimeSpan.FromSeconds(20));
        Assert.StartsWith("HTTP/1.1 408", slow);
        Assert.Contains("did not arrive within the request", slow); // the request's 1000 ms deadline
        Assert.True(stalled.Elapsed < TimeSpan.FromSeconds(10), $"answered after {stalled.Elapsed}");

        // Malformed chunking: 400.
        string chunks = await RawHttp.Exchange(server.Address, [.. Head("Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"), .. Encoding.ASCII.GetBytes("zz\r\n{}\r\n0\r\n\r\n")], TimeSpan.FromSeconds(20));
        Assert.StartsWith("HTTP/1.1 400", chunks);
        Assert.Contains("\"error\"", chunks);

        // A client that disconnects mid-body is no error: it is counted as gone (client_closed) when the server sees the
        // connection end, or, when a busy machine reads it only after the request's deadline (5 s here), as a 408.
        await using var patient = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18, maxBatch: 4, http: RunningServer.Http(requestTimeoutMs: 5000)));
        const string closed = "adaptive_model_requests_total{model=\"classify\",variant=\"resnet18\",outcome=\"client_closed\"}";
        const string refused = "adaptive_model_requests_total{model=\"classify\",variant=\"resnet18\",outcome=\"bad_request\"}";
        await RawHttp.Exchange(patient.Address, [.. Head("Content-Type: application/json\r\nContent-Length: 100000\r\n"), .. new byte[5000]], TimeSpan.Zero, closeAfterSending: true);
        for (int i = 0; i < 400 && await patient.Metric(closed) + await patient.Metric(refused) == 0; i++)
            await Task.Delay(50, Cancel);
        string outcomes = string.Join(", ", (await patient.Client.GetStringAsync("/metrics", Cancel)).Split('\n').Where(l => l.StartsWith("adaptive_model_requests_total{", StringComparison.Ordinal)));
        Assert.True(await patient.Metric(closed) + await patient.Metric(refused) == 1, $"outcomes: {outcomes}");

        Assert.Equal(0, await patient.Metric(Errors));
        Assert.Equal(HttpStatusCode.OK, (await server.Client.PostAsync("/v2/models/classify/infer", V2.Json(V2.Request("input", [1, 3, 32, 32], models.Images(1, 3))), Cancel)).StatusCode);
    }

    /// <summary>
    /// The router as a hostile client sees it: a stalled body gets 408 at the request's deadline, malformed
    /// chunking 400, and bodies beyond the budget of bodies being read at once 429, at once.
    /// </summary>
    [Fact]
    public async Task The_router_bounds_slow_broken_and_many_bodies()
    {
        string config = Path.Combine(directory, "routes.json");
        File.WriteAllText(config, new Adaptive.Core.Routing.RouterConfig("images", [new Adaptive.Core.Routing.StageRoute("classify", [new Adaptive.Core.Routing.VariantRoute("a", "http://127.0.0.1:9", 1)])]).Write());
        await using var router = await RunningServer.StartRouter(new Adaptive.ModelServer.Routing.RouterOptions(
            RunningServer.Http(requestTimeoutMs: 1000, maxBodyBytes: 1 << 20), config, TimeSpan.FromSeconds(1), 64, BodyBudgetBytes: 1 << 20));
        byte[] Request(string lines) => Encoding.ASCII.GetBytes($"POST /v2/models/images/infer HTTP/1.1\r\nHost: localhost\r\n{lines}\r\n");

        // One client holds the whole budget with a body it never finishes; another is refused at once.
        var holding = RawHttp.Exchange(router.Address, [.. Request("Content-Type: application/json\r\nContent-Length: 1000000\r\n"), .. Encoding.ASCII.GetBytes("{\"inputs\":[")], TimeSpan.FromSeconds(20));
        await Task.Delay(200, Cancel);
        var refused = await router.Client.PostAsync("/v2/models/images/infer", new ByteArrayContent(new byte[500_000]), Cancel);
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        Assert.Contains("budget", await V2.Error(refused));
        string slow = await holding;
        Assert.StartsWith("HTTP/1.1 408", slow);

        string chunks = await RawHttp.Exchange(router.Address, [.. Request("Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"), .. Encoding.ASCII.GetBytes("zz\r\n{}\r\n0\r\n\r\n")], TimeSpan.FromSeconds(20));
        Assert.StartsWith("HTTP/1.1 400", chunks);
        Assert.Equal(0, await router.Metric("adaptive_pipeline_requests_total{pipeline=\"images\",outcome=\"error\"}"));
    }

    /// <summary>A JSON body of about <paramref name="megabytes"/> MB for input x, in the given datatype and shape.</summary>
    static byte[] LargeBody(int megabytes, string datatype, string shape)
    {
        long elements = megabytes * 1024L * 1024 / 2;
        var body = new StringBuilder($"{{\"inputs\":[{{\"name\":\"x\",\"datatype\":\"{datatype}\",\"shape\":{shape},\"data\":[", (int)(elements * 2 + 200));
        for (long i = 0; i < elements; i++) body.Append(i == 0 ? "1" : ",1");
        return Encoding.ASCII.GetBytes(body.Append("]}]}").ToString());
    }

    /// <summary>
    /// Several concurrent 60 MB bodies, of the wrong datatype and of the right one with a wrong shape, with and
    /// without Content-Length, to a model that bounds nothing (a dynamic length): each is a 4xx (400, or 429
    /// once the budget of bodies being read is spent), resident memory peaks within +400 MB and comes back
    /// within +150 MB.
    /// </summary>
    [Fact]
    public async Task Large_wrong_bodies_cannot_take_the_memory()
    {
        string model = IdentityModels.Write(directory, "identity.onnx", IdentityModels.Float, "batch", "length");
        using var server = await ServerProcess.Start(["serve"], new Dictionary<string, string>
        {
            ["ADAPTIVE_MODEL"] = model, ["ADAPTIVE_NAME"] = "identity", ["ADAPTIVE_HOST"] = "127.0.0.1", ["ADAPTIVE_PORT"] = "0",
            ["ADAPTIVE_INTRA_OP_THREADS"] = "1", ["ADAPTIVE_DEVICE"] = "cpu", ["ADAPTIVE_REQUEST_TIMEOUT_MS"] = "20000",
        });
        using var client = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(60) };
        var warm = await client.PostAsync("/v2/models/identity/infer", V2.Json("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,2],\"data\":[1,2]}]}"), Cancel);
        Assert.Equal(HttpStatusCode.OK, warm.StatusCode);
        await Task.Delay(500, Cancel);
        long start = server.ResidentBytes;

        byte[] wrongType = LargeBody(60, "INT32", "[1,31457280]");
        byte[] wrongShape = LargeBody(60, "FP32", "[1,1,31457280]");
        long peak = start;
        using var sampling = CancellationTokenSource.CreateLinkedTokenSource(Cancel);
        var sampler = Task.Run(async () =>
        {
            while (!sampling.IsCancellationRequested)
            {
                peak = Math.Max(peak, server.ResidentBytes);
                await Task.Delay(20, CancellationToken.None);
            }
        }, Cancel);
        for (int round = 0; round < 2; round++)
        {
            var answers = await Task.WhenAll(Enumerable.Range(0, 6).Select(async i =>
            {
                byte[] body = i % 2 == 0 ? wrongType : wrongShape;
                HttpContent content = i % 3 == 0 ? new StreamContent(new MemoryStream(body)) : new ByteArrayContent(body); // chunked, or with Content-Length
                content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
                using var response = await client.PostAsync("/v2/models/identity/infer", content, Cancel);
                return ((int)response.StatusCode, await response.Content.ReadAsStringAsync(Cancel));
            }));
            foreach (var (status, text) in answers)
                Assert.True(status is 400 or 429, $"{status}: {text}");
        }
        await Task.Delay(1000, Cancel);
        await sampling.CancelAsync();
        await sampler;
        long end = server.ResidentBytes;
        Assert.True(peak - start < 400L << 20, $"resident memory peaked {(peak - start) >> 20} MB above the {start >> 20} MB it started at");
        Assert.True(end - start < 150L << 20, $"resident memory stayed {(end - start) >> 20} MB above the {start >> 20} MB it started at");
    }
}
