using System.Text.RegularExpressions;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Planning;

namespace Adaptive.Core.Models;

/// <summary>
/// Where a variant's model comes from, parsed from its <c>modelUri</c>: a file in the server's image or a volume
/// (<c>file:///path</c>), a file on a PersistentVolumeClaim mounted read-only (<c>pvc://claim/path</c>), or a download
/// fetched before the server starts: over HTTPS, checked against the variant's <c>sha256</c> (<c>https://host/path</c>),
/// or from an S3-compatible store with the pipeline's <c>modelStorage</c> (<c>s3://bucket/key</c>; checked when given).
/// </summary>
public abstract partial record ModelSource
{
    public sealed record LocalFile(string Path) : ModelSource;

    public sealed record Claim(string ClaimName, string Path) : ModelSource;

    /// <param name="Sha256">The digest the download must have; null (s3:// only): not checked.</param>
    public sealed record Download(Uri Uri, string? Sha256) : ModelSource;

    const string Schemes = "file:///path, pvc://claim/path, https://host/path or s3://bucket/key";

    [GeneratedRegex("^[0-9a-f]{64}$")]
    private static partial Regex Sha256Hex();

    /// <summary>Whether <paramref name="digest"/> is a SHA-256 as <c>sha256</c> and <c>fetch-model --sha256</c> take it: 64 lowercase hex digits.</summary>
    public static bool IsSha256(string digest) => Sha256Hex().IsMatch(digest);

    [GeneratedRegex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
    private static partial Regex BucketName();

    /// <summary>The variant's source; bad input names the field (<paramref name="at"/>.modelUri or .sha256).</summary>
    public static ModelSource Of(VariantSpec variant, string at)
    {
        if (!Uri.TryCreate(variant.ModelUri, UriKind.Absolute, out var uri))
            throw new PlanningInputException($"{at}.modelUri", $"'{variant.ModelUri}' is not an absolute URI; use {Schemes}");
        if (variant.Sha256 is { } digest && !IsSha256(digest))
            throw new PlanningInputException($"{at}.sha256", $"must be 64 lowercase hexadecimal digits, got '{digest}'");
        if (uri.Scheme is not ("https" or "s3") && variant.Sha256 is not null)
            throw new PlanningInputException($"{at}.sha256", $"is checked on https:// and s3:// downloads only; '{variant.ModelUri}' is not one");
        switch (uri.Scheme)
        {
            case "file":
                return new LocalFile(uri.LocalPath);
            case "pvc":
                string path = Uri.UnescapeDataString(uri.AbsolutePath).TrimStart('/');
                if (!InferencePipelineValidator.IsObjectName(uri.Host))
                    throw new PlanningInputException($"{at}.modelUri", $"'{variant.ModelUri}': '{uri.Host}' is not a PersistentVolumeClaim name");
                if (path.Length == 0 || path.Split('/').Any(part => part is "" or "." or ".."))
                    throw new PlanningInputException($"{at}.modelUri", $"'{variant.ModelUri}' names no file on the claim (pvc://claim/path/to/model.onnx, without . or ..)");
                return new Claim(uri.Host, path);
            case "https":
                if (variant.Sha256 is not { } sha256)
                    throw new PlanningInputException($"{at}.sha256", $"is required for an https:// modelUri: the download is checked against it (sha256sum of the file)");
                return new Download(uri, sha256);
            case "s3":
                if (!BucketName().IsMatch(uri.Host))
                    throw new PlanningInputException($"{at}.modelUri", $"'{variant.ModelUri}': '{uri.Host}' is not an S3 bucket name (3–63 lowercase letters, digits, dots and hyphens)");
                if (uri.AbsolutePath.Trim('/').Length == 0)
                    throw new PlanningInputException($"{at}.modelUri", $"'{variant.ModelUri}' names no object (s3://bucket/path/to/model.onnx)");
                return new Download(uri, variant.Sha256);
            default:
                throw new PlanningInputException($"{at}.modelUri", $"'{variant.ModelUri}': the scheme '{uri.Scheme}' is not served; use {Schemes}");
        }
    }
}
