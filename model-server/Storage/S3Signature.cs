using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace Adaptive.ModelServer.Storage;

/// <summary>Keys of an S3-compatible store; the session token comes with temporary credentials only.</summary>
public sealed record S3Credentials(string AccessKeyId, string SecretAccessKey, string? SessionToken = null);

/// <summary>
/// AWS Signature Version 4 for S3 requests without a body (what <c>fetch-model</c> sends): the canonical request
/// (method, path, no query, the signed headers sorted by lowercase name, the payload's hash), the string to sign
/// with the date's scope, and the HMAC chain of date, region, service and "aws4_request".
/// </summary>
public static class S3Signature
{
    public const string EmptyPayloadSha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const string Algorithm = "AWS4-HMAC-SHA256";

    /// <summary>The <c>x-amz-date</c> form of <paramref name="time"/>.</summary>
    public static string AmzDate(DateTimeOffset time) => time.UtcDateTime.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture);

    /// <summary>
    /// The <c>Authorization</c> header for a request to <paramref name="path"/> (already percent-encoded, as sent)
    /// carrying <paramref name="headers"/>, which must hold <c>host</c>, <c>x-amz-date</c> and <c>x-amz-content-sha256</c>.
    /// </summary>
    public static string Authorization(string method, string path, IReadOnlyDictionary<string, string> headers, S3Credentials credentials, string region)
    {
        var signed = headers.Select(h => (Name: h.Key.ToLowerInvariant(), Value: h.Value.Trim())).OrderBy(h => h.Name, StringComparer.Ordinal).ToList();
        string signedNames = string.Join(";", signed.Select(h => h.Name));
        string amzDate = signed.Single(h => h.Name == "x-amz-date").Value;
        string canonical = string.Join("\n", method, path, "", string.Concat(signed.Select(h => $"{h.Name}:{h.Value}\n")), signedNames,
            signed.Single(h => h.Name == "x-amz-content-sha256").Value);
        string scope = $"{amzDate[..8]}/{region}/s3/aws4_request";
        string toSign = string.Join("\n", Algorithm, amzDate, scope, Hex(SHA256.HashData(Encoding.UTF8.GetBytes(canonical))));
        byte[] key = Encoding.UTF8.GetBytes("AWS4" + credentials.SecretAccessKey);
        foreach (string part in new[] { amzDate[..8], region, "s3", "aws4_request" }) key = HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(part));
        string signature = Hex(HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(toSign)));
        return $"{Algorithm} Credential={credentials.AccessKeyId}/{scope},SignedHeaders={signedNames},Signature={signature}";
    }

    static string Hex(byte[] bytes) => Convert.ToHexStringLower(bytes);
}
