using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.Json.Nodes;
using Adaptive.Core.Routing;
using Adaptive.ModelServer.Grpc;
using Adaptive.ModelServer.Protocol;

namespace Adaptive.ModelServer.Routing;

/// <summary>
/// One call to a stage's model servers over the transport they take (<see cref="VariantRoute.Transport"/>). The
/// forwarder keeps what is common to every transport: routing, retries, deadlines, health and metrics. Payloads
/// are REST-shaped (<see cref="StageMessage"/>: JSON, or the binary tensor data extension); a client of another
/// transport converts both ways, so that each answer has the encoding its request asked for.
/// </summary>
public interface IStageClient
{
    /// <summary>
    /// One inference call of the stage's model on one variant; <paramref name="serverTime"/> is what the server gets
    /// for it. Failures are <see cref="StageFailure"/>s; <paramref name="cancellation"/> ends it with an
    /// <see cref="OperationCanceledException"/>.
    /// </summary>
    Task<StageMessage> Infer(string stage, VariantRoute variant, StageMessage payload, TimeSpan serverTime, CancellationToken cancellation);

    /// <summary>The model's metadata as the REST API has it (<c>name</c>, <c>inputs</c>, <c>outputs</c>); a <see cref="StageFailure"/> when it cannot be read.</summary>
    Task<JsonObject> Metadata(string stage, VariantRoute variant, CancellationToken cancellation);

    /// <summary>Whether the server at <paramref name="endpoint"/> says it is ready; false when it cannot be asked.</summary>
    Task<bool> Ready(string endpoint, CancellationToken cancellation);
}

/// <summary>
/// A stage call that failed, as an HTTP status. <see cref="VariantFailed"/>: the variant, not the request, was at
/// fault (unreachable, reset, 5xx, no answer in time): worth another variant, and counted against its health.
/// </summary>
public sealed class StageFailure(int statusCode, string message, TimeSpan? retryAfter = null, bool variantFailed = false) : Exception(message)
{
    public int StatusCode { get; } = statusCode;
    public TimeSpan? RetryAfter { get; } = retryAfter;
    public bool VariantFailed { get; } = variantFailed;

    public static string Where(string stage, VariantRoute variant) => $"stage '{stage}' (variant '{variant.Name}')";
}

/// <summary>The client for each transport, over the router's one HTTP connection pool for REST and its own for gRPC.</summary>
public sealed class StageClients(RestStageClient rest, GrpcStageClient grpc)
{
    public IStageClient For(StageTransport transport) => transport == StageTransport.Grpc ? grpc : rest;

    /// <summary>The client for the variant at <paramref name="endpoint"/> in <paramref name="config"/>; REST for one no longer there.</summary>
    public IStageClient For(RouterConfig config, string endpoint) =>
        For(config.Stages.SelectMany(s => s.Variants).FirstOrDefault(v => v.Endpoint == endpoint)?.Transport ?? StageTransport.Rest);
}

/// <summary>Stage calls over REST: the payload's bytes as they are, the deadline in <see cref="StageDeadlines.TimeoutHeader"/>.</summary>
public sealed class RestStageClient(HttpClient http) : IStageClient
{
    public async Task<StageMessage> Infer(string stage, VariantRoute variant, StageMessage payload, TimeSpan serverTime, CancellationToken cancellation)
    {
        string where = StageFailure.Where(stage, variant);
        using var content = new ByteArrayContent(payload.Body);
        content.Headers.ContentType = new MediaTypeHeaderValue(payload.HeaderLength is null ? "application/json" : "application/octet-stream");
        content.Headers.Add(StageDeadlines.TimeoutHeader, serverTime.TotalMilliseconds.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture));
        if (payload.HeaderLength is { } length) content.Headers.Add(InferRequestReader.HeaderLengthHeader, length.ToString(System.Globalization.CultureInfo.InvariantCulture));
        HttpResponseMessage response;
        try
        {
            response = await http.PostAsync($"{variant.Endpoint.TrimEnd('/')}/v2/models/{stage}/infer", content, cancellation);
        }
        catch (HttpRequestException e)
        {
            throw new StageFailure(StatusCodes.Status502BadGateway, $"{where} at {variant.Endpoint} is unreachable: {e.Message}", variantFailed: true);
        }
        using (response)
        {
            byte[] body;
            try
            {
                body = await response.Content.ReadAsByteArrayAsync(cancellation);
            }
            catch (HttpRequestException e) // reset mid-answer
            {
                throw new StageFailure(StatusCodes.Status502BadGateway, $"{where} broke off its answer: {e.Message}", variantFailed: true);
            }
            if (response.IsSuccessStatusCode)
            {
                int? headerLength = response.Headers.TryGetValues(InferRequestReader.HeaderLengthHeader, out var values)
                    && int.TryParse(values.First(), System.Globalization.CultureInfo.InvariantCulture, out int parsed) ? parsed : null;
                return new StageMessage(body, headerLength);
            }
            int status = (int)response.StatusCode;
            throw new StageFailure(status is >= 400 and < 600 ? status : StatusCodes.Status502BadGateway,
                $"{where}: {ErrorMessage(body)}", response.Headers.RetryAfter?.Delta, variantFailed: status >= 500 || status < 400);
        }
    }

    public async Task<JsonObject> Metadata(string stage, VariantRoute variant, CancellationToken cancellation)
    {
        string url = $"{variant.Endpoint.TrimEnd('/')}/v2/models/{stage}";
        try
        {
            return JsonNode.Parse(await http.GetStringAsync(url, cancellation))?.AsObject() ?? throw new JsonException("an empty answer");
        }
        catch (Exception e) when (e is HttpRequestException or JsonException or InvalidOperationException)
        {
            throw new StageFailure(StatusCodes.Status502BadGateway, $"{url}: {e.Message}");
        }
    }

    public async Task<bool> Ready(string endpoint, CancellationToken cancellation)
    {
        try
        {
            using var response = await http.GetAsync($"{endpoint.TrimEnd('/')}/v2/health/ready", cancellation);
            return response.IsSuccessStatusCode;
        }
        catch (HttpRequestException)
        {
            return false;
        }
    }

    static string ErrorMessage(byte[] body)
    {
        try
        {
            using var json = JsonDocument.Parse(body);
            if (json.RootElement.TryGetProperty("error", out var error) && error.ValueKind == JsonValueKind.String) return error.GetString()!;
        }
        catch (JsonException)
        {
            // not the protocol's error format: fall through to the raw text
        }
        string text = System.Text.Encoding.UTF8.GetString(body);
        return text.Length > 200 ? text[..200] + "…" : text;
    }
}
