using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using Adaptive.ModelServer.Hosting;
using Grpc.Core;

namespace Adaptive.ModelServer.Grpc;

/// <summary>
/// The budget of request bytes held at once (<c>--max-inflight-body-bytes</c>) covers gRPC messages as it
/// covers REST bodies, and before they are read: gRPC buffers a whole message before the service sees it, so
/// without this many connections of many streams could each bring a message of the largest size. A middleware
/// reads the length prefix that starts a gRPC body (a compressed flag and 4 bytes, big-endian) without
/// consuming it, and takes that many bytes of the budget for the call (its handler holds the message until it
/// answers); a call that finds no room is refused at once, its message unread, with RESOURCE_EXHAUSTED and a
/// pushback of 1 s.
/// </summary>
public static class GrpcBodyBudget
{
    static readonly TimeSpan Pushback = TimeSpan.FromSeconds(1);

    /// <param name="refused">Counts a refusal (the request counter's queue_full, as a full budget is over REST).</param>
    public static void Use(WebApplication app, BodyBudget budget, TimeSpan requestTimeout, Action refused) => app.Use(async (context, next) =>
    {
        if (context.Request.ContentType?.StartsWith("application/grpc", StringComparison.Ordinal) != true)
        {
            await next(context);
            return;
        }
        // The message's size is bounded by gRPC (RESOURCE_EXHAUSTED past it) and by this budget, not by Kestrel's body
        // limit, which would reset the stream without a status.
        if (context.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
            limit.MaxRequestBodySize = null;
        long length;
        using (var deadline = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted))
        {
            deadline.CancelAfter(requestTimeout);
            try
            {
                length = await MessageLength(context.Request.BodyReader, deadline.Token);
            }
            catch (OperationCanceledException) when (!context.RequestAborted.IsCancellationRequested)
            {
                Refuse(context, StatusCode.DeadlineExceeded, $"the message did not start within the request's {requestTimeout.TotalMilliseconds:F0} ms deadline", null);
                return;
            }
        }
        using var share = budget.TryTake(length);
        if (share is null)
        {
            refused();
            Refuse(context, StatusCode.ResourceExhausted, $"the server is reading as many requests as its {budget.TotalBytes}-byte budget holds; retry shortly", Pushback);
            return;
        }
        await next(context);
    });

    /// <summary>The length the body's first message declares (0 for an empty body); the body is left as it was.</summary>
    static async Task<long> MessageLength(PipeReader body, CancellationToken cancel)
    {
        var read = await body.ReadAtLeastAsync(5, cancel);
        long length = 0;
        if (read.Buffer.Length >= 5)
        {
            Span<byte> prefix = stackalloc byte[5];
            read.Buffer.Slice(0, 5).CopyTo(prefix);
            length = BinaryPrimitives.ReadUInt32BigEndian(prefix[1..]);
        }
        body.AdvanceTo(read.Buffer.Start); // nothing consumed or examined: gRPC reads it all again
        return length;
    }

    /// <summary>A trailers-only gRPC answer: the status in the headers of a response without a body.</summary>
    static void Refuse(HttpContext context, StatusCode status, string message, TimeSpan? retryAfter)
    {
        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = "application/grpc";
        context.Response.Headers["grpc-status"] = ((int)status).ToString(System.Globalization.CultureInfo.InvariantCulture);
        context.Response.Headers["grpc-message"] = Uri.EscapeDataString(message);
        if (retryAfter is { } wait) context.Response.Headers[GrpcStatuses.PushbackHeader] = GrpcStatuses.PushbackMs(wait);
    }
}
