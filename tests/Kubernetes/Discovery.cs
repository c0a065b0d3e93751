using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;

namespace Adaptive.Tests.Kubernetes;

/// <summary>
/// What kubectl needs besides the resources themselves: the version, discovery of groups and kinds (short
/// names and categories included, CRDs as soon as they are written), an OpenAPI v3 index saying that the
/// server validates fields, and server-side tables, with a custom resource's printer columns evaluated from
/// its CRD's JSONPaths.
/// </summary>
public sealed partial class ApiServerDouble
{
    async Task<bool> ServeDiscovery(HttpContext context, string[] s)
    {
        if (context.Request.Method != "GET") return false;
        if (s is ["openapi", "v2"])
        {
            await OpenApiV2(context);
            return true;
        }
        JsonObject? body = s switch
        {
            ["version"] => new JsonObject { ["major"] = "1", ["minor"] = "32", ["gitVersion"] = "v1.32.0-adaptive-double", ["platform"] = "linux/amd64" },
            ["api"] => new JsonObject { ["kind"] = "APIVersions", ["versions"] = new JsonArray("v1") },
            ["apis"] => Groups(),
            ["api", var version] => Resources("", version),
            ["apis", var group, var version] => Resources(group, version),
            ["openapi", "v3"] => OpenApiRoot(),
            ["openapi", "v3", "api", var version] => OpenApi("", version),
            ["openapi", "v3", "apis", var group, var version] => OpenApi(group, version),
            _ => null,
        };
        if (body is null) return false;
        context.Response.StatusCode = 200;
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(body.ToJsonString());
        return true;
    }

    List<ResourceType> Served(Func<ResourceType, bool> which)
    {
        lock (gate) return [.. types.Where(which)];
    }

    JsonObject Groups()
    {
        var served = Served(t => t.Group != "");
        var groups = new JsonArray();
        foreach (var group in served.GroupBy(t => t.Group))
        {
            var versions = group.Select(t => t.Version).Distinct().Select(v => (JsonNode)new JsonObject { ["groupVersion"] = $"{group.Key}/{v}", ["version"] = v }).ToArray();
            groups.Add(new JsonObject { ["name"] = group.Key, ["versions"] = new JsonArray(versions), ["preferredVersion"] = versions[0].DeepClone() });
        }
        return new JsonObject { ["kind"] = "APIGroupList", ["apiVersion"] = "v1", ["groups"] = groups };
    }

    JsonObject? Resources(string group, string version)
    {
        var served = Served(t => t.Group == group && t.Version == version);
        if (served.Count == 0) return null;
        var resources = new JsonArray();
        foreach (var type in served)
        {
            resources.Add(new JsonObject
            {
                ["name"] = type.Plural, ["singularName"] = type.Singular, ["namespaced"] = type.Namespaced, ["kind"] = type.Kind,
                ["verbs"] = new JsonArray("create", "delete", "get", "list", "patch", "update", "watch"),
                ["shortNames"] = new JsonArray([.. type.ShortNames.Select(n => (JsonNode)n)]),
                ["categories"] = new JsonArray([.. type.Categories.Select(n => (JsonNode)n)]),
            });
            if (type.HasStatus)
                resources.Add(new JsonObject { ["name"] = $"{type.Plural}/status", ["singularName"] = "", ["namespaced"] = type.Namespaced, ["kind"] = type.Kind, ["verbs"] = new JsonArray("get", "patch", "update") });
        }
        return new JsonObject { ["kind"] = "APIResourceList", ["apiVersion"] = "v1", ["groupVersion"] = group == "" ? version : $"{group}/{version}", ["resources"] = resources };
    }

    /// <summary>
    /// An OpenAPI v2 document without definitions, for kubectl releases before OpenAPI v3 (Debian's is 1.20):
    /// they validate only kinds it defines, so every object is left to the server's checks. They ask for
    /// protobuf, in which this document is its one field, <c>swagger: "2.0"</c>.
    /// </summary>
    static async Task OpenApiV2(HttpContext context)
    {
        context.Response.StatusCode = 200;
        if (context.Request.Headers.Accept.ToString().Contains("protobuf", StringComparison.Ordinal))
        {
            context.Response.ContentType = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
            await context.Response.Body.WriteAsync(new byte[] { 0x0a, 0x03, (byte)'2', (byte)'.', (byte)'0' });
            return;
        }
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync("{\"swagger\":\"2.0\",\"info\":{\"title\":\"Kubernetes\",\"version\":\"v1.32.0\"},\"paths\":{},\"definitions\":{}}");
    }

    /// <summary>
    /// The OpenAPI v3 index: one document per group and version. kubectl reads it to learn that PATCH takes
    /// <c>fieldValidation</c>, and then leaves validation to the server instead of downloading schemas.
    /// </summary>
    JsonObject OpenApiRoot()
    {
        var served = Served(_ => true);
        var paths = new JsonObject();
        foreach (var gv in served.Select(t => t.Group == "" ? $"api/{t.Version}" : $"apis/{t.Group}/{t.Version}").Distinct())
            paths[gv] = new JsonObject { ["serverRelativeURL"] = $"/openapi/v3/{gv}" };
        return new JsonObject { ["paths"] = paths };
    }

