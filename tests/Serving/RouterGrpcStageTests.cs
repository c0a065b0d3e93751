using System.Net;
using System.Text.Json;
using Adaptive.Core.Routing;
using Adaptive.ModelServer.Grpc;
using Adaptive.ModelServer.Grpc.V2;
using Adaptive.ModelServer.Routing;
using Adaptive.Tests.Support;
using Google.Protobuf;

namespace Adaptive.Tests.Serving;

/// <summary>
/// Stages the router calls over gRPC (<c>"transport": "grpc"</c>): the same answers as over REST in every
/// encoding the client may ask for, the same refusals, and the same retries, health and metrics.
/// </summary>
[Collection("serving")]
public sealed class RouterGrpcStageTests(TestModels models) : IAsyncLifetime
{
    static readonly CancellationToken Cancel = TestContext.Current.CancellationToken;
    readonly string directory = Directory.CreateTempSubdirectory("adaptive-grpc-stages-").FullName;
    RunningServer classify = null!, head = null!;

    static long[] ImageShape => [1, 3, TestModels.Resolution, TestModels.Resolution];

    public async ValueTask InitializeAsync()
    {
        classify = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18, variant: "resnet18"));
        head = await RunningServer.StartModel(RunningServer.ModelOptions(models.Head, name: "head", variant: "linear"));
    }

    public async ValueTask DisposeAsync()
    {
        await head.DisposeAsync();
        await classify.DisposeAsync();
        Directory.Delete(directory, recursive: true);
    }

    async Task<RunningServer> Router(string name, params StageRoute[] stages)
    {
        string path = Path.Combine(directory, name + ".json");
        File.WriteAllText(path, new RouterConfig("two-stage", stages).Write());
        return await RunningServer.StartRouter(new RouterOptions(RunningServer.Http() with { GrpcPort = 0 }, path, TimeSpan.FromMilliseconds(50), 64));
    }

    static VariantRoute Grpc(string name, RunningServer server) => new(name, server.GrpcAddress!.ToString(), 1, StageTransport.Grpc);

    static VariantRoute Rest(string name, RunningServer server) => new(name, server.Address.ToString(), 1);

    /// <summary>
    /// One router calls both stages over REST, the other over gRPC; each client encoding (JSON, binary outputs, the
    /// router's own gRPC) gets the same numbers from both, in the encoding it asked for.
    /// </summary>
    [Fact]
    public async Task Grpc_stages_answer_what_rest_stages_answer_in_the_clients_encoding()
    {
        await using var overRest = await Router("rest", new StageRoute("classify", [Rest("resnet18", classify)]), new StageRoute("head", [Rest("linear", head)]));
        await using var overGrpc = await Router("grpc", new StageRoute("classify", [Grpc("resnet18", classify)]), new StageRoute("head", [Grpc("linear", head)]));
        var images = models.Images(1, 4);
        string json = V2.Request("input", ImageShape, images, id: "j-1");

        var expected = await V2.Output(await overRest.Client.PostAsync("/v2/models/two-stage/infer", V2.Json(json), Cancel), "probabilities");
        var response = await overGrpc.Client.PostAsync("/v2/models/two-stage/infer", V2.Json(json), Cancel);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        var answer = JsonDocument.Parse(await response.Content.ReadAsStringAsync(Cancel)).RootElement;
        Assert.Equal(("two-stage", "j-1"), (answer.GetProperty("model_name").GetString(), answer.GetProperty("id").GetString()));
        Assert.Equal(expected, await V2.Output(response, "probabilities"));
        Assert.Matches(@"^classify;dur=[0-9.]+, head;dur=[0-9.]+$", response.Headers.GetValues("Server-Timing").Single());

        // Binary in, binary out: the bytes after the header are the same floats.
        string header = $$$"""{"inputs":[{"name":"input","datatype":"FP32","shape":[{{{string.Join(",", ImageShape)}}}],"parameters":{"binary_data_size":{{{images.Length * 4}}}}}],"parameters":{"binary_data_output":true}}""";
        var binary = await overGrpc.Client.PostAsync("/v2/models/two-stage/infer", V2.Binary(header, System.Runtime.InteropServices.MemoryMarshal.AsBytes(images.AsSpan())), Cancel);
        Assert.Equal(HttpStatusCode.OK, binary.StatusCode);
        int headerLength = int.Parse(binary.Headers.GetValues("Inference-Header-Content-Length").Single(), System.Globalization.CultureInfo.InvariantCulture);
        byte[] body = await binary.Content.ReadAsByteArrayAsync(Cancel);
        Assert.Equal(expected, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(body.AsSpan(headerLength)).ToArray());

        var (client, channel) = overGrpc.GrpcClient();
        using var _ = channel;
        var request = new ModelInferRequest { ModelName = "two-stage" };
        request.Inputs.Add(new ModelInferRequest.Types.InferInputTensor { Name = "input", Datatype = "FP32", Shape = { ImageShape } });
        request.RawInputContents.Add(ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(images.AsSpan())));
        var viaGrpc = await client.ModelInferAsync(request, cancellationToken: Cancel);
        Assert.Equal(expected, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(viaGrpc.RawOutputContents.Single().Span).ToArray());

        var metadata = JsonDocument.Parse(await overGrpc.Client.GetStringAsync("/v2/models/two-stage", Cancel)).RootElement;
        Assert.Equal(("input", "probabilities"), (metadata.GetProperty("inputs")[0].GetProperty("name").GetString(), metadata.GetProperty("outputs")[0].GetProperty("name").GetString()));
        Assert.Equal(3, await overGrpc.Metric("adaptive_pipeline_stage_requests_total{pipeline=\"two-stage\",stage=\"head\",variant=\"linear\",code=\"2xx\"}"));
        Assert.Equal(3, await overGrpc.Metric("adaptive_pipeline_requests_total{pipeline=\"two-stage\",outcome=\"success\"}"));
    }

    /// <summary>
    /// Concurrent requests of different images, row counts and encodings through gRPC stages each get their own answer:
    /// the one REST stages give for the same input.
    /// </summary>
    [Fact]
    public async Task Concurrent_requests_through_grpc_stages_each_get_their_own_answer()
    {
        await using var overRest = await Router("rest-many", new StageRoute("classify", [Rest("resnet18", classify)]), new StageRoute("head", [Rest("linear", head)]));
        await using var overGrpc = await Router("grpc-many", new StageRoute("classify", [Grpc("resnet18", classify)]), new StageRoute("head", [Grpc("linear", head)]));
        HttpContent Body(int seed)
        {
            int rows = 1 + seed % 3;
            var images = models.Images(rows, seed);
            long[] shape = [rows, 3, TestModels.Resolution, TestModels.Resolution];
            if (seed % 2 == 0) return V2.Json(V2.Request("input", shape, images, id: $"r-{seed}"));
            string header = $$$"""{"id":"r-{{{seed}}}","inputs":[{"name":"input","datatype":"FP32","shape":[{{{string.Join(",", shape)}}}],"parameters":{"binary_data_size":{{{images.Length * 4}}}}}]}""";
            return V2.Binary(header, System.Runtime.InteropServices.MemoryMarshal.AsBytes(images.AsSpan()));
        }
        async Task<(string Id, float[] Probabilities)> Answer(RunningServer router, int seed)
        {
            var response = await router.Client.PostAsync("/v2/models/two-stage/infer", Body(seed), Cancel);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            string text = await response.Content.ReadAsStringAsync(Cancel); // JSON outputs: no binary_data_output was asked
            return (JsonDocument.Parse(text).RootElement.GetProperty("id").GetString()!, await V2.Output(response, "probabilities"));
        }

        var seeds = Enumerable.Range(0, 24).ToList();
        var expected = await Task.WhenAll(seeds.Select(seed => Answer(overRest, seed)));
        var actual = await Task.WhenAll(seeds.Select(seed => Answer(overGrpc, seed)));

        for (int i = 0; i < seeds.Count; i++)
        {
            Assert.Equal($"r-{seeds[i]}", actual[i].Id);
            Assert.Equal(TestModels.HeadClasses * (1 + seeds[i] % 3), actual[i].Probabilities.Length);
            // Batches formed differently may round differently in the last bits; another image's answer differs far more.
            for (int j = 0; j < actual[i].Probabilities.Length; j++) Assert.Equal(expected[i].Probabilities[j], actual[i].Probabilities[j], 5);
        }
    }

    /// <summary>
    /// A client's error comes back as over REST, naming the stage; a gRPC variant that cannot be reached is retried on
    /// the stage's other variant, and alone it is a 502 naming it.
    /// </summary>
    [Fact]
    public async Task A_grpc_stage_refuses_and_fails_over_as_a_rest_stage_does()
    {
        var dead = new VariantRoute("gone", "http://127.0.0.1:9/", 1, StageTransport.Grpc);
        await using var router = await Router("failover", new StageRoute("classify", [dead, Grpc("resnet18", classify)]), new StageRoute("head", [Grpc("linear", head)]));
        string good = V2.Request("input", ImageShape, models.Images(1, 5));

        for (int i = 0; i < 4; i++)
            Assert.Equal(HttpStatusCode.OK, (await router.Client.PostAsync("/v2/models/two-stage/infer", V2.Json(good), Cancel)).StatusCode);
        Assert.True(await router.Metric("adaptive_router_retries_total{pipeline=\"two-stage\",stage=\"classify\"}") >= 1);
        Assert.True(await router.Metric("adaptive_pipeline_stage_requests_total{pipeline=\"two-stage\",stage=\"classify\",variant=\"gone\",code=\"5xx\"}") >= 1);

        var bad = await router.Client.PostAsync("/v2/models/two-stage/infer", V2.Json("{\"inputs\":[{\"name\":\"image\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]}]}"), Cancel);
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Equal("stage 'classify' (variant 'resnet18'): unknown input 'image'; the model's inputs are input", await V2.Error(bad));

        // Past the first stage: the head refuses a request whose row count its model rejects, over gRPC, and that is the client's 400 too.
        var rows = await router.Client.PostAsync("/v2/models/two-stage/infer", V2.Json(V2.Request("input", [9, 3, TestModels.Resolution, TestModels.Resolution], models.Images(9, 1))), Cancel);
        Assert.Equal(HttpStatusCode.BadRequest, rows.StatusCode);
        Assert.Contains("more than the max batch size 8", await V2.Error(rows));

        await using var alone = await Router("dead", new StageRoute("classify", [dead]));
        var unreachable = await alone.Client.PostAsync("/v2/models/two-stage/infer", V2.Json(good), Cancel);
        Assert.Equal(HttpStatusCode.BadGateway, unreachable.StatusCode);
        Assert.Matches(@"^stage 'classify' \(variant 'gone'\) at http://127.0.0.1:9/ is unreachable", await V2.Error(unreachable));
    }

    /// <summary>
    /// A gRPC variant that takes the connection and never answers (not even HTTP/2's preface) holds a request only for
    /// its try's share of the deadline: the request goes to the other variant and succeeds, and the hung one is ejected.
    /// </summary>
    [Fact]
    public async Task A_hung_grpc_variant_costs_its_share_of_the_deadline_and_is_ejected()
    {
        using var hung = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        hung.Start(); // accepts into its backlog, reads nothing, answers nothing
        var silent = new VariantRoute("hung", $"http://127.0.0.1:{((IPEndPoint)hung.LocalEndpoint).Port}/", 1, StageTransport.Grpc);
        string path = Path.Combine(directory, "hung.json");
        File.WriteAllText(path, new RouterConfig("two-stage", [new StageRoute("classify", [silent, Grpc("resnet18", classify)])]).Write());
        await using var router = await RunningServer.StartRouter(new RouterOptions(RunningServer.Http(requestTimeoutMs: 3000) with { GrpcPort = 0 }, path, TimeSpan.FromMilliseconds(50), 64));
        string body = V2.Request("input", ImageShape, models.Images(1, 6));

        for (int i = 0; i < 6; i++)
        {
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            var response = await router.Client.PostAsync("/v2/models/two-stage/infer", V2.Json(body), Cancel);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.True(System.Diagnostics.Stopwatch.GetElapsedTime(started) < TimeSpan.FromSeconds(3), "a request waited past its deadline");
        }
        Assert.True(await router.Metric("adaptive_pipeline_stage_requests_total{pipeline=\"two-stage\",stage=\"classify\",variant=\"hung\",code=\"5xx\"}") >= 1);
        Assert.Equal(1, await router.Metric("adaptive_router_ejections_total{pipeline=\"two-stage\",stage=\"classify\",variant=\"hung\"}"));
    }

    /// <summary>
    /// A stage's answer that does not hold what it declares is refused before any array is taken for it (a shape of
    /// 50 million floats over 8 bytes allocates nothing); a sound one keeps JSON or binary per output as the request asked.
    /// </summary>
    [Fact]
    public void A_stage_answer_is_checked_against_its_bytes_before_it_is_converted()
    {
        static ModelInferResponse Answer(long[] shape, byte[] raw, string datatype = "FP32")
        {
            var response = new ModelInferResponse { ModelName = "head", Id = "a-1" };
            response.Outputs.Add(new ModelInferResponse.Types.InferOutputTensor { Name = "probabilities", Datatype = datatype, Shape = { shape } });
            response.RawOutputContents.Add(ByteString.CopyFrom(raw));
            return response;
        }
        var asked = new Adaptive.ModelServer.Protocol.InferRequest(null, [], [new Adaptive.ModelServer.Protocol.RequestedOutput("probabilities", Binary: true)]);

        long before = GC.GetAllocatedBytesForCurrentThread();
        var huge = Assert.Throws<InvalidDataException>(() => GrpcTensors.ToRest(Answer([1, 50_000_000], new byte[8]), asked));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, "the answer's claimed size was allocated");
        Assert.Contains("output 'probabilities' of shape [1,50000000] has 8 bytes of FP32", huge.Message);
        Assert.Throws<InvalidDataException>(() => GrpcTensors.ToRest(Answer([1_000_000_000, 1_000_000_000, 1_000_000_000], new byte[8]), asked));
        Assert.Throws<InvalidDataException>(() => GrpcTensors.ToRest(Answer([1, 3], new byte[8]), asked));
        Assert.Throws<InvalidDataException>(() => GrpcTensors.ToRest(Answer([-1, 2], new byte[8]), asked));
        Assert.Throws<InvalidDataException>(() => GrpcTensors.ToRest(Answer([2], [5, 0, 0, 0, 1], "BYTES"), asked));

        var (body, headerLength) = GrpcTensors.ToRest(Answer([1, 2], [.. BitConverter.GetBytes(0.25f), .. BitConverter.GetBytes(0.75f)]), asked);
        Assert.NotNull(headerLength);
        Assert.Equal([0.25f, 0.75f], System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(body.AsSpan(headerLength.Value)).ToArray());
        var (json, none) = GrpcTensors.ToRest(Answer([1, 2], [.. BitConverter.GetBytes(0.25f), .. BitConverter.GetBytes(0.75f)]), asked with { RequestedOutputs = null });
        Assert.Null(none);
        Assert.Equal([0.25f, 0.75f], JsonDocument.Parse(json).RootElement.GetProperty("outputs")[0].GetProperty("data").EnumerateArray().Select(v => v.GetSingle()));
    }

    /// <summary>The prober asks a gRPC variant over gRPC: ready while it serves, not once it drains or is gone.</summary>
    [Fact]
    public async Task Readiness_of_a_grpc_variant_is_asked_over_grpc()
    {
        await using var server = await RunningServer.StartModel(RunningServer.ModelOptions(models.Head, name: "head", variant: "linear"));
        using var client = new GrpcStageClient(1 << 20);
        string endpoint = server.GrpcAddress!.ToString();

        Assert.True(await client.Ready(endpoint, Cancel));
        var metadata = await client.Metadata("head", new VariantRoute("linear", endpoint, 1, StageTransport.Grpc), Cancel);
        Assert.Equal("features", (string)metadata["inputs"]![0]!["name"]!);
        await server.StopAsync();
        Assert.False(await client.Ready(endpoint, Cancel));
        Assert.False(await client.Ready("http://127.0.0.1:9/", Cancel));
    }
}
