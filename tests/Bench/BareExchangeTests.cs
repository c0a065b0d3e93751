using Adaptive.Experiments.Bench;

namespace Adaptive.Tests.Bench;

/// <summary>The floors <c>bench server</c> measures a transport against carry what they claim to.</summary>
public sealed class BareExchangeTests
{
    /// <summary>
    /// The bare HTTP floor goes over the HTTP version it names (HTTP/2 as gRPC does, without TLS), with a body
    /// larger than one HTTP/2 frame and flow-control window, and brings back the answer's size.
    /// </summary>
    [Theory]
    [InlineData(1, 1)]
    [InlineData(2, 0)]
    public async Task Bare_http_carries_the_bytes_over_the_version_named(int major, int minor)
    {
        await using var exchange = await BareHttpExchange.Start(new Version(major, minor), requestBytes: 600_000, answerBytes: 4_000);
        for (int i = 0; i < 3; i++) Assert.True(await exchange.RunOnce() > 0);
    }

    [Fact]
    public void Bare_tcp_trades_the_sizes_given()
    {
        using var exchange = new BareTcpExchange(requestBytes: 600_000, answerBytes: 4_000);
        for (int i = 0; i < 3; i++) Assert.True(exchange.RunOnce() > 0);
    }
}
