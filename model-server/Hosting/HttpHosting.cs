using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using Adaptive.ModelServer.Protocol;
using Microsoft.AspNetCore.Connections;
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
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Limits.MaxRequestBodySize = options.MaxBodyBytes;
            kestrel.Limits.MaxRequestHeadersTotalSize = 32 * 1024;
            kestrel.Listen(IPAddress.Parse(options.Host), options.Port);
        });
        builder.Services.AddSingleton<IMemoryPoolFactory<byte>, LargeBlockMemoryPoolFactory>();
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = options.DrainDelay + options.DrainTimeout);
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton<Readiness>();
        builder.Services.AddHostedService<DrainOnStop>();
        return builder;
    }

    /// <summary>The Open Inference Protocol's health endpoints; ready while <paramref name="ready"/> holds and the process is not draining.</summary>
    public static void MapHealth(WebApplication app, Func<bool> ready)
    {
        var readiness = app.Services.GetRequiredService<Readiness>();
        app.MapGet("/v2/health/live", () => Results.Json(new { live = true }));
        app.MapGet("/v2/health/ready", () =>
        {
            bool isReady = ready() && !readiness.IsDraining;
            return Results.Json(new { ready = isReady }, statusCode: isReady ? 200 : 503);
        });
    }

    /// <summary>
    /// Reads the whole body, within Kestrel's size limit, straight from the request pipe into one array
    /// (of the announced length when there is one); too large a body is a 413 naming the limit.
    /// </summary>
    public static Task<ArraySegment<byte>> ReadBodyAsync(HttpContext context) => WithinBodyLimit(context, async (pipe, limit) =>
    {
        // Uninitialized: only the bytes read are ever used, and zeroing a 600 KB image body costs time.
        var body = GC.AllocateUninitializedArray<byte>((int)(context.Request.ContentLength ?? 16 * 1024));
        int length = 0;
        while (true)
        {
            var read = await pipe.ReadAsync(context.RequestAborted);
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
    /// Reads an inference request. With the binary tensor data extension the JSON header is read and parsed
    /// first, and the bytes after it go from the request pipe straight into the binary inputs' arrays: an
    /// image is copied once, not into a body buffer first and then into its tensor. The tensors' arrays
    /// come from <paramref name="arrays"/>.
    /// </summary>
    public static async Task<InferRequest> ReadInferRequestAsync(HttpContext context, TensorArrayPool arrays)
    {
        if (InferRequestReader.HeaderLength(context.Request) is not { } headerLength)
            return InferRequestReader.Parse(await ReadBodyAsync(context), arrays);
        return await WithinBodyLimit(context, async (pipe, limit) =>
        {
            var cancel = context.RequestAborted;
            long bodyLength = context.Request.ContentLength ?? limit; // at most, without Content-Length
            var header = new byte[Math.Min(headerLength, bodyLength)];
            long received = await FillAsync(pipe, header, cancel);
            if (received < headerLength)
                throw new ProtocolException(StatusCodes.Status400BadRequest, $"{InferRequestReader.HeaderLengthHeader} is {headerLength}, but the body has {received} bytes");
            var parsed = InferRequestReader.ParseHeader(header, bodyLength - headerLength, arrays);
            foreach (var input in parsed.BinaryInputs)
            {
                long filled = await FillAsync(pipe, input.Data, cancel);
                if (filled < input.Bytes.Length) throw InferRequestReader.RequestHeader.TooShort(input, filled);
            }
            long unclaimed = await CountRestAsync(pipe, cancel);
            if (unclaimed > 0) throw InferRequestReader.RequestHeader.Unclaimed(unclaimed);
            return parsed.Request;
        });
    }

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
            var read = await pipe.ReadAsync(cancel);
            long available = read.Buffer.Length;
            long take = Math.Min(available, length - filled);
            read.Buffer.Slice(0, take).CopyTo(Tensor.BytesOf(destination)[(int)filled..]);
            pipe.AdvanceTo(read.Buffer.GetPosition(take));
            filled += take;
            if (read.IsCompleted && take == available) break;
        }
        return filled;
    }

    /// <summary>Reads the rest of the body (Kestrel bounds it), returning its length.</summary>
    static async Task<long> CountRestAsync(PipeReader pipe, CancellationToken cancel)
    {
        long count = 0;
        while (true)
        {
            var read = await pipe.ReadAsync(cancel);
            count += read.Buffer.Length;
            pipe.AdvanceTo(read.Buffer.End);
            if (read.IsCompleted) return count;
        }
    }

    static ProtocolException TooLarge(long limit) =>
        new(StatusCodes.Status413PayloadTooLarge, $"the request body is larger than the {limit}-byte limit");

    /// <summary>An error in the protocol's format, <c>{"error": "..."}</c>, with Retry-After when given.</summary>
    public static Task WriteErrorAsync(HttpContext context, int statusCode, string message, TimeSpan? retryAfter = null)
    {
        context.Response.StatusCode = statusCode;
        if (retryAfter is { } wait)
            context.Response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (statusCode == StatusCodes.Status413PayloadTooLarge)
            return WriteAndCloseAsync(context, message);
        return context.Response.WriteAsJsonAsync(new { error = message });
    }

    /// <summary>
    /// The rest of an oversized body is never read, so the connection cannot carry another request: say
    /// so, and flush the answer before Kestrel drops the connection.
    /// </summary>
    static async Task WriteAndCloseAsync(HttpContext context, string message)
    {
        context.Response.Headers.Connection = "close";
        await context.Response.WriteAsJsonAsync(new { error = message });
        await context.Response.CompleteAsync();
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
