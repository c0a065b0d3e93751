using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Adaptive.ModelServer.Storage;

/// <summary>A download that failed or did not match its digest, with the one line the command prints.</summary>
public sealed class FetchException(string message) : Exception(message);

/// <param name="CaFile">PEM certificates to trust in place of the system's (a private CA); null: the system's.</param>
public sealed record FetchOptions(Uri Uri, string Sha256, string Output, long MaxBytes, TimeSpan Timeout, string? CaFile);

/// <summary>
/// <c>adaptive-server fetch-model</c>, the init container of a variant whose model is an https:// download: writes
/// the file next to its destination while hashing it, and moves it into place only when its SHA-256 is the
/// expected one. Bounded in bytes and time; on any failure nothing is left at the destination.
/// </summary>
public static class ModelFetcher
{
    public static async Task Fetch(FetchOptions options, CancellationToken cancellation)
    {
        if (options.Uri.Scheme != Uri.UriSchemeHttps) throw new FetchException($"{options.Uri}: only https:// is fetched");
        string partial = options.Output + ".partial";
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        deadline.CancelAfter(options.Timeout);
        try
        {
            string actual = await Download(options, partial, deadline.Token);
            if (actual != options.Sha256) throw new FetchException($"{options.Uri}: its sha256 is {actual}, not the expected {options.Sha256}");
            File.Move(partial, options.Output, overwrite: true);
        }
        catch (OperationCanceledException) when (!cancellation.IsCancellationRequested)
        {
            File.Delete(partial);
            throw new FetchException($"{options.Uri}: not downloaded within {options.Timeout.TotalSeconds:0.#} s");
        }
        catch (HttpRequestException e)
        {
            File.Delete(partial);
            throw new FetchException($"{options.Uri}: {e.Message}{(e.InnerException is { } inner ? $" ({inner.Message})" : "")}");
        }
        catch
        {
            File.Delete(partial);
            throw;
        }
    }

    /// <summary>Streams the body into <paramref name="path"/>; returns its SHA-256, lowercase hex.</summary>
    static async Task<string> Download(FetchOptions options, string path, CancellationToken cancellation)
    {
        using var handler = new SocketsHttpHandler();
        if (options.CaFile is { } caFile) handler.SslOptions.RemoteCertificateValidationCallback = TrustOnly(caFile);
        using var http = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan }; // the deadline bounds it
        using var response = await http.GetAsync(options.Uri, HttpCompletionOption.ResponseHeadersRead, cancellation);
        if (!response.IsSuccessStatusCode) throw new FetchException($"{options.Uri}: HTTP {(int)response.StatusCode} {response.ReasonPhrase}");
        if (response.Content.Headers.ContentLength > options.MaxBytes)
            throw new FetchException($"{options.Uri}: {response.Content.Headers.ContentLength} bytes, more than --max-bytes {options.MaxBytes}");
        await using var body = await response.Content.ReadAsStreamAsync(cancellation);
        await using var file = File.Create(path);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[1 << 16];
        long total = 0;
        for (int read; (read = await body.ReadAsync(buffer, cancellation)) > 0;)
        {
            total += read;
            if (total > options.MaxBytes) throw new FetchException($"{options.Uri}: more than --max-bytes {options.MaxBytes} bytes");
            hash.AppendData(buffer, 0, read);
            await file.WriteAsync(buffer.AsMemory(0, read), cancellation);
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>Accepts a server whose chain ends at one of the certificates in <paramref name="caFile"/> and whose name matches.</summary>
    static RemoteCertificateValidationCallback TrustOnly(string caFile)
    {
        var roots = new X509Certificate2Collection();
        roots.ImportFromPemFile(caFile);
        return (_, certificate, _, errors) =>
        {
            if (certificate is null || (errors & ~SslPolicyErrors.RemoteCertificateChainErrors) != SslPolicyErrors.None) return false;
            using var chain = new X509Chain();
            chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.AddRange(roots);
            chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            return chain.Build(X509CertificateLoader.LoadCertificate(certificate.GetRawCertData()));
        };
    }
}
