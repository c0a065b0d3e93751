using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;

namespace Adaptive.Experiments.Bench;

/// <summary>
/// A client and a server socket on loopback, blocking, that trade a request of the given size for an
/// answer of the given size: what any server's exchange costs on this machine before HTTP and parsing.
/// The server side runs on its own thread until the client closes.
/// </summary>
public sealed class BareTcpExchange : IDisposable
{
    readonly Socket client;
    readonly Thread peer;
    readonly byte[] request, answer;

    public BareTcpExchange(int requestBytes, int answerBytes)
    {
        request = new byte[requestBytes];
        answer = new byte[answerBytes];
        using var listener = new Socket(SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        client = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        client.Connect(listener.LocalEndPoint!);
        var accepted = listener.Accept();
        accepted.NoDelay = true;
        peer = new Thread(() => Answer(accepted)) { IsBackground = true, Name = "bare-tcp-peer" };
        peer.Start();
    }

    void Answer(Socket socket)
    {
        using (socket)
        {
            var buffer = new byte[request.Length];
            while (ReceiveExactly(socket, buffer)) socket.Send(answer);
        }
    }

    public double RunOnce()
    {
        long started = Stopwatch.GetTimestamp();
        client.Send(request);
        if (!ReceiveExactly(client, answer)) throw new InvalidOperationException("the bare TCP peer closed the connection");
        return Stopwatch.GetElapsedTime(started).TotalMilliseconds;
    }

    /// <summary>False when the other side closed before the buffer was full.</summary>
    static bool ReceiveExactly(Socket socket, byte[] buffer)
    {
        for (int received = 0; received < buffer.Length;)
        {
            int read = socket.Receive(buffer, received, buffer.Length - received, SocketFlags.None);
            if (read == 0) return false;
            received += read;
        }
        return true;
    }

    public void Dispose()
    {
        client.Dispose();
        peer.Join();
    }
}

/// <summary>
/// The same trade over HTTP (1.1 or 2) to a Kestrel endpoint that reads the body and answers the given number
/// of bytes, through HttpClient: the floor that the protocol and .NET's HTTP stack set before any of the
/// server's own work, so that a transport's exchange can be split into that floor and what the server adds.
/// </summary>
public sealed class BareHttpExchange : IAsyncDisposable
{
    readonly WebApplication app;
    readonly HttpClient client;
    readonly byte[] request;
    readonly int answerBytes;

    BareHttpExchange(WebApplication app, HttpClient client, byte[] request, int answerBytes)
    {
        this.app = app;
        this.client = client;
        this.request = request;
        this.answerBytes = answerBytes;
    }

    public static async Task<BareHttpExchange> Start(Version protocol, int requestBytes, int answerBytes)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Limits.MaxRequestBodySize = null;
            // Without TLS there is no protocol negotiation: an HTTP/2 port speaks HTTP/2 only, as the gRPC port does.
            kestrel.Listen(IPAddress.Loopback, 0, listen => listen.Protocols = protocol.Major == 2 ? HttpProtocols.Http2 : HttpProtocols.Http1);
        });
        var app = builder.Build();
        var answer = new byte[answerBytes];
        var discard = new byte[64 * 1024];
        app.MapPost("/", async (HttpContext context) =>
        {
            while (await context.Request.Body.ReadAsync(discard) > 0) { }
            context.Response.ContentLength = answer.Length;
            await context.Response.Body.WriteAsync(answer);
        });
        await app.StartAsync();
        var client = new HttpClient(new SocketsHttpHandler()) { BaseAddress = new Uri(app.Urls.Single()), DefaultRequestVersion = protocol, DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact };
        return new BareHttpExchange(app, client, new byte[requestBytes], answerBytes);
    }

    public async Task<double> RunOnce()
    {
        long started = Stopwatch.GetTimestamp();
        using var content = new ByteArrayContent(request);
        using var response = await client.PostAsync("/", content);
        int answered = (await response.Content.ReadAsByteArrayAsync()).Length;
        double latency = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        if (answered != answerBytes || response.Version != client.DefaultRequestVersion)
            throw new InvalidOperationException($"the bare HTTP endpoint answered {answered} bytes over HTTP/{response.Version}, expected {answerBytes} over HTTP/{client.DefaultRequestVersion}");
        return latency;
    }

    public async ValueTask DisposeAsync()
    {
        client.Dispose();
        await app.StopAsync();
        await app.DisposeAsync();
    }
}