    /// <summary>A group and version's OpenAPI v3 document: each kind's PATCH, with its query parameters and kind; no schemas.</summary>
    JsonObject? OpenApi(string group, string version)
    {
        var served = Served(t => t.Group == group && t.Version == version);
        if (served.Count == 0) return null;
        var paths = new JsonObject();
        foreach (var type in served)
        {
            string prefix = group == "" ? $"/api/{version}" : $"/apis/{group}/{version}";
            string path = type.Namespaced ? $"{prefix}/namespaces/{{namespace}}/{type.Plural}/{{name}}" : $"{prefix}/{type.Plural}/{{name}}";
            paths[path] = new JsonObject
            {
                ["patch"] = new JsonObject
                {
                    ["parameters"] = new JsonArray([.. new[] { "dryRun", "fieldManager", "fieldValidation", "force" }
                        .Select(p => (JsonNode)new JsonObject { ["name"] = p, ["in"] = "query", ["schema"] = new JsonObject { ["type"] = "string" } })]),
                    ["x-kubernetes-group-version-kind"] = new JsonObject { ["group"] = group, ["version"] = version, ["kind"] = type.Kind },
                },
            };
        }
        return new JsonObject
        {
            ["openapi"] = "3.0.0", ["info"] = new JsonObject { ["title"] = "Kubernetes", ["version"] = "v1.32.0" },
            ["paths"] = paths, ["components"] = new JsonObject { ["schemas"] = new JsonObject() },
        };
    }

    static bool WantsTable(HttpRequest request) => request.Headers.Accept.ToString().Contains("as=Table", StringComparison.Ordinal);

    /// <summary>A meta.k8s.io/v1 Table of a list: Name, the CRD's printer columns (or Age for built-in kinds), each row with the object's metadata.</summary>
    static JsonObject Table(ResourceType kind, JsonObject list)
    {
        var columns = (kind.PrinterColumns ?? [new JsonObject { ["name"] = "Age", ["type"] = "date", ["jsonPath"] = ".metadata.creationTimestamp" }])
            .OfType<JsonObject>().ToList();
        var definitions = new JsonArray(new JsonObject { ["name"] = "Name", ["type"] = "string", ["format"] = "name", ["description"] = "Name of the object", ["priority"] = 0 });
        foreach (var column in columns)
            definitions.Add(new JsonObject
            {
                ["name"] = column["name"]!.DeepClone(), ["type"] = column["type"]!.DeepClone(), ["format"] = column["format"]?.DeepClone() ?? "",
                ["description"] = column["description"]?.DeepClone() ?? "", ["priority"] = column["priority"]?.DeepClone() ?? 0,
            });
        var rows = new JsonArray();
        foreach (var item in ((JsonArray)list["items"]!).OfType<JsonObject>())
        {
            var cells = new JsonArray(item["metadata"]!["name"]!.DeepClone());
            foreach (var column in columns)
            {
                var value = JsonPath(item, column["jsonPath"]!.GetValue<string>());
                cells.Add(column["type"]?.GetValue<string>() == "date" && value is JsonValue v && v.TryGetValue(out string? time) ? Age(time) : value?.DeepClone());
            }
            rows.Add(new JsonObject
            {
                ["cells"] = cells,
                ["object"] = new JsonObject { ["kind"] = "PartialObjectMetadata", ["apiVersion"] = "meta.k8s.io/v1", ["metadata"] = item["metadata"]!.DeepClone() },
            });
        }
        return new JsonObject { ["kind"] = "Table", ["apiVersion"] = "meta.k8s.io/v1", ["metadata"] = list["metadata"]!.DeepClone(), ["columnDefinitions"] = definitions, ["rows"] = rows };
    }

    /// <summary>How long ago, as the API server writes a date column: 42s, 7m, 3h, 2d.</summary>
    static string Age(string time)
    {
        var since = DateTimeOffset.UtcNow - DateTimeOffset.Parse(time, CultureInfo.InvariantCulture);
        return since.TotalSeconds < 120 ? $"{Math.Max(0, (int)since.TotalSeconds)}s" : since.TotalMinutes < 120 ? $"{(int)since.TotalMinutes}m"
            : since.TotalHours < 48 ? $"{(int)since.TotalHours}h" : $"{(int)since.TotalDays}d";
    }

    /// <summary>The JSONPath subset printer columns use: <c>.a.b</c>, <c>.a[0].b</c>, <c>.a[?(@.type=="Ready")].b</c>; the first match, or null.</summary>
    static JsonNode? JsonPath(JsonNode? node, string path)
    {
        int i = 0;
        while (node is not null && i < path.Length)
        {
            if (path[i] == '.')
            {
                int end = path.IndexOfAny(['.', '['], i + 1);
                if (end < 0) end = path.Length;
                node = (node as JsonObject)?[path[(i + 1)..end]];
                i = end;
            }
            else if (path[i] == '[')
            {
                int end = path.IndexOf(']', i);
                string index = path[(i + 1)..end];
                if (index.StartsWith("?(@.", StringComparison.Ordinal))
                {
                    var condition = index[4..^1].Split("==", 2);
                    string field = condition[0].Trim(), expected = condition[1].Trim().Trim('"', '\'');
                    node = (node as JsonArray)?.OfType<JsonObject>().FirstOrDefault(e => e[field] is JsonValue value && value.ToString() == expected);
                }
                else node = node is JsonArray array && int.TryParse(index, out int n) && n < array.Count ? array[n] : null;
                i = end + 1;
            }
            else throw new FormatException($"unsupported JSONPath {path}");
        }
        return node;
    }
}
