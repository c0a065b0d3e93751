using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Adaptive.Core.Routing;
using Adaptive.ModelServer.Grpc.V2;
using Adaptive.ModelServer.Hosting;
using Adaptive.ModelServer.Protocol;
using Adaptive.ModelServer.Routing;
using Grpc.Core;
using Grpc.Net.Client;

namespace Adaptive.ModelServer.Grpc;

/// <summary>
/// Stage calls over gRPC (<c>"transport": "grpc"</c> in the router's configuration). The REST-shaped payload is read
/// against the stage's inputs (from its metadata) and sent with every input in <c>raw_input_contents</c>; the answer
/// comes back in the encoding the payload asked for, JSON or binary per output. The server gets its time as the
/// call's deadline. Statuses map to the REST ones the forwarder knows: INVALID_ARGUMENT 400, NOT_FOUND 404,
/// RESOURCE_EXHAUSTED 429 (with the pushback as its wait), and, as the variant's fault, DEADLINE_EXCEEDED 504,
/// UNAVAILABLE 502 when it cannot be reached and 503 otherwise, anything else 502.
/// </summary>
public sealed class GrpcStageClient(long maxMessageBytes) : IStageClient, IDisposable
{
    /// <summary>Channels and input contracts are kept per endpoint; beyond this many (configurations come and go) they are dropped and made anew.</summary>
    const int MaxKept = 256;
    static readonly TensorArrayPool NoReuse = new(0);

    readonly SocketsHttpHandler handler = new()
    {
        PooledConnectionLifetime = TimeSpan.FromMinutes(1), // see Service endpoint changes
        ConnectTimeout = TimeSpan.FromSeconds(2),
        EnableMultipleHttp2Connections = true,
    };
    readonly ConcurrentDictionary<string, GrpcChannel> channels = new();
    readonly ConcurrentDictionary<(string Endpoint, string Stage), InputContract> contracts = new();

    public async Task<StageMessage> Infer(string stage, VariantRoute variant, StageMessage payload, TimeSpan serverTime, CancellationToken cancellation)
    {
        string where = StageFailure.Where(stage, variant);
        var contract = await Contract(stage, variant, cancellation);
        InferRequest asked;
        try
        {
            asked = InferRequestReader.ReadBody(payload.Body, payload.HeaderLength, NoReuse, contract);
        }
        catch (ProtocolException e)
        {
            throw new StageFailure(HttpHosting.StatusOf(e.Kind), $"{where}: {e.Message}");
        }
        ModelInferResponse response;
        try
        {
            response = await Client(variant.Endpoint).ModelInferAsync(GrpcTensors.ToGrpc(asked, stage), deadline: DateTime.UtcNow + serverTime, cancellationToken: cancellation);
        }
        catch (RpcException e)
        {
            throw Failure(e, where, variant.Endpoint);
        }
        try
        {
            var (body, headerLength) = GrpcTensors.ToRest(response, asked);
            return new StageMessage(body, headerLength);
        }
        catch (InvalidDataException e)
        {
            throw new StageFailure(StatusCodes.Status502BadGateway, $"{where} answered with {e.Message}", variantFailed: true);
        }
    }

    public async Task<JsonObject> Metadata(string stage, VariantRoute variant, CancellationToken cancellation)
    {
        var metadata = await ModelMetadata(stage, variant, $"the metadata of {StageFailure.Where(stage, variant)}", cancellation);
        static JsonArray Tensors(IEnumerable<ModelMetadataResponse.Types.TensorMetadata> tensors) =>
            [.. tensors.Select(t => (JsonNode)new JsonObject { ["name"] = t.Name, ["datatype"] = t.Datatype, ["shape"] = new JsonArray([.. t.Shape.Select(d => (JsonNode)d)]) })];
        return new JsonObject
        {
            ["name"] = metadata.Name,
            ["versions"] = new JsonArray([.. metadata.Versions.Select(v => (JsonNode)v)]),
            ["platform"] = metadata.Platform,
            ["inputs"] = Tensors(metadata.Inputs),
            ["outputs"] = Tensors(metadata.Outputs),
        };
    }

    public async Task<bool> Ready(string endpoint, CancellationToken cancellation)
    {
        try
        {
            return (await Client(endpoint).ServerReadyAsync(new ServerReadyRequest(), cancellationToken: cancellation)).Ready;
        }
        catch (RpcException)
        {
            return false;
        }
    }

