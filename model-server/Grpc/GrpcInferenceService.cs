using System.Diagnostics;
using Adaptive.ModelServer.Grpc.V2;
using Adaptive.ModelServer.Hosting;
using Adaptive.ModelServer.Metrics;
using Adaptive.ModelServer.Protocol;
using Adaptive.ModelServer.Scheduling;
using Adaptive.ModelServer.Serving;
using Grpc.Core;

namespace Adaptive.ModelServer.Grpc;

/// <summary>
/// The gRPC front end of the model server (<c>inference.GRPCInferenceService</c>, on <c>--grpc-port</c>): the same
/// <see cref="InferenceService"/>, batcher, limits and drain as REST. A call's deadline shortens the server's
/// request timeout, as <c>Adaptive-Timeout-Ms</c> does over REST. Refusals map to the status codes that
/// match REST's: INVALID_ARGUMENT (400), NOT_FOUND (404), RESOURCE_EXHAUSTED (413, and 429 with the wait in
/// the <c>grpc-retry-pushback-ms</c> trailer gRPC's retry policies read), DEADLINE_EXCEEDED (the deadline
/// passed while queued), INTERNAL (a server fault).
/// </summary>
public sealed class GrpcInferenceService(InferenceService service, Readiness readiness, ILogger<GrpcInferenceService> log)
    : GRPCInferenceService.GRPCInferenceServiceBase
{
    public override Task<ServerLiveResponse> ServerLive(ServerLiveRequest request, ServerCallContext context) =>
        Task.FromResult(new ServerLiveResponse { Live = true });

    public override Task<ServerReadyResponse> ServerReady(ServerReadyRequest request, ServerCallContext context) =>
        Task.FromResult(new ServerReadyResponse { Ready = !readiness.IsDraining });

    public override Task<ModelReadyResponse> ModelReady(ModelReadyRequest request, ServerCallContext context)
    {
        CheckModel(request.Name, request.Version);
        return Task.FromResult(new ModelReadyResponse { Ready = !readiness.IsDraining });
    }

    public override Task<ServerMetadataResponse> ServerMetadata(ServerMetadataRequest request, ServerCallContext context) =>
        Task.FromResult(new ServerMetadataResponse { Name = HttpHosting.ServerName, Version = HttpHosting.ServerVersion, Extensions = { HttpHosting.Extensions } });

    public override Task<ModelMetadataResponse> ModelMetadata(ModelMetadataRequest request, ServerCallContext context)
    {
        CheckModel(request.Name, request.Version);
        var response = new ModelMetadataResponse { Name = service.ModelName, Versions = { InferenceService.Version }, Platform = InferenceService.Platform };
        response.Inputs.AddRange(service.Inputs.Select(Metadata));
        response.Outputs.AddRange(service.Outputs.Select(Metadata));
        return Task.FromResult(response);
    }

    static ModelMetadataResponse.Types.TensorMetadata Metadata(TensorSpec spec) =>
        new() { Name = spec.Name, Datatype = spec.DataType.ToProtocolName(), Shape = { spec.Shape } };

    void CheckModel(string name, string version)
    {
        try
        {
            service.CheckModel(name, version);
        }
        catch (ProtocolException e)
        {
            throw Refusal(e);
        }
    }

    public override async Task<ModelInferResponse> ModelInfer(ModelInferRequest request, ServerCallContext context)
    {
        long started = Stopwatch.GetTimestamp();
        var metrics = service.Metrics;
        metrics.InFlight.Inc();
        try
        {
            service.CheckModel(request.ModelName, request.ModelVersion);
            var timeout = context.Deadline == DateTime.MaxValue ? service.RequestTimeout : Min(service.RequestTimeout, context.Deadline - DateTime.UtcNow);
            // The message's share of the body budget was taken before it was read (GrpcBodyBudget).
            var infer = GrpcTensors.Read(request, service.Contract, service.Arrays);
            var result = await service.InferAsync(infer, timeout - Stopwatch.GetElapsedTime(started));
            await context.WriteResponseHeadersAsync(new global::Grpc.Core.Metadata { { "server-timing", InferenceService.ServerTiming(result) } });
            metrics.Count(Outcome.Success);
            return GrpcTensors.Write(service.ModelName, infer.Id, result);
        }
        catch (Exception e) when (context.CancellationToken.IsCancellationRequested && e is not RpcException)
        {
            metrics.Count(Outcome.ClientClosed);
            log.LogInformation("A gRPC client of {Model} went away before its answer ({Error})", service.ModelName, e.GetType().Name);
            throw new RpcException(new Status(StatusCode.Cancelled, "the client cancelled the call"));
        }
        catch (ProtocolException e)
        {
            metrics.Count(ModelMetrics.Of(e.Kind));
            throw Refusal(e);
        }
        catch (RequestRejectedException e)
        {
            metrics.Count(e.Outcome);
            if (e.Outcome == Outcome.Timeout) throw new RpcException(new Status(StatusCode.DeadlineExceeded, e.Message));
            throw GrpcStatuses.Exception(StatusCodes.Status429TooManyRequests, e.Message, e.RetryAfter);
        }
        catch (Exception e) when (e is not RpcException)
        {
            metrics.Count(Outcome.Error);
            log.LogError(e, "Inference failed for model {Model}", service.ModelName);
            throw new RpcException(new Status(StatusCode.Internal, $"inference failed: {e.Message}"));
        }
        finally
        {
            metrics.InFlight.Dec();
            metrics.RequestDuration.Observe(Stopwatch.GetElapsedTime(started).TotalSeconds);
        }
    }

    static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;

    /// <summary>The gRPC status of a refusal, matching its REST status.</summary>
    public static RpcException Refusal(ProtocolException e) => GrpcStatuses.Exception(HttpHosting.StatusOf(e.Kind), e.Message, retryAfter: null);
}
