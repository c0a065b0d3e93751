using System.Net.Sockets;
using System.Text;

namespace Adaptive.Tests.Support;

/// <summary>HTTP/1.1 by hand over a socket, for requests no HttpClient would send: stalled, half-sent or malformed bodies.</summary>
public static class RawHttp
{
    /// <summary>Sends raw bytes on one connection and reads what comes back until the server closes it or <paramref name="wait"/> passes.</summary>
    public static async Task<string> Exchange(Uri server, byte[] request, TimeSpan wait, bool closeAfterSending = false)
    {
        var cancel = TestContext.Current.CancellationToken;
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(server.Host, server.Port, cancel);
        await socket.SendAsync(request, SocketFlags.None, cancel);
        if (closeAfterSending)
        {
            socket.Close();
            return "";
        }
        var answer = new StringBuilder();
        var buffer = new byte[8192];
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        timeout.CancelAfter(wait);
        try
        {
            while (true)
            {
                int read = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
                if (read == 0) break;
                answer.Append(Encoding.UTF8.GetString(buffer, 0, read));
                if (Complete(answer.ToString())) break;
            }
        }
        catch (OperationCanceledException) when (!cancel.IsCancellationRequested)
        {
            // waited long enough
        }
        return answer.ToString();
    }

    /// <summary>Whether the text holds a whole response: its headers and as many bytes as their Content-Length says.</summary>
    static bool Complete(string response)
    {
        int end = response.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        if (end < 0) return false;
        var length = System.Text.RegularExpressions.Regex.Match(response[..end], "(?im)^content-length: *([0-9]+)");
        return length.Success && response.Length - end - 4 >= int.Parse(length.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
    }
}
