using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Adaptive.Tests.Kubernetes;

/// <summary>kube-apiserver's checks of metadata: the name by its kind's rule, label keys and values, annotation keys.</summary>
public static partial class ObjectNames
{
    [GeneratedRegex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")]
    private static partial Regex Subdomain();

    [GeneratedRegex("^[a-z]([-a-z0-9]*[a-z0-9])?$")]
    private static partial Regex Dns1035();

    [GeneratedRegex("^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")]
    private static partial Regex LabelValue();

    [GeneratedRegex("^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")]
    private static partial Regex QualifiedName();

    public static bool IsSubdomain(string name) => name.Length <= 253 && Subdomain().IsMatch(name);

    /// <summary>The field errors of an object's metadata, in Kubernetes' words; empty when valid.</summary>
    public static List<string> Check(ResourceType type, JsonObject metadata)
    {
        var errors = new List<string>();
        string name = metadata["name"]?.GetValue<string>() ?? "";
        string? problem = type.Names switch
        {
            NameRule.Dns1035Label when name.Length > 63 => "must be no more than 63 characters",
            NameRule.Dns1035Label when !Dns1035().IsMatch(name) => "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
            NameRule.Dns1123Subdomain or NameRule.PluralDotGroup when name.Length > 253 => "must be no more than 253 characters",
            NameRule.Dns1123Subdomain or NameRule.PluralDotGroup when !Subdomain().IsMatch(name) => "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            _ => null,
        };
        if (problem is not null) errors.Add($"metadata.name: Invalid value: \"{name}\": {problem}");
        foreach (var (key, value) in metadata["labels"] as JsonObject ?? [])
        {
            if (!IsQualifiedName(key)) errors.Add($"metadata.labels: Invalid value: \"{key}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character");
            string text = value?.GetValue<string>() ?? "";
            if (text.Length > 63) errors.Add($"metadata.labels: Invalid value: \"{text}\": must be no more than 63 characters");
            else if (!LabelValue().IsMatch(text)) errors.Add($"metadata.labels: Invalid value: \"{text}\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character");
        }
        foreach (var (key, _) in metadata["annotations"] as JsonObject ?? [])
            if (!IsQualifiedName(key)) errors.Add($"metadata.annotations: Invalid value: \"{key}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character");
        return errors;
    }

    /// <summary>A label or annotation key: an optional DNS subdomain prefix and '/', then a name of at most 63 characters.</summary>
    static bool IsQualifiedName(string key)
    {
        var parts = key.Split('/');
        if (parts.Length > 2) return false;
        if (parts.Length == 2 && (parts[0].Length == 0 || !IsSubdomain(parts[0]))) return false;
        return parts[^1].Length <= 63 && QualifiedName().IsMatch(parts[^1]);
    }
}
