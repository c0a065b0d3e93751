using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Adaptive.ModelServer.Storage;

/// <summary>A download that failed or did not match its digest, with the one line the command prints.</summary>
public sealed class FetchException(string message) : Exception(message);

/// <summary>
/// Where an S3-compatible store is and who asks, from the variables the AWS tools read: <c>AWS_ENDPOINT_URL</c>
/// (MinIO and the like, path-style; absent: AWS itself, virtual-hosted), <c>AWS_REGION</c> (us-east-1),
/// <c>AWS_ACCESS_KEY_ID</c> and <c>AWS_SECRET_ACCESS_KEY</c> (absent: anonymous, a public bucket), <c>AWS_SESSION_TOKEN</c>.
/// </summary>
public sealed record S3Settings(Uri? Endpoint, string Region, S3Credentials? Credentials)
{
    public static S3Settings FromEnvironment(Func<string, string?> variable)
    {
        string? Read(string name) => variable(name) is { Length: > 0 } value ? value : null;
        Uri? endpoint = null;
        if (Read("AWS_ENDPOINT_URL") is { } url && (!Uri.TryCreate(url, UriKind.Absolute, out endpoint) || endpoint.Scheme is not ("http" or "https")))
            throw new FetchException($"AWS_ENDPOINT_URL must be an http(s) URL, got '{url}'");
        var (id, secret) = (Read("AWS_ACCESS_KEY_ID"), Read("AWS_SECRET_ACCESS_KEY"));
        if ((id is null) != (secret is null)) throw new FetchException("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together: give both, or neither for a public bucket");
        return new S3Settings(endpoint, Read("AWS_REGION") ?? "us-east-1", id is null ? null : new S3Credentials(id, secret!, Read("AWS_SESSION_TOKEN")));
    }
}

/// <param name="Uri">https://host/path, or s3://bucket/key read with <paramref name="S3"/>.</param>
/// <param name="Sha256">The digest the file must have; null (s3:// only): not checked.</param>
/// <param name="CaFile">PEM certificates to trust in place of the system's (a private CA); null: the system's.</param>
public sealed record FetchOptions(Uri Uri, string? Sha256, string Output, long MaxBytes, TimeSpan Timeout, string? CaFile, S3Settings? S3 = null);

/// <summary>
/// <c>adaptive-server fetch-model</c>, the init container of a variant whose model is an https:// or s3:// download:
/// writes the file next to its destination while hashing it, and moves it into place only when its SHA-256 is
/// the expected one. Bounded in bytes and time; on any failure nothing is left at the destination.
/// </summary>
public static class ModelFetcher
{
    public static async Task Fetch(FetchOptions options, CancellationToken cancellation)
    {
        if (options.Uri.Scheme is not ("https" or "s3")) throw new FetchException($"{options.Uri}: only https:// and s3:// are fetched");
        string partial = options.Output + ".partial";
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        deadline.CancelAfter(options.Timeout);
        try
        {
            string actual = await Download(options, partial, deadline.Token);
            if (options.Sha256 is { } expected && actual != expected) throw new FetchException($"{options.Uri}: its sha256 is {actual}, not the expected {expected}");
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
        using var request = Request(options, DateTimeOffset.UtcNow);
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellation);
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

    /// <summary>
    /// The GET: an https:// URI as it is; an s3:// object at the endpoint's /bucket/key (path-style), or at
    /// AWS's bucket.s3.region.amazonaws.com/key, signed (Signature Version 4) unless anonymous.
    /// </summary>
    static HttpRequestMessage Request(FetchOptions options, DateTimeOffset now)
    {
        if (options.Uri.Scheme == Uri.UriSchemeHttps) return new HttpRequestMessage(HttpMethod.Get, options.Uri);
        var s3 = options.S3 ?? new S3Settings(null, "us-east-1", null);
        string bucket = options.Uri.Host;
        string key = string.Join('/', Uri.UnescapeDataString(options.Uri.AbsolutePath.TrimStart('/')).Split('/').Select(Uri.EscapeDataString));
        var url = s3.Endpoint is { } endpoint ? new Uri($"{endpoint.GetLeftPart(UriPartial.Authority)}/{bucket}/{key}") : new Uri($"https://{bucket}.s3.{s3.Region}.amazonaws.com/{key}");
        var request = new HttpRequestMessage(HttpMethod.Get, url);
        if (s3.Credentials is not { } credentials) return request;
        var headers = new Dictionary<string, string>
        {
            ["host"] = url.IsDefaultPort ? url.Host : $"{url.Host}:{url.Port}",
            ["x-amz-date"] = S3Signature.AmzDate(now),
            ["x-amz-content-sha256"] = S3Signature.EmptyPayloadSha256,
        };
        if (credentials.SessionToken is { } token) headers["x-amz-security-token"] = token;
        foreach (var (name, value) in headers.Where(h => h.Key != "host")) request.Headers.TryAddWithoutValidation(name, value);
        request.Headers.TryAddWithoutValidation("Authorization", S3Signature.Authorization("GET", url.AbsolutePath, headers, credentials, s3.Region));
        return request;
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