    /// <summary>The stage's inputs as the variant declares them: the payload is read against them, as its server would.</summary>
    async Task<InputContract> Contract(string stage, VariantRoute variant, CancellationToken cancellation)
    {
        if (contracts.TryGetValue((variant.Endpoint, stage), out var known)) return known;
        var metadata = await ModelMetadata(stage, variant, StageFailure.Where(stage, variant), cancellation);
        var inputs = new List<TensorSpec>();
        foreach (var input in metadata.Inputs)
        {
            var type = TensorDataTypes.FromProtocolName(input.Datatype)
                ?? throw new StageFailure(StatusCodes.Status502BadGateway, $"{StageFailure.Where(stage, variant)} declares input '{input.Name}' of datatype '{input.Datatype}'");
            inputs.Add(new TensorSpec(input.Name, type, [.. input.Shape]));
        }
        if (contracts.Count >= MaxKept) contracts.Clear();
        // The rows are the server's to limit: it knows its max batch size.
        return contracts[(variant.Endpoint, stage)] = new InputContract(inputs, maxRows: long.MaxValue);
    }

    /// <param name="where">What a failure names: the inference call that needed it, or the metadata request itself.</param>
    async Task<ModelMetadataResponse> ModelMetadata(string stage, VariantRoute variant, string where, CancellationToken cancellation)
    {
        try
        {
            return await Client(variant.Endpoint).ModelMetadataAsync(new ModelMetadataRequest { Name = stage }, cancellationToken: cancellation);
        }
        catch (RpcException e)
        {
            throw Failure(e, where, variant.Endpoint);
        }
    }

    GRPCInferenceService.GRPCInferenceServiceClient Client(string endpoint)
    {
        if (!channels.TryGetValue(endpoint, out var channel))
        {
            if (channels.Count >= MaxKept) channels.Clear(); // the handler owns the connections: a dropped channel holds none
            channel = channels.GetOrAdd(endpoint, address => GrpcChannel.ForAddress(address, new GrpcChannelOptions
            {
                HttpHandler = handler,
                DisposeHttpClient = false,
                MaxReceiveMessageSize = (int)Math.Min(maxMessageBytes, int.MaxValue),
                MaxSendMessageSize = null, // the request was within the router's body limit
                ThrowOperationCanceledOnCancellation = true, // as HttpClient does: the forwarder tells its deadline from the client's
            }));
        }
        return new GRPCInferenceService.GRPCInferenceServiceClient(channel);
    }

    static StageFailure Failure(RpcException e, string where, string endpoint)
    {
        string detail = e.Status.Detail;
        return e.StatusCode switch
        {
            StatusCode.InvalidArgument => new StageFailure(StatusCodes.Status400BadRequest, $"{where}: {detail}"),
            StatusCode.NotFound => new StageFailure(StatusCodes.Status404NotFound, $"{where}: {detail}"),
            StatusCode.ResourceExhausted => new StageFailure(StatusCodes.Status429TooManyRequests, $"{where}: {detail}", Pushback(e)),
            StatusCode.DeadlineExceeded => new StageFailure(StatusCodes.Status504GatewayTimeout, $"{where} did not answer in time: {detail}", variantFailed: true),
            // The client's own failure to connect carries its exception; a server's UNAVAILABLE (draining) does not.
            StatusCode.Unavailable when e.Status.DebugException is { } unreachable =>
                new StageFailure(StatusCodes.Status502BadGateway, $"{where} at {endpoint} is unreachable: {detail} ({unreachable.Message})", variantFailed: true),
            StatusCode.Unavailable => new StageFailure(StatusCodes.Status503ServiceUnavailable, $"{where}: {detail}", Pushback(e), variantFailed: true),
            _ => new StageFailure(StatusCodes.Status502BadGateway, $"{where}: {e.StatusCode}: {detail}", variantFailed: true),
        };
    }

    static TimeSpan? Pushback(RpcException e) =>
        e.Trailers.GetValue(GrpcStatuses.PushbackHeader) is { } ms && long.TryParse(ms, System.Globalization.CultureInfo.InvariantCulture, out long wait)
            ? TimeSpan.FromMilliseconds(wait) : null;

    public void Dispose()
    {
        foreach (var channel in channels.Values) channel.Dispose();
        handler.Dispose();
    }
}
