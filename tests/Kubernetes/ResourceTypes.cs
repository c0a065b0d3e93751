using System.Text.Json.Nodes;

namespace Adaptive.Tests.Kubernetes;

/// <summary>How a kind's names are validated, as kube-apiserver validates each kind's.</summary>
public enum NameRule
{
    /// <summary>A DNS-1123 subdomain: lower case, digits, '-' and '.', at most 253 characters (most kinds, custom resources).</summary>
    Dns1123Subdomain,
    /// <summary>A DNS-1035 label: a letter first, lower case, digits and '-', at most 63 characters (Services).</summary>
    Dns1035Label,
    /// <summary>A CustomResourceDefinition is named <c>plural.group</c>.</summary>
    PluralDotGroup,
}

/// <summary>
/// A kind the double serves. Built-in kinds say whether they have a status subresource and keep
/// <c>metadata.generation</c> (Deployments do; Services, ConfigMaps, Events and Leases do not); custom
/// resources come from the CustomResourceDefinitions written to the double, with their schema, names
/// and printer columns, and always keep a generation.
/// </summary>
public sealed record ResourceType(string Group, string Version, string Plural, string Singular, string Kind, bool Namespaced,
    bool HasStatus, bool HasGeneration, NameRule Names)
{
    public string ApiVersion => Group == "" ? Version : $"{Group}/{Version}";

    /// <summary>For a custom resource: its CRD's <c>openAPIV3Schema</c>; null for built-in kinds.</summary>
    public JsonObject? Schema { get; init; }

    public IReadOnlyList<string> ShortNames { get; init; } = [];
    public IReadOnlyList<string> Categories { get; init; } = [];

    /// <summary>For a custom resource: its CRD's <c>additionalPrinterColumns</c>.</summary>
    public JsonArray? PrinterColumns { get; init; }

    public bool IsCustom => Schema is not null;

    public MergeKeys Keys => new(Schema);

    public static readonly ResourceType CustomResourceDefinitions =
        new("apiextensions.k8s.io", "v1", "customresourcedefinitions", "customresourcedefinition", "CustomResourceDefinition",
            Namespaced: false, HasStatus: true, HasGeneration: true, NameRule.PluralDotGroup) { ShortNames = ["crd", "crds"] };

    public static readonly IReadOnlyList<ResourceType> BuiltIn =
    [
        new("", "v1", "namespaces", "namespace", "Namespace", Namespaced: false, HasStatus: true, HasGeneration: false, NameRule.Dns1035Label) { ShortNames = ["ns"] },
        new("", "v1", "nodes", "node", "Node", Namespaced: false, HasStatus: true, HasGeneration: false, NameRule.Dns1123Subdomain) { ShortNames = ["no"] },
        new("apps", "v1", "deployments", "deployment", "Deployment", Namespaced: true, HasStatus: true, HasGeneration: true, NameRule.Dns1123Subdomain) { ShortNames = ["deploy"], Categories = ["all"] },
        new("", "v1", "services", "service", "Service", Namespaced: true, HasStatus: true, HasGeneration: false, NameRule.Dns1035Label) { ShortNames = ["svc"], Categories = ["all"] },
        new("", "v1", "pods", "pod", "Pod", Namespaced: true, HasStatus: true, HasGeneration: false, NameRule.Dns1123Subdomain) { ShortNames = ["po"], Categories = ["all"] },
        new("", "v1", "configmaps", "configmap", "ConfigMap", Namespaced: true, HasStatus: false, HasGeneration: false, NameRule.Dns1123Subdomain) { ShortNames = ["cm"] },
        new("", "v1", "events", "event", "Event", Namespaced: true, HasStatus: false, HasGeneration: false, NameRule.Dns1123Subdomain) { ShortNames = ["ev"] },
        new("events.k8s.io", "v1", "events", "event", "Event", Namespaced: true, HasStatus: false, HasGeneration: false, NameRule.Dns1123Subdomain) { ShortNames = ["ev"] },
        new("coordination.k8s.io", "v1", "leases", "lease", "Lease", Namespaced: true, HasStatus: false, HasGeneration: false, NameRule.Dns1123Subdomain),
        CustomResourceDefinitions,
    ];

    /// <summary>The served versions of a CustomResourceDefinition, as kinds.</summary>
    public static IEnumerable<ResourceType> FromDefinition(JsonObject crd)
    {
        var spec = crd["spec"]!;
        var names = spec["names"]!;
        foreach (var version in (spec["versions"] as JsonArray ?? []).OfType<JsonObject>().Where(v => v["served"]?.GetValue<bool>() != false))
            yield return new ResourceType(spec["group"]!.GetValue<string>(), version["name"]!.GetValue<string>(), names["plural"]!.GetValue<string>(),
                names["singular"]?.GetValue<string>() ?? names["kind"]!.GetValue<string>().ToLowerInvariant(), names["kind"]!.GetValue<string>(),
                Namespaced: spec["scope"]?.GetValue<string>() != "Cluster", HasStatus: version["subresources"]?["status"] is not null, HasGeneration: true,
                NameRule.Dns1123Subdomain)
            {
                Schema = (JsonObject)(version["schema"]?["openAPIV3Schema"]?.DeepClone() ?? new JsonObject { ["type"] = "object", ["x-kubernetes-preserve-unknown-fields"] = true }),
                ShortNames = [.. (names["shortNames"] as JsonArray ?? []).Select(n => n!.GetValue<string>())],
                Categories = [.. (names["categories"] as JsonArray ?? []).Select(n => n!.GetValue<string>())],
                PrinterColumns = version["additionalPrinterColumns"]?.DeepClone() as JsonArray,
            };
    }
}
