using Grpc.Core;

namespace Adaptive.ModelServer.Grpc;

/// <summary>One table from the REST statuses to gRPC's, so that both transports refuse a request alike.</summary>
public static class GrpcStatuses
{
    public static StatusCode Of(int httpStatus) => httpStatus switch
    {
        StatusCodes.Status400BadRequest => StatusCode.InvalidArgument,
        StatusCodes.Status404NotFound => StatusCode.NotFound,
        StatusCodes.Status408RequestTimeout or StatusCodes.Status504GatewayTimeout => StatusCode.DeadlineExceeded,
        StatusCodes.Status413PayloadTooLarge or StatusCodes.Status429TooManyRequests => StatusCode.ResourceExhausted,
        StatusCodes.Status502BadGateway or StatusCodes.Status503ServiceUnavailable => StatusCode.Unavailable,
        >= 400 and < 500 => StatusCode.InvalidArgument,
        _ => StatusCode.Internal,
    };

    /// <summary>
    /// The refusal as an RpcException; a wait to retry after goes in <c>grpc-retry-pushback-ms</c>, the trailer
    /// gRPC's retry policies read (REST's Retry-After).
    /// </summary>
    public static RpcException Exception(int httpStatus, string message, TimeSpan? retryAfter)
    {
        var trailers = new global::Grpc.Core.Metadata();
        if (retryAfter is { } wait) trailers.Add(PushbackHeader, PushbackMs(wait));
        return new RpcException(new Status(Of(httpStatus), message), trailers);
    }

    /// <summary>The trailer gRPC's retry policies read for how long to wait before retrying.</summary>
    public const string PushbackHeader = "grpc-retry-pushback-ms";

    /// <summary>A wait as whole milliseconds, at least 1 (0 would mean at once).</summary>
    public static string PushbackMs(TimeSpan wait) => Math.Max(1, (long)Math.Ceiling(wait.TotalMilliseconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
}
