using Adaptive.ModelServer.Grpc.V2;
using Adaptive.ModelServer.Hosting;
using Adaptive.ModelServer.Protocol;
using Adaptive.ModelServer.Routing;
using Grpc.Core;

namespace Adaptive.ModelServer.Grpc;

/// <summary>
/// The router's gRPC front end: the pipeline as one model, over the same forwarder (routing, retries,
/// deadlines, metrics) as REST. A request goes to the first stage as a binary-extension REST body and the
/// last stage's answer comes back as <c>raw_output_contents</c>, named for the pipeline; <c>server-timing</c>
/// in the response headers gives each stage's time.
/// </summary>
public sealed class GrpcRouterService(PipelineForwarder forwarder, Readiness readiness) : GRPCInferenceService.GRPCInferenceServiceBase
{
    public override Task<ServerLiveResponse> ServerLive(ServerLiveRequest request, ServerCallContext context) =>
        Task.FromResult(new ServerLiveResponse { Live = true });

    public override Task<ServerReadyResponse> ServerReady(ServerReadyRequest request, ServerCallContext context) =>
        Task.FromResult(new ServerReadyResponse { Ready = forwarder.StagesUsable && !readiness.IsDraining });

    public override Task<ModelReadyResponse> ModelReady(ModelReadyRequest request, ServerCallContext context)
    {
        CheckPipeline(forwarder.Routes.Current, request.Name, request.Version);
        return Task.FromResult(new ModelReadyResponse { Ready = !readiness.IsDraining });
    }

    public override Task<ServerMetadataResponse> ServerMetadata(ServerMetadataRequest request, ServerCallContext context) =>
        Task.FromResult(new ServerMetadataResponse { Name = HttpHosting.ServerName, Version = HttpHosting.ServerVersion, Extensions = { HttpHosting.Extensions } });

    public override async Task<ModelMetadataResponse> ModelMetadata(ModelMetadataRequest request, ServerCallContext context)
    {
        var route = forwarder.Routes.Current;
        CheckPipeline(route, request.Name, request.Version);
        System.Text.Json.Nodes.JsonObject metadata;
        try
        {
            metadata = await forwarder.Metadata(route, context.CancellationToken);
        }
        catch (PipelineFailure e)
        {
            throw GrpcStatuses.Exception(e.StatusCode, e.Message, e.RetryAfter);
        }
        var response = new ModelMetadataResponse { Name = route.Config.Pipeline, Versions = { Serving.InferenceService.Version }, Platform = PipelineForwarder.PipelinePlatform };
        response.Inputs.AddRange(metadata["inputs"]!.AsArray().Select(Tensor));
        response.Outputs.AddRange(metadata["outputs"]!.AsArray().Select(Tensor));
        return response;
    }

    static ModelMetadataResponse.Types.TensorMetadata Tensor(System.Text.Json.Nodes.JsonNode? spec) =>
        new() { Name = (string)spec!["name"]!, Datatype = (string)spec["datatype"]!, Shape = { spec["shape"]!.AsArray().Select(d => (long)d!) } };

    public override async Task<ModelInferResponse> ModelInfer(ModelInferRequest request, ServerCallContext context)
    {
        var route = forwarder.Routes.Current; // one configuration for the whole request
        CheckPipeline(route, request.ModelName, request.ModelVersion);
        PipelineAnswer answer;
        try
        {
            answer = await forwarder.Run(route, _ => Task.FromResult(Body(request)), context.CancellationToken);
        }
        catch (PipelineFailure e)
        {
            throw GrpcStatuses.Exception(e.StatusCode, e.Message, e.RetryAfter);
        }
        catch (Exception) when (context.CancellationToken.IsCancellationRequested)
        {
            throw new RpcException(new Status(StatusCode.Cancelled, "the client cancelled the call"));
        }
        await context.WriteResponseHeadersAsync(new global::Grpc.Core.Metadata { { "server-timing", answer.ServerTiming } });
        var response = answer.Response;
        try
        {
            return GrpcTensors.FromBinaryBody(response.Body, response.HeaderLength ?? response.Body.Length, route.Config.Pipeline);
        }
        catch (Exception e) when (e is InvalidDataException or System.Text.Json.JsonException or InvalidOperationException or NullReferenceException)
        {
            throw new RpcException(new Status(StatusCode.Internal, $"the last stage's answer is not a binary tensor answer: {e.Message}"));
        }
    }

    /// <summary>The request as the first stage's body (its share of the body budget was taken before it was read: GrpcBodyBudget).</summary>
    static StageMessage Body(ModelInferRequest request)
    {
        var (body, headerLength) = GrpcTensors.ToBinaryBody(request);
        return new StageMessage(body, headerLength);
    }

    static void CheckPipeline(RouteTable.Routes route, string name, string version)
    {
        try
        {
            PipelineForwarder.CheckPipeline(route, name, version);
        }
        catch (ProtocolException e)
        {
            throw GrpcInferenceService.Refusal(e);
        }
    }
}
