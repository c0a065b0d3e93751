using System.Security.Cryptography;
using System.Text;

namespace Adaptive.Operator.Reconciliation;

/// <summary>Names and labels of the objects the operator owns; the labels are how it finds them again.</summary>
public static class Names
{
    public const string FieldManager = "adaptive-operator";
    public const string ManagedBy = "app.kubernetes.io/managed-by";
    public const string Pipeline = "adaptive.dev/pipeline";
    public const string Component = "adaptive.dev/component";
    public const string Stage = "adaptive.dev/stage";
    public const string Variant = "adaptive.dev/variant";
    public const string HardwareClass = "adaptive.dev/hardware-class";
    /// <summary>Annotation on a variant's Deployment: the batch size it runs with.</summary>
    public const string Batch = "adaptive.dev/batch";
    /// <summary>Annotation on a variant's Deployment whose traffic has moved away: when it did.</summary>
    public const string RetiringSince = "adaptive.dev/retiring-since";
    public const string ModelServer = "model-server";
    public const string Router = "router";

    public static string Allocation(string pipeline, string stage, string variant, string hardwareClass) =>
        Dns($"{pipeline}-{stage}-{variant}-{hardwareClass}");

    public static string RouterName(string pipeline) => Dns($"{pipeline}-router");

    public static string RoutesConfigMap(string pipeline) => Dns($"{pipeline}-routes");

    /// <summary>A DNS-1123 label: lower case, '-' for anything else, and a hash suffix when over 63 characters.</summary>
    public static string Dns(string name)
    {
        var clean = new StringBuilder(name.Length);
        foreach (char c in name.ToLowerInvariant()) clean.Append(char.IsAsciiLetterOrDigit(c) ? c : '-');
        string result = clean.ToString().Trim('-');
        if (result.Length <= 63) return result;
        string hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(name)))[..8];
        return $"{result[..54].TrimEnd('-')}-{hash}";
    }
}
