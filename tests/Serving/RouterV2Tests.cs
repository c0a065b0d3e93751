using System.Net;
using System.Text.Json;
using Adaptive.Core.Routing;
using Adaptive.ModelServer.Grpc.V2;
using Adaptive.ModelServer.Routing;
using Adaptive.Tests.Support;
using Google.Protobuf;
using Grpc.Core;

namespace Adaptive.Tests.Serving;

/// <summary>
/// The router as a v2 model of its own, over REST and gRPC: the pipeline's metadata (the first stage's inputs,
/// the last stage's outputs), answers named for the pipeline, and each stage's time in Server-Timing.
/// </summary>
[Collection("serving")]
public sealed class RouterV2Tests(TestModels models) : IAsyncLifetime
{
    static readonly CancellationToken Cancel = TestContext.Current.CancellationToken;
    readonly string configPath = Path.Combine(Directory.CreateTempSubdirectory("adaptive-router-").FullName, "routes.json");
    RunningServer classify = null!, head = null!, router = null!;

    static long[] ImageShape => [1, 3, TestModels.Resolution, TestModels.Resolution];

    public async ValueTask InitializeAsync()
    {
        classify = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18, variant: "resnet18"));
        head = await RunningServer.StartModel(RunningServer.ModelOptions(models.Head, name: "head", variant: "linear"));
        File.WriteAllText(configPath, new RouterConfig("two-stage",
            [new StageRoute("classify", [new VariantRoute("resnet18", classify.Address.ToString(), 1)]), new StageRoute("head", [new VariantRoute("linear", head.Address.ToString(), 1)])]).Write());
        router = await RunningServer.StartRouter(new RouterOptions(RunningServer.Http() with { GrpcPort = 0 }, configPath, TimeSpan.FromMilliseconds(50), 64));
    }

    public async ValueTask DisposeAsync()
    {
        await router.DisposeAsync();
        await head.DisposeAsync();
        await classify.DisposeAsync();
        Directory.Delete(Path.GetDirectoryName(configPath)!, recursive: true);
    }

    [Fact]
    public async Task Rest_metadata_describes_the_pipeline_as_one_model()
    {
        var server = JsonDocument.Parse(await router.Client.GetStringAsync("/v2", Cancel)).RootElement;
        Assert.Equal(["binary_tensor_data"], server.GetProperty("extensions").EnumerateArray().Select(e => e.GetString()));

        foreach (string path in new[] { "/v2/models/two-stage", "/v2/models/two-stage/versions/1" })
        {
            var metadata = JsonDocument.Parse(await router.Client.GetStringAsync(path, Cancel)).RootElement;
            Assert.Equal("two-stage", metadata.GetProperty("name").GetString());
            Assert.Equal("ensemble", metadata.GetProperty("platform").GetString());
            Assert.Equal("input", metadata.GetProperty("inputs")[0].GetProperty("name").GetString());
            Assert.Equal("probabilities", metadata.GetProperty("outputs")[0].GetProperty("name").GetString());
        }
        Assert.Equal(HttpStatusCode.OK, (await router.Client.GetAsync("/v2/models/two-stage/versions/1/ready", Cancel)).StatusCode);
        var other = await router.Client.GetAsync("/v2/models/two-stage/versions/3", Cancel);
        Assert.Equal(HttpStatusCode.NotFound, other.StatusCode);
        Assert.Contains("unknown version '3'", await V2.Error(other));
    }

    [Fact]
    public async Task Rest_answers_are_named_for_the_pipeline_with_each_stage_timed()
    {
        var response = await router.Client.PostAsync("/v2/models/two-stage/versions/1/infer", V2.Json(V2.Request("input", ImageShape, models.Images(1, 3), id: "p-1")), Cancel);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var answer = JsonDocument.Parse(await response.Content.ReadAsStringAsync(Cancel)).RootElement;
        Assert.Equal(("two-stage", "1", "p-1"), (answer.GetProperty("model_name").GetString(), answer.GetProperty("model_version").GetString(), answer.GetProperty("id").GetString()));
        Assert.Matches(@"^classify;dur=[0-9.]+, head;dur=[0-9.]+$", response.Headers.GetValues("Server-Timing").Single());
        Assert.Equal(TestModels.HeadClasses, (await V2.Output(response, "probabilities")).Length);
    }

    [Fact]
    public async Task Grpc_gives_what_rest_gives_through_the_pipeline()
    {
        var images = models.Images(1, 6);
        var rest = await V2.Output(await router.Client.PostAsync("/v2/models/two-stage/infer", V2.Json(V2.Request("input", ImageShape, images)), Cancel), "probabilities");
        var (client, channel) = router.GrpcClient();
        using var _ = channel;

        var metadata = await client.ModelMetadataAsync(new ModelMetadataRequest { Name = "two-stage" }, cancellationToken: Cancel);
        Assert.Equal(("two-stage", "ensemble"), (metadata.Name, metadata.Platform));
        Assert.Equal(("input", "probabilities"), (metadata.Inputs.Single().Name, metadata.Outputs.Single().Name));
        Assert.True((await client.ServerReadyAsync(new ServerReadyRequest(), cancellationToken: Cancel)).Ready);

        var request = new ModelInferRequest { ModelName = "two-stage", Id = "g-1" };
        request.Inputs.Add(new ModelInferRequest.Types.InferInputTensor { Name = "input", Datatype = "FP32", Shape = { ImageShape } });
        request.RawInputContents.Add(ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(images.AsSpan())));
        using var call = client.ModelInferAsync(request, cancellationToken: Cancel);
        var answer = await call.ResponseAsync;

        Assert.Equal(("two-stage", "g-1"), (answer.ModelName, answer.Id));
        Assert.Equal("probabilities", answer.Outputs.Single().Name);
        Assert.Equal(rest, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(answer.RawOutputContents.Single().Span).ToArray());
        Assert.Matches(@"^classify;dur=[0-9.]+, head;dur=[0-9.]+$", (await call.ResponseHeadersAsync).GetValue("server-timing"));
        Assert.Equal(2, await router.Metric("adaptive_pipeline_requests_total{pipeline=\"two-stage\",outcome=\"success\"}"));
    }

    [Fact]
    public async Task Grpc_refusals_match_rest()
    {
        var (client, channel) = router.GrpcClient();
        using var _ = channel;
        var request = new ModelInferRequest { ModelName = "other" };
        request.Inputs.Add(new ModelInferRequest.Types.InferInputTensor { Name = "image", Datatype = "FP32", Shape = { 1 }, Contents = new InferTensorContents { Fp32Contents = { 1f } } });

        var unknown = await Assert.ThrowsAsync<RpcException>(() => client.ModelInferAsync(request, cancellationToken: Cancel).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, unknown.StatusCode);
        Assert.Equal("unknown pipeline 'other'; this router serves 'two-stage'", unknown.Status.Detail);

        request.ModelName = "two-stage";
        var bad = await Assert.ThrowsAsync<RpcException>(() => client.ModelInferAsync(request, cancellationToken: Cancel).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, bad.StatusCode);
        Assert.Equal("stage 'classify' (variant 'resnet18'): unknown input 'image'; the model's inputs are input", bad.Status.Detail);
        Assert.Equal(1, await router.Metric("adaptive_pipeline_requests_total{pipeline=\"two-stage\",outcome=\"bad_request\"}"));
    }

    /// <summary>A stage that cannot be reached is UNAVAILABLE over gRPC (502 over REST), naming the stage, and counted as the router's error.</summary>
    [Fact]
    public async Task Grpc_calls_through_a_dead_stage_are_unavailable()
    {
        string config = Path.Combine(Path.GetDirectoryName(configPath)!, "dead.json");
        File.WriteAllText(config, new RouterConfig("dead", [new StageRoute("classify", [new VariantRoute("gone", "http://127.0.0.1:9/", 1)])]).Write());
        await using var dead = await RunningServer.StartRouter(new RouterOptions(RunningServer.Http() with { GrpcPort = 0 }, config, TimeSpan.FromMilliseconds(50), 64));
        var (client, channel) = dead.GrpcClient();
        using var _ = channel;
        var request = new ModelInferRequest { ModelName = "dead" };
        request.Inputs.Add(new ModelInferRequest.Types.InferInputTensor { Name = "input", Datatype = "FP32", Shape = { ImageShape } });
        request.RawInputContents.Add(ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(models.Images(1, 2).AsSpan())));

        var refused = await Assert.ThrowsAsync<RpcException>(() => client.ModelInferAsync(request, cancellationToken: Cancel).ResponseAsync);

        Assert.Equal(StatusCode.Unavailable, refused.StatusCode);
        Assert.Contains("stage 'classify' (variant 'gone')", refused.Status.Detail);
        Assert.Equal(1, await dead.Metric("adaptive_pipeline_requests_total{pipeline=\"dead\",outcome=\"error\"}"));
    }
}
