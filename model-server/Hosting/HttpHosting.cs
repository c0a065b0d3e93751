using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using Adaptive.ModelServer.Protocol;
using Microsoft.AspNetCore.Connections;
using HttpProtocols = Microsoft.AspNetCore.Server.Kestrel.Core.HttpProtocols;
using Microsoft.Extensions.Hosting;

namespace Adaptive.ModelServer.Hosting;

/// <summary>The web host both modes share: Kestrel with limits, one-line logs, drain on SIGTERM, health endpoints.</summary>
public static class HttpHosting
{
    public static WebApplicationBuilder CreateBuilder(HttpOptions options)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
            o.UseUtcTimestamp = true;
        });
        if (options.LogsToStandardError)
            builder.Services.Configure<Microsoft.Extensions.Logging.Console.ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Limits.MaxRequestBodySize = options.MaxBodyBytes;
            kestrel.Limits.MaxRequestHeadersTotalSize = 32 * 1024;
            // REST first: "Now listening on" reports the REST address first (ServerProcess relies on it).
            kestrel.Listen(IPAddress.Parse(options.Host), options.Port);
            // gRPC needs HTTP/2; without TLS there is no protocol negotiation, so the port speaks HTTP/2 only.
            if (options.GrpcPort is { } grpcPort)
                kestrel.Listen(IPAddress.Parse(options.Host), grpcPort, listen => listen.Protocols = HttpProtocols.Http2);
        });
        if (options.GrpcPort is not null) builder.Services.AddGrpc(grpc => grpc.MaxReceiveMessageSize = checked((int)options.MaxBodyBytes));
        builder.Services.AddSingleton<IMemoryPoolFactory<byte>, LargeBlockMemoryPoolFactory>();
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = options.DrainDelay + options.DrainTimeout);
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton<Readiness>();
        builder.Services.AddHostedService<DrainOnStop>();
        return builder;
    }

    /// <summary>
    /// The Open Inference Protocol's health endpoints; ready while <paramref name="ready"/> holds and the process
    /// is not draining. Once draining, every answer carries <c>Connection: close</c>: clients stop reusing their
    /// connections, so none is left idle for Kestrel to close under a client that is about to send on it.
    /// </summary>
    public static void MapHealth(WebApplication app, Func<bool> ready)
    {
        var readiness = app.Services.GetRequiredService<Readiness>();
        app.Use((context, next) =>
        {
            // HTTP/2 has no Connection header: Kestrel ends those connections with GOAWAY when it stops.
            if (!context.Request.Protocol.StartsWith("HTTP/2", StringComparison.Ordinal))
                context.Response.OnStarting(() =>
                {
                    if (readiness.IsDraining) context.Response.Headers.Connection = "close";
                    return Task.CompletedTask;
                });
            return next(context);
        });
        // HEAD as well as GET: probes and load balancers that check with HEAD get the same status.
        app.MapMethods("/v2/health/live", [HttpMethods.Get, HttpMethods.Head], () => Results.Json(new { live = true }));
        app.MapMethods("/v2/health/ready", [HttpMethods.Get, HttpMethods.Head], () =>
        {
            bool isReady = ready() && !readiness.IsDraining;
            return Results.Json(new { ready = isReady }, statusCode: isReady ? 200 : 503);
        });
        // Unrouted paths (404) and methods (405) answer in the protocol's error format too.
        app.UseStatusCodePages(async pages =>
        {
            var response = pages.HttpContext.Response;
            string message = response.StatusCode == StatusCodes.Status405MethodNotAllowed
                ? $"{pages.HttpContext.Request.Method} is not allowed on {pages.HttpContext.Request.Path}"
                : $"no endpoint at {pages.HttpContext.Request.Path}";
            await response.WriteAsJsonAsync(new { error = message });
        });
    }

    /// <summary>
    /// The protocol's per-model paths, each with and without a version (without one, the server's choice: its
    /// only one), answered by the model server and by the router alike.
    /// </summary>
    public static void MapModel(WebApplication app, IModelEndpoints endpoints)
    {
        app.MapGet("/v2/models/{name}", (HttpContext context, string name) => endpoints.Metadata(context, name, null));
        app.MapGet("/v2/models/{name}/versions/{version}", endpoints.Metadata);
        app.MapGet("/v2/models/{name}/ready", (HttpContext context, Readiness readiness, string name) => endpoints.ModelReady(context, readiness, name, null));
        app.MapGet("/v2/models/{name}/versions/{version}/ready", endpoints.ModelReady);
        app.MapPost("/v2/models/{name}/infer", (HttpContext context, string name) => endpoints.Infer(context, name, null));
        app.MapPost("/v2/models/{name}/versions/{version}/infer", endpoints.Infer);
    }

    /// <summary>The protocol's server metadata: <c>GET /v2</c> (which routing matches as <c>/v2/</c> too, as the OpenAPI file spells it).</summary>
    public static void MapServerMetadata(WebApplication app) =>
        app.MapGet("/v2", () => Results.Json(new { name = ServerName, version = ServerVersion, extensions = Extensions }));

    public const string ServerName = "adaptive-server";
    public const string ServerVersion = "1";
    /// <summary>The binary tensor data extension, as Triton names it: both the server and the router take and give binary tensors.</summary>
    public static readonly string[] Extensions = ["binary_tensor_data"];

    /// <summary>The HTTP status of a refusal of <paramref name="kind"/>.</summary>
    public static int StatusOf(ErrorKind kind) => kind switch
    {
        ErrorKind.NotFound => StatusCodes.Status404NotFound,
        ErrorKind.TooLarge => StatusCodes.Status413PayloadTooLarge,
        _ => StatusCodes.Status400BadRequest,
    };

    /// <summary>
    /// Reads the whole body, within Kestrel's size limit, straight from the request pipe into one array
    /// (of the announced length when there is one), until <paramref name="cancel"/>; too large a body is a 413
    /// naming the limit.
    /// </summary>
    public static Task<ArraySegment<byte>> ReadBodyAsync(HttpContext context, CancellationToken cancel) => WithinBodyLimit(context, async (pipe, limit) =>
    {
        // Uninitialized: only the bytes read are ever used, and zeroing a 600 KB image body costs time.
        var body = GC.AllocateUninitializedArray<byte>((int)(context.Request.ContentLength ?? 16 * 1024));
        int length = 0;
        while (true)
        {
            var read = await pipe.ReadWithinAsync(cancel);
            foreach (var segment in read.Buffer)
            {
                if (length + segment.Length > body.Length)
                {
                    if (length + segment.Length > limit) throw TooLarge(limit);
                    Array.Resize(ref body, (int)Math.Min(limit, Math.Max(2L * body.Length, length + segment.Length)));
                }
                segment.Span.CopyTo(body.AsSpan(length));
                length += segment.Length;
            }
            pipe.AdvanceTo(read.Buffer.End);
            if (read.IsCompleted) return new ArraySegment<byte>(body, 0, length);
        }
    });

    /// <summary>
    /// Reads an inference request within bounds a hostile client cannot move: the body may be no larger than
    /// the model's inputs at the max batch size can need (<see cref="InputContract.MaxBodyBytes"/>, and the
    /// server's limit), its bytes must fit in the <paramref name="budget"/> of bodies being read at once,
    /// and each input is checked against the model before its array is taken. With the binary tensor data
    /// extension the JSON header is read and parsed first, and the bytes after it go from the request pipe
    /// straight into the binary inputs' arrays; an all-JSON body is parsed as it arrives, its data straight
    /// into the inputs' arrays. The tensors' arrays come from <paramref name="arrays"/>. <paramref name="cancel"/> ends the read
    /// at the request's deadline.
    /// </summary>
    public static async Task<InferRequest> ReadInferRequestAsync(HttpContext context, TensorArrayPool arrays, InputContract contract, BodyBudget budget, CancellationToken cancel)
    {
        int? headerLength = HeaderLength(context.Request);
        long serverLimit = context.RequestServices.GetRequiredService<HttpOptions>().MaxBodyBytes;
        long limit = Math.Min(serverLimit, contract.MaxBodyBytes(binary: headerLength is not null) ?? serverLimit);
        long? declared = context.Request.ContentLength;
        if (declared > limit) throw TooLarge(limit);
        using var share = budget.TryTake(declared ?? limit)
            ?? throw new BodyBudgetException($"the server is reading as many request bodies as its {budget.TotalBytes}-byte budget holds; retry shortly");
        var pipe = context.Request.BodyReader;
        try
        {
            long bodyLength = declared ?? limit; // at most, without Content-Length
            if (headerLength is not { } length)
            {
                using var reader = new InferRequestReader(bodyLength, binaryBytes: 0, arrays, contract);
                await FeedAsync(pipe, reader, limit, cancel);
                return reader.Finish().Request;
            }
            var header = new byte[Math.Min(length, bodyLength)];
            long received = await FillAsync(pipe, header, cancel);
            if (received < length)
                throw ProtocolException.Invalid($"{InferRequestReader.HeaderLengthHeader} is {length}, but the body has {received} bytes");
            var parsed = InferRequestReader.Read(header, bodyLength - length, arrays, contract);
            try
            {
                foreach (var input in parsed.BinaryInputs)
                {
                    // Fixed-size elements go straight into the tensor's array; BYTES elements are cut out of their encoding.
                    var destination = input.Tensor.DataType.HasFixedSize() ? input.Tensor.Data : new byte[input.Size];
                    long filled = await FillAsync(pipe, destination, cancel);
                    if (filled < input.Size) throw InferRequestReader.RequestHeader.TooShort(input, filled);
                    if (!input.Tensor.DataType.HasFixedSize()) BytesElements.Decode((byte[])destination, (byte[][])input.Tensor.Data, input.Tensor.Name);
                }
                long unclaimed = await CountRestAsync(pipe, limit, cancel);
                if (unclaimed > 0) throw InferRequestReader.RequestHeader.Unclaimed(unclaimed);
            }
            catch
            {
                arrays.Return(parsed.Request);
                throw;
            }
            return parsed.Request;
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            throw TooLarge(serverLimit);
        }
    }

    /// <summary>Feeds the body to <paramref name="reader"/> as it arrives; more than <paramref name="limit"/> bytes is too large.</summary>
    static async Task FeedAsync(PipeReader pipe, InferRequestReader reader, long limit, CancellationToken cancel)
    {
        long consumed = 0;
        while (true)
        {
            var read = await pipe.ReadWithinAsync(cancel);
            var position = read.Buffer.End; // all of it, when the body is refused: Kestrel drains what is left
            try
            {
                if (consumed + read.Buffer.Length > limit) throw TooLarge(limit);
                position = reader.Feed(read.Buffer, read.IsCompleted);
                consumed += read.Buffer.Slice(0, position).Length;
            }
            finally
            {
                pipe.AdvanceTo(position, read.Buffer.End);
            }
            if (read.IsCompleted) return;
        }
    }

    /// <summary>The JSON header's length from the request's <c>Inference-Header-Content-Length</c>; null when absent.</summary>
    public static int? HeaderLength(HttpRequest request)
    {
        if (!request.Headers.TryGetValue(InferRequestReader.HeaderLengthHeader, out var value)) return null;
        return int.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int length)
            ? length
            : throw ProtocolException.Invalid($"{InferRequestReader.HeaderLengthHeader} must be a non-negative integer, got '{value}'");
    }

    /// <summary>The budget of bodies being read at once is spent: a 429, counted with a full queue.</summary>
    public sealed class BodyBudgetException(string message) : Exception(message);

    /// <summary>Reads the body through <paramref name="read"/>, given the pipe and the size limit; too large a body is a 413 naming the limit.</summary>
    static async Task<T> WithinBodyLimit<T>(HttpContext context, Func<PipeReader, long, Task<T>> read)
    {
        long limit = context.RequestServices.GetRequiredService<HttpOptions>().MaxBodyBytes;
        if (context.Request.ContentLength > limit) throw TooLarge(limit);
        try
        {
            return await read(context.Request.BodyReader, limit);
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            throw TooLarge(limit);
        }
    }

    /// <summary>Fills <paramref name="destination"/>'s bytes from the pipe; returns how many it got, fewer only when the body ended.</summary>
    static async Task<long> FillAsync(PipeReader pipe, Array destination, CancellationToken cancel)
    {
        long length = Buffer.ByteLength(destination), filled = 0;
        while (filled < length)
        {
            var read = await pipe.ReadWithinAsync(cancel);
            long available = read.Buffer.Length;
            long take = Math.Min(available, length - filled);
            read.Buffer.Slice(0, take).CopyTo(Tensor.BytesOf(destination)[(int)filled..]);
            pipe.AdvanceTo(read.Buffer.GetPosition(take));
            filled += take;
            if (read.IsCompleted && take == available) break;
        }
        return filled;
    }

    /// <summary>Reads the rest of the body, returning its length; more than <paramref name="limit"/> is too large.</summary>
    static async Task<long> CountRestAsync(PipeReader pipe, long limit, CancellationToken cancel)
    {
        long count = 0;
        while (true)
        {
            var read = await pipe.ReadWithinAsync(cancel);
            count += read.Buffer.Length;
            if (count > limit) throw TooLarge(limit);
            pipe.AdvanceTo(read.Buffer.End);
            if (read.IsCompleted) return count;
        }
    }

    static ProtocolException TooLarge(long limit) =>
        new(ErrorKind.TooLarge, $"the request body is larger than the {limit}-byte limit");

    /// <summary>An error in the protocol's format, <c>{"error": "..."}</c>, with Retry-After when given.</summary>
    public static Task WriteErrorAsync(HttpContext context, int statusCode, string message, TimeSpan? retryAfter = null)
    {
        if (statusCode == StatusCodes.Status413PayloadTooLarge) return RefuseBodyAsync(context, statusCode, message, retryAfter);
        SetError(context, statusCode, retryAfter);
        return context.Response.WriteAsJsonAsync(new { error = message });
    }

    /// <summary>
    /// An error before the body was read to its end (too large, too slow, no room for it): the connection
    /// cannot carry another request. The answer goes out at once, whole (with its length) and with
    /// <c>Connection: close</c>, so that the client has it even if Kestrel then gives up on the unread body
    /// and resets the connection.
    /// </summary>
    public static async Task RefuseBodyAsync(HttpContext context, int statusCode, string message, TimeSpan? retryAfter = null)
    {
        SetError(context, statusCode, retryAfter);
        context.Response.Headers.Connection = "close";
        byte[] body = System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(new { error = message });
        context.Response.ContentType = "application/json; charset=utf-8";
        context.Response.ContentLength = body.Length;
        await context.Response.Body.WriteAsync(body);
        await context.Response.Body.FlushAsync();
    }

    static void SetError(HttpContext context, int statusCode, TimeSpan? retryAfter)
    {
        context.Response.StatusCode = statusCode;
        if (retryAfter is { } wait)
            context.Response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>An inference response: JSON, or a JSON header and binary tensor data when <paramref name="headerLength"/> is given.</summary>
    public static Task WriteInferResponseAsync(HttpContext context, ArrayBufferWriter<byte> body, int? headerLength)
    {
        if (headerLength is not { } length) return WriteJsonAsync(context, body);
        context.Response.Headers[InferRequestReader.HeaderLengthHeader] = length.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return WriteBodyAsync(context, body, "application/octet-stream");
    }

    public static Task WriteJsonAsync(HttpContext context, ArrayBufferWriter<byte> body) => WriteBodyAsync(context, body, "application/json");

    static async Task WriteBodyAsync(HttpContext context, ArrayBufferWriter<byte> body, string contentType)
    {
        context.Response.ContentType = contentType;
        context.Response.ContentLength = body.WrittenCount;
        await context.Response.Body.WriteAsync(body.WrittenMemory, context.RequestAborted);
    }
}

/// <summary>The protocol's per-model REST endpoints (<see cref="HttpHosting.MapModel"/>); <c>version</c> is null where the path names none.</summary>
public interface IModelEndpoints
{
    Task Metadata(HttpContext context, string name, string? version);
    Task ModelReady(HttpContext context, Readiness readiness, string name, string? version);
    Task Infer(HttpContext context, string name, string? version);
}
