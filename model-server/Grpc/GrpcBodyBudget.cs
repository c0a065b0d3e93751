using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using Adaptive.ModelServer.Hosting;
using Grpc.Core;
using Microsoft.AspNetCore.Http.Features;

namespace Adaptive.ModelServer.Grpc;

/// <summary>
/// The budget of request bytes held at once (<c>--max-inflight-body-bytes</c>) covers gRPC messages as it
/// covers REST bodies, and before they are read: gRPC buffers a whole message before the service sees it, so
/// without this many connections of many streams could each bring a message of the largest size. A middleware
/// reads the length prefix that starts a gRPC body (a compressed flag and 4 bytes, big-endian) without
/// consuming it, and takes that many bytes of the budget for the call (its handler holds the message until it
/// answers); a call that finds no room is refused at once, its message unread, with RESOURCE_EXHAUSTED and a
/// pushback of 1 s. The message must arrive within the request's deadline (DEADLINE_EXCEEDED past it), so that a
/// client trickling it in holds the budget no longer than a slow REST body does.
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
        // The message must arrive within the request's deadline, as a REST body must: a client that trickles it in holds
        // its share of the budget no longer than that.
        using var deadline = new CancellationTokenSource(requestTimeout);
        string late = $"the message did not arrive within the request's {requestTimeout.TotalMilliseconds:F0} ms deadline";
        long length;
        using (var started = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, deadline.Token))
        {
            try
            {
                length = await MessageLength(context.Request.BodyReader, started.Token);
            }
            catch (OperationCanceledException) when (!context.RequestAborted.IsCancellationRequested)
            {
                Refuse(context, StatusCode.DeadlineExceeded, late, null);
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
        context.Features.Set<IRequestBodyPipeFeature>(new BodyWithDeadline(new DeadlineReader(context.Request.BodyReader, deadline.Token, late)));
        await next(context);
    });

    sealed class BodyWithDeadline(PipeReader reader) : IRequestBodyPipeFeature
    {
        public PipeReader Reader => reader;
    }

    /// <summary>
    /// The body as gRPC reads it, each read bounded by the request's deadline; past it, the call ends with DEADLINE_EXCEEDED
    /// (gRPC answers with the status of an RpcException thrown while it reads the message).
    /// </summary>
    sealed class DeadlineReader(PipeReader inner, CancellationToken deadline, string message) : PipeReader
    {
        public override async ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
        {
            using var both = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, deadline);
            try
            {
                return await inner.ReadAsync(both.Token);
            }
            catch (OperationCanceledException) when (deadline.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                throw new RpcException(new Status(StatusCode.DeadlineExceeded, message));
            }
        }

        public override bool TryRead(out ReadResult result) => inner.TryRead(out result);
        public override void AdvanceTo(SequencePosition consumed) => inner.AdvanceTo(consumed);
        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined) => inner.AdvanceTo(consumed, examined);
        public override void CancelPendingRead() => inner.CancelPendingRead();
        public override void Complete(Exception? exception = null) => inner.Complete(exception);
    }

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
