using System.Net;
using Adaptive.ModelServer.Grpc.V2;
using Adaptive.Tests.Support;
using Google.Protobuf;
using Grpc.Core;

namespace Adaptive.Tests.Serving;

/// <summary>
/// The model server's gRPC service (inference.GRPCInferenceService) against its REST side: the same model,
/// answers and refusals through the same batcher, with status codes that match REST's.
/// </summary>
[Collection("serving")]
public sealed class GrpcTests(TestModels models)
{
    static readonly CancellationToken Cancel = TestContext.Current.CancellationToken;
    const string Logits = "adaptive_model_requests_total{{model=\"classify\",variant=\"resnet18\",outcome=\"{0}\"}}";

    static long[] ImageShape(int rows) => [rows, 3, TestModels.Resolution, TestModels.Resolution];

    static ModelInferRequest Raw(float[] images, int rows, string model = "classify")
    {
        var request = new ModelInferRequest { ModelName = model, Id = "raw-1" };
        request.Inputs.Add(new ModelInferRequest.Types.InferInputTensor { Name = "input", Datatype = "FP32", Shape = { ImageShape(rows) } });
        request.RawInputContents.Add(ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(images.AsSpan())));
        return request;
    }

    static float[] Floats(ByteString raw) => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(raw.Span).ToArray();

    [Fact]
    public async Task Health_and_metadata_match_the_rest_side()
    {
        await using var server = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18));
        var (client, channel) = server.GrpcClient();
        using var _ = channel;

        Assert.True((await client.ServerLiveAsync(new ServerLiveRequest(), cancellationToken: Cancel)).Live);
        Assert.True((await client.ServerReadyAsync(new ServerReadyRequest(), cancellationToken: Cancel)).Ready);
        Assert.True((await client.ModelReadyAsync(new ModelReadyRequest { Name = "classify", Version = "1" }, cancellationToken: Cancel)).Ready);
        var serverMetadata = await client.ServerMetadataAsync(new ServerMetadataRequest(), cancellationToken: Cancel);
        Assert.Equal("adaptive-server", serverMetadata.Name);
        Assert.Equal(["binary_tensor_data"], serverMetadata.Extensions);

        var metadata = await client.ModelMetadataAsync(new ModelMetadataRequest { Name = "classify" }, cancellationToken: Cancel);
        Assert.Equal(["1"], metadata.Versions);
        Assert.Equal("onnx_onnxv1", metadata.Platform);
        var input = Assert.Single(metadata.Inputs);
        Assert.Equal(("input", "FP32"), (input.Name, input.Datatype));
        Assert.Equal([-1L, 3, TestModels.Resolution, TestModels.Resolution], input.Shape);
        Assert.Equal(("logits", "FP32"), (metadata.Outputs.Single().Name, metadata.Outputs.Single().Datatype));

        var unknown = await Assert.ThrowsAsync<RpcException>(() => client.ModelMetadataAsync(new ModelMetadataRequest { Name = "other" }, cancellationToken: Cancel).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, unknown.StatusCode);
        Assert.Contains("'other'", unknown.Status.Detail);
        var version = await Assert.ThrowsAsync<RpcException>(() => client.ModelReadyAsync(new ModelReadyRequest { Name = "classify", Version = "2" }, cancellationToken: Cancel).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, version.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await server.Client.GetAsync("/v2/models/classify/versions/2", Cancel)).StatusCode);
    }

    /// <summary>Raw and typed contents over gRPC give what REST gives for the same images, with the request's id and the server's timing.</summary>
    [Fact]
    public async Task Raw_and_typed_contents_answer_as_rest_does()
    {
        await using var server = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18));
        var (client, channel) = server.GrpcClient();
        using var _ = channel;
        var images = models.Images(2, seed: 5);

        var rest = await server.Client.PostAsync("/v2/models/classify/versions/1/infer", V2.Json(V2.Request("input", ImageShape(2), images)), Cancel);
        Assert.Equal(HttpStatusCode.OK, rest.StatusCode);
        var expected = await V2.Output(rest, "logits");

        using var call = client.ModelInferAsync(Raw(images, 2), cancellationToken: Cancel);
        var raw = await call.ResponseAsync;
        Assert.Equal(("classify", "1", "raw-1"), (raw.ModelName, raw.ModelVersion, raw.Id));
        var output = Assert.Single(raw.Outputs);
        Assert.Equal(("logits", "FP32"), (output.Name, output.Datatype));
        Assert.Equal([2L, 1000], output.Shape);
        Assert.Equal(expected, Floats(raw.RawOutputContents.Single()));
        Assert.Matches(@"^queue;dur=[0-9.]+, infer;dur=[0-9.]+$", (await call.ResponseHeadersAsync).GetValue("server-timing"));

        var typed = new ModelInferRequest { ModelName = "classify", ModelVersion = "1", Outputs = { new ModelInferRequest.Types.InferRequestedOutputTensor { Name = "logits" } } };
        typed.Inputs.Add(new ModelInferRequest.Types.InferInputTensor { Name = "input", Datatype = "FP32", Shape = { ImageShape(2) }, Contents = new InferTensorContents { Fp32Contents = { images } } });
        var answer = await client.ModelInferAsync(typed, cancellationToken: Cancel);
        Assert.Equal(expected, Floats(answer.RawOutputContents.Single()));
        Assert.Equal(3, await server.Metric(string.Format(Logits, "success")));
    }

    public static TheoryData<string, Action<ModelInferRequest>, StatusCode, string> Refusals() => new()
    {
        { "an unknown model", r => r.ModelName = "other", StatusCode.NotFound, "unknown model 'other'" },
        { "an unknown version", r => r.ModelVersion = "7", StatusCode.NotFound, "unknown version '7'" },
        { "a wrong datatype", r => r.Inputs[0].Datatype = "FP64", StatusCode.InvalidArgument, "input 'input' has datatype FP64, the model expects FP32" },
        { "an unknown datatype", r => r.Inputs[0].Datatype = "FP8", StatusCode.InvalidArgument, "datatype 'FP8' is not supported" },
        { "a wrong shape", r => r.Inputs[0].Shape[1] = 4, StatusCode.InvalidArgument, "the model expects [-1,3,32,32]" },
        { "a negative dimension", r => r.Inputs[0].Shape[0] = -1, StatusCode.InvalidArgument, "negative dimension" },
        { "too many rows", r => r.Inputs[0].Shape[0] = 9, StatusCode.InvalidArgument, "more than the max batch size 8" },
        { "raw bytes short of the shape", r => r.RawInputContents[0] = ByteString.CopyFrom(r.RawInputContents[0].Span[4..]), StatusCode.InvalidArgument, "raw_input_contents has 12284 bytes" },
        { "raw and typed contents", r => r.Inputs[0].Contents = new InferTensorContents { Fp32Contents = { 1f } }, StatusCode.InvalidArgument, "not both" },
        { "no contents", r => r.RawInputContents.Clear(), StatusCode.InvalidArgument, "give its elements in contents or in raw_input_contents" },
        { "typed contents short of the shape", r => { r.RawInputContents.Clear(); r.Inputs[0].Contents = new InferTensorContents { Fp32Contents = { 1f, 2f } }; }, StatusCode.InvalidArgument, "fp32_contents has 2 elements, its shape needs 3072" },
        { "typed contents in another type's field", r => { r.RawInputContents.Clear(); r.Inputs[0].Contents = new InferTensorContents { Fp64Contents = { new double[3072] } }; }, StatusCode.InvalidArgument, "fp32_contents has 0 elements" },
        { "an unknown output", r => r.Outputs.Add(new ModelInferRequest.Types.InferRequestedOutputTensor { Name = "probabilities" }), StatusCode.InvalidArgument, "unknown output 'probabilities'" },
        { "an output asked for twice", r => r.Outputs.Add([new() { Name = "logits" }, new() { Name = "logits" }]), StatusCode.InvalidArgument, "output 'logits' is requested more than once" },
        { "an input given twice", r => { r.Inputs.Add(r.Inputs[0].Clone()); r.RawInputContents.Add(r.RawInputContents[0]); }, StatusCode.InvalidArgument, "input 'input' is given more than once" },
        { "no inputs", r => { r.Inputs.Clear(); r.RawInputContents.Clear(); }, StatusCode.InvalidArgument, "inputs is required" },
    };

    /// <summary>Every refusal is the status REST's 4xx maps to, with a message naming what is wrong, and is counted as the client's error.</summary>
    [Theory]
    [MemberData(nameof(Refusals))]
    public async Task Bad_requests_get_the_matching_status(string what, Action<ModelInferRequest> spoil, StatusCode code, string message)
    {
        await using var server = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18));
        var (client, channel) = server.GrpcClient();
        using var _ = channel;
        var request = Raw(models.Images(1, seed: 1), 1);
        spoil(request);

        var refused = await Assert.ThrowsAsync<RpcException>(() => client.ModelInferAsync(request, cancellationToken: Cancel).ResponseAsync);

        Assert.True(code == refused.StatusCode, $"{what}: {refused.StatusCode} {refused.Status.Detail}");
        Assert.Contains(message, refused.Status.Detail);
        Assert.Equal(1, await server.Metric(string.Format(Logits, code == StatusCode.NotFound ? "not_found" : "bad_request")));
        Assert.Equal(0, await server.Metric(string.Format(Logits, "error")));
        // The server still answers.
        Assert.Single((await client.ModelInferAsync(Raw(models.Images(1, seed: 1), 1), cancellationToken: Cancel)).Outputs);
    }

    [Fact]
    public async Task A_message_over_the_body_limit_is_resource_exhausted()
    {
        await using var server = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18, http: RunningServer.Http(maxBodyBytes: 16 * 1024)));
        var (client, channel) = server.GrpcClient();
        using var _ = channel;

        var refused = await Assert.ThrowsAsync<RpcException>(() => client.ModelInferAsync(Raw(models.Images(2, seed: 1), 2), cancellationToken: Cancel).ResponseAsync);

        Assert.Equal(StatusCode.ResourceExhausted, refused.StatusCode);
        Assert.Single((await client.ModelInferAsync(Raw(models.Images(1, seed: 1), 1), cancellationToken: Cancel)).Outputs);
    }

    /// <summary>
    /// Beyond the queue's room the batcher refuses at once, over gRPC as over REST: RESOURCE_EXHAUSTED with
    /// the wait in grpc-retry-pushback-ms, counted as queue_full; every request is answered one way or the other.
    /// </summary>
    [Fact]
    public async Task A_full_queue_is_resource_exhausted_with_a_retry_pushback()
    {
        await using var server = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18, maxBatch: 1, maxQueueDelayMs: 0, queueCapacity: 1));
        var (client, channel) = server.GrpcClient();
        using var _ = channel;
        var request = Raw(models.Images(1, seed: 2), 1);

        var calls = Enumerable.Range(0, 24).Select(async _ =>
        {
            try
            {
                await client.ModelInferAsync(request, cancellationToken: Cancel);
                return (StatusCode.OK, (string?)null);
            }
            catch (RpcException e)
            {
                return (e.StatusCode, e.Trailers.GetValue("grpc-retry-pushback-ms") ?? e.Status.Detail);
            }
        }).ToList();
        var answers = await Task.WhenAll(calls);

        Assert.Contains(answers, a => a.Item1 == StatusCode.OK);
        var refused = answers.Where(a => a.Item1 != StatusCode.OK).ToList();
        Assert.NotEmpty(refused);
        Assert.All(refused, a => Assert.True(a.Item1 == StatusCode.ResourceExhausted, $"{a.Item1}: {a.Item2}"));
        Assert.All(refused, a => Assert.True(long.TryParse(a.Item2, out long ms) && ms > 0, $"grpc-retry-pushback-ms '{a.Item2}'"));
        double counted = await server.Metric(string.Format(Logits, "queue_full")) + await server.Metric(string.Format(Logits, "deadline_unreachable"));
        Assert.Equal(refused.Count, counted);
    }

    /// <summary>While the server drains it says it is not ready over gRPC too, and still answers what it is sent.</summary>
    [Fact]
    public async Task Draining_turns_readiness_off_and_still_serves()
    {
        var server = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18, http: RunningServer.Http(drainDelayMs: 1500)));
        await using var _ = server;
        var (client, channel) = server.GrpcClient();
        using var __ = channel;
        Assert.True((await client.ServerReadyAsync(new ServerReadyRequest(), cancellationToken: Cancel)).Ready);

        var stopping = server.StopAsync();
        Assert.False((await client.ServerReadyAsync(new ServerReadyRequest(), cancellationToken: Cancel)).Ready);
        Assert.False((await client.ModelReadyAsync(new ModelReadyRequest { Name = "classify" }, cancellationToken: Cancel)).Ready);
        Assert.Single((await client.ModelInferAsync(Raw(models.Images(1, seed: 3), 1), cancellationToken: Cancel)).Outputs);
        await stopping;
    }

    /// <summary>
    /// Concurrent calls of different sizes, bad ones among them, batched together: each good one gets exactly what
    /// ONNX Runtime gives for its own input alone, each bad one its own refusal.
    /// </summary>
    [Fact]
    public async Task Concurrent_calls_of_different_shapes_each_get_their_own_answer()
    {
        await using var server = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18, maxBatch: 8, maxQueueDelayMs: 20));
        var (client, channel) = server.GrpcClient();
        using var _ = channel;
        using var reference = Adaptive.ModelServer.Backend.OnnxModel.Load(models.ResNet18, new Adaptive.ModelServer.Backend.RuntimeOptions(1, 1, Adaptive.ModelServer.Backend.Device.Cpu), _ => { });

        var calls = Enumerable.Range(0, 16).Select(async i =>
        {
            int rows = 1 + i % 3;
            var images = models.Images(rows, seed: 100 + i);
            var request = Raw(images, rows);
            if (i % 5 == 4) request.Inputs[0].Datatype = "INT64"; // refused, beside the others in the queue
            try
            {
                var answer = await client.ModelInferAsync(request, cancellationToken: Cancel);
                return (i, images, rows, Floats(answer.RawOutputContents.Single()), (StatusCode?)null);
            }
            catch (RpcException e)
            {
                return (i, images, rows, Array.Empty<float>(), e.StatusCode);
            }
        });
        foreach (var (i, images, rows, logits, refused) in await Task.WhenAll(calls))
        {
            if (i % 5 == 4)
            {
                Assert.Equal(StatusCode.InvalidArgument, refused);
                continue;
            }
            Assert.Null(refused);
            var alone = reference.Run([new Adaptive.ModelServer.Protocol.InferRequest(null,
                [new Adaptive.ModelServer.Protocol.Tensor("input", Adaptive.ModelServer.Protocol.TensorDataType.Fp32, ImageShape(rows), images)], null)]);
            var expected = (float[])alone[0][0].Data;
            Assert.Equal(expected.Length, logits.Length);
            for (int k = 0; k < expected.Length; k++) Assert.Equal(expected[k], logits[k], 3);
        }
    }

    /// <summary>Calls cancelled by their clients in flight leave nothing behind: counted as client_closed, nothing left in flight, the server serving.</summary>
    [Fact]
    public async Task Calls_cancelled_in_flight_are_counted_and_leave_nothing_behind()
    {
        await using var server = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18, maxBatch: 1, maxQueueDelayMs: 0, queueCapacity: 256));
        var (client, channel) = server.GrpcClient();
        using var _ = channel;
        var request = Raw(models.Images(1, seed: 8), 1);

        using var cancel = new CancellationTokenSource();
        var calls = Enumerable.Range(0, 200).Select(async _ =>
        {
            try
            {
                await client.ModelInferAsync(request, cancellationToken: cancel.Token);
                return StatusCode.OK;
            }
            catch (RpcException e)
            {
                return e.StatusCode;
            }
        }).ToList();
        await Task.Delay(10, Cancel);
        cancel.Cancel();
        var statuses = await Task.WhenAll(calls);

        // One at a time, 200 calls take longer than 10 ms: some were cancelled, the rest answered.
        Assert.Contains(StatusCode.Cancelled, statuses);
        Assert.All(statuses, status => Assert.True(status is StatusCode.OK or StatusCode.Cancelled, $"{status}"));
        const string InFlight = "adaptive_model_inflight_requests{model=\"classify\",variant=\"resnet18\"}";
        for (int i = 0; i < 200 && await server.Metric(InFlight) > 0; i++) await Task.Delay(25, Cancel);
        Assert.Equal(0, await server.Metric(InFlight));
        // A call cancelled before its handler ran is not counted at all; one that ran ends as success or client_closed, never as a fault.
        Assert.True(await server.Metric(string.Format(Logits, "success")) >= statuses.Count(status => status == StatusCode.OK));
        Assert.Equal(0, await server.Metric(string.Format(Logits, "error")));
        Assert.Single((await client.ModelInferAsync(request, cancellationToken: Cancel)).Outputs);
    }

    /// <summary>
    /// The budget of request bytes covers gRPC messages before they are read: beyond it a call is refused at once,
    /// RESOURCE_EXHAUSTED with a pushback, counted as queue_full; once the calls that fit are answered, room is back.
    /// </summary>
    [Fact]
    public async Task Messages_beyond_the_body_budget_are_refused_before_they_are_read()
    {
        // Room for two one-image messages (12,288 bytes of pixels each) at a time.
        var options = RunningServer.ModelOptions(models.ResNet18, maxBatch: 8, maxQueueDelayMs: 200) with { BodyBudgetBytes = 30_000 };
        await using var server = await RunningServer.StartModel(options);
        var (client, channel) = server.GrpcClient();
        using var _ = channel;
        var request = Raw(models.Images(1, seed: 12), 1);

        var answers = await Task.WhenAll(Enumerable.Range(0, 12).Select(async _ =>
        {
            try
            {
                await client.ModelInferAsync(request, cancellationToken: Cancel);
                return (StatusCode.OK, (string?)null);
            }
            catch (RpcException e)
            {
                return (e.StatusCode, e.Trailers.GetValue("grpc-retry-pushback-ms") ?? e.Status.Detail);
            }
        }));

        var refused = answers.Where(a => a.Item1 != StatusCode.OK).ToList();
        Assert.InRange(answers.Count(a => a.Item1 == StatusCode.OK), 1, 11);
        Assert.All(refused, a => Assert.True(a.Item1 == StatusCode.ResourceExhausted && a.Item2 == "1000", $"{a.Item1}: {a.Item2}"));
        Assert.Equal(refused.Count, await server.Metric(string.Format(Logits, "queue_full")));
        Assert.Single((await client.ModelInferAsync(request, cancellationToken: Cancel)).Outputs);
    }

    /// <summary>
    /// A message that trickles in (its length prefix, then a few bytes a second) holds its share of the body budget only
    /// until the request's deadline, as a slow REST body does: then the call ends, and the budget serves the others again.
    /// </summary>
    [Fact]
    public async Task A_message_that_trickles_in_holds_the_body_budget_no_longer_than_the_deadline()
    {
        // Room for one one-image message (12,288 bytes of pixels) at a time; a 3 s deadline.
        var options = RunningServer.ModelOptions(models.ResNet18, maxBatch: 8, http: RunningServer.Http(requestTimeoutMs: 3000)) with { BodyBudgetBytes = 20_000 };
        await using var server = await RunningServer.StartModel(options);
        var (client, channel) = server.GrpcClient();
        using var _ = channel;
        var request = Raw(models.Images(1, seed: 13), 1);
        byte[] message = request.ToByteArray();

        using var http = new HttpClient(new SocketsHttpHandler());
        var trickle = new HttpRequestMessage(HttpMethod.Post, new Uri(server.GrpcAddress!, "/inference.GRPCInferenceService/ModelInfer"))
        {
            Version = System.Net.HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact, // the gRPC port speaks HTTP/2 only
            Content = new TrickledMessage(message, bytesPerSecond: 500, Cancel),
        };
        trickle.Content.Headers.ContentType = new("application/grpc");
        trickle.Headers.TE.ParseAdd("trailers");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var trickling = http.SendAsync(trickle, HttpCompletionOption.ResponseHeadersRead, Cancel);

        // While it holds the budget, other calls are refused; after its deadline, they are served.
        await Task.Delay(1000, Cancel); // the trickle's first bytes have long arrived
        var refused = await Assert.ThrowsAsync<RpcException>(() => client.ModelInferAsync(request, cancellationToken: Cancel).ResponseAsync);
        Assert.Equal(StatusCode.ResourceExhausted, refused.StatusCode);
        while (true)
        {
            try
            {
                Assert.Single((await client.ModelInferAsync(request, cancellationToken: Cancel)).Outputs);
                break;
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.ResourceExhausted && clock.Elapsed < TimeSpan.FromSeconds(30))
            {
                await Task.Delay(100, Cancel);
            }
        }
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(12), $"the budget came back after {clock.Elapsed}; trickling the whole message takes {message.Length / 500} s");
        // The trickled call itself ends with the status a slow REST body's 408 maps to.
        using var answer = await trickling;
        await answer.Content.ReadAsByteArrayAsync(Cancel);
        var headers = answer.Headers.Concat(answer.TrailingHeaders).ToDictionary(h => h.Key, h => h.Value.Single());
        Assert.Equal(((int)StatusCode.DeadlineExceeded).ToString(System.Globalization.CultureInfo.InvariantCulture), headers["grpc-status"]);
        Assert.Equal("the message did not arrive within the request's 3000 ms deadline", Uri.UnescapeDataString(headers["grpc-message"]));
    }

    /// <summary>A gRPC message, its 5-byte length prefix first, sent a few bytes at a time.</summary>
    sealed class TrickledMessage(byte[] message, int bytesPerSecond, CancellationToken cancel) : HttpContent
    {
        protected override async Task SerializeToStreamAsync(Stream stream, System.Net.TransportContext? context)
        {
            var framed = new byte[5 + message.Length];
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(framed.AsSpan(1), (uint)message.Length);
            message.CopyTo(framed, 5);
            int chunk = Math.Max(1, bytesPerSecond / 10);
            for (int at = 0; at < framed.Length; at += chunk)
            {
                await stream.WriteAsync(framed.AsMemory(at, Math.Min(chunk, framed.Length - at)), cancel);
                await stream.FlushAsync(cancel);
                await Task.Delay(100, cancel);
            }
        }

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }
    }
}
