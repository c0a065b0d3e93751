using System.Text.Json.Nodes;

namespace Adaptive.Tests.Kubernetes;

/// <summary>
/// Which lists merge item by item, and by which fields: for built-in kinds the keys their Go types declare
/// (<c>patchMergeKey</c>: containers and env by name, container ports by port, …), for custom resources the
/// schema's <c>x-kubernetes-list-type: map</c> with its <c>x-kubernetes-list-map-keys</c>. Other lists are atomic.
/// </summary>
public sealed class MergeKeys(JsonObject? schema)
{
    static readonly Dictionary<string, string[]> BuiltIn = new()
    {
        ["containers"] = ["name"], ["initContainers"] = ["name"], ["env"] = ["name"], ["volumes"] = ["name"],
        ["volumeMounts"] = ["mountPath"], ["ownerReferences"] = ["uid"], ["conditions"] = ["type"], ["imagePullSecrets"] = ["name"],
    };

    /// <summary>The schema of the whole object, for custom resources; null for built-in kinds.</summary>
    public JsonObject? Schema => schema;

    /// <summary>The key fields of the list at <paramref name="field"/> whose schema is <paramref name="listSchema"/>; null when atomic.</summary>
    public string[]? Of(string field, JsonObject? listSchema, JsonArray list)
    {
        if (schema is not null)
            return listSchema?["x-kubernetes-list-type"]?.GetValue<string>() == "map" && listSchema["x-kubernetes-list-map-keys"] is JsonArray keys
                ? [.. keys.Select(k => k!.GetValue<string>())]
                : field == "ownerReferences" ? BuiltIn[field] : null;
        if (field == "ports") // a container's ports by port number, a Service's by port, each with its protocol
            return list.FirstOrDefault() is JsonObject first && first.ContainsKey("containerPort") ? ["containerPort", "protocol"] : ["port", "protocol"];
        return BuiltIn.GetValueOrDefault(field);
    }

    public static JsonObject? Child(JsonObject? objectSchema, string key) =>
        objectSchema?["properties"]?[key] as JsonObject ?? objectSchema?["additionalProperties"] as JsonObject;

    /// <summary>The key of a list item, as managedFields write it: <c>k:{"name":"x"}</c> with the key fields it has.</summary>
    public static string ItemKey(JsonObject item, string[] keys) =>
        "k:" + new JsonObject(keys.Where(item.ContainsKey).Select(k => KeyValuePair.Create(k, item[k]?.DeepClone()))).ToJsonString();
}

/// <summary>
/// Server-side apply's field ownership, as kube-apiserver keeps it in <c>metadata.managedFields</c> (FieldsV1):
/// each manager owns the fields it set. An apply merges the configuration into the object (maps by key,
/// keyed lists by item, atomic lists whole), fails with a conflict where it would change a field another
/// manager owns (unless forced, which takes the field over), and removes the fields the manager applied
/// last time and no longer applies, when no other manager owns them. Other writes take ownership of the
/// fields they change.
/// </summary>
public static class ServerSideApply
{
    const char Separator = '\u001f';
    static readonly HashSet<string> ServerMetadata = ["name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
        "managedFields", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"];

    public sealed record Conflict(string Manager, string Field);

    /// <summary>Applies <paramref name="configuration"/> for <paramref name="manager"/> to <paramref name="live"/>; returns the new object, or the conflicts.</summary>
    public static (JsonObject? Result, List<Conflict> Conflicts) Apply(JsonObject live, JsonObject configuration, string manager, bool force, MergeKeys keys, string apiVersion)
    {
        var owners = Owners(live);
        var applied = Fields(configuration, keys);
        var conflicts = new List<Conflict>();
        foreach (var path in applied.Where(p => IsValue(configuration, p)))
        {
            if (JsonNode.DeepEquals(Get(live, path), Get(configuration, path))) continue;
            foreach (var (owner, fields) in owners.Where(o => o.Key != (manager, "Apply") && o.Value.Contains(path)))
            {
                if (force) fields.Remove(path);
                else conflicts.Add(new(owner.Manager, Describe(path)));
            }
        }
        if (conflicts.Count > 0) return (null, conflicts);

        var result = (JsonObject)live.DeepClone();
        // Status is not the object's to apply: it has a subresource of its own.
        Merge(result, new JsonObject(configuration.Where(p => p.Key != "status").Select(p => KeyValuePair.Create(p.Key, p.Value?.DeepClone()))), keys, keys.Schema, strategic: false);
        var previous = owners.GetValueOrDefault((manager, "Apply")) ?? [];
        owners[(manager, "Apply")] = applied;
        // Outermost first: a removed item or map takes what is inside it along (its key fields included).
        var removed = new List<string>();
        foreach (var path in previous.Except(applied).OrderBy(p => p.Length))
        {
            if (removed.Any(r => path.StartsWith(r + Separator, StringComparison.Ordinal))) continue;
            if (owners.Values.Any(fields => fields.Any(f => f == path || f.StartsWith(path + Separator, StringComparison.Ordinal)))) continue;
            Remove(result, path);
            removed.Add(path);
        }
        WriteOwners(result, owners, apiVersion);
        return (result, conflicts);
    }

    /// <summary>After a write that is not an apply: <paramref name="manager"/> owns what it changed, and nobody owns what is gone.</summary>
    public static void RecordUpdate(JsonObject before, JsonObject after, string manager, MergeKeys keys, string apiVersion)
    {
        var owners = Owners(before);
        var old = Fields(before, keys);
        var now = Fields(after, keys);
        var changed = now.Where(p => !old.Contains(p) || (IsValue(after, p) && !JsonNode.DeepEquals(Get(before, p), Get(after, p)))).ToHashSet();
        foreach (var fields in owners.Values)
        {
            fields.ExceptWith(changed);
            fields.IntersectWith(now);
        }
        if (changed.Count > 0) (owners.TryGetValue((manager, "Update"), out var mine) ? mine : owners[(manager, "Update")] = []).UnionWith(changed);
        WriteOwners(after, owners, apiVersion);
    }

    /// <summary>A strategic merge patch: a merge patch whose keyed lists merge by item, with the <c>$patch: delete</c> directive; other directives are dropped.</summary>
    public static void StrategicMerge(JsonObject target, JsonObject patch, MergeKeys keys) => Merge(target, patch, keys, null, strategic: true);

    static JsonObject WithoutDirectives(JsonObject o) => new(o.Where(p => !p.Key.StartsWith('$')).Select(p => KeyValuePair.Create(p.Key, p.Value?.DeepClone())));

    /// <summary>
    /// Merges <paramref name="patch"/> into <paramref name="target"/>: maps by key, keyed lists item by item,
    /// anything else replaced. A strategic merge patch also deletes a key set to null and an item marked
    /// <c>$patch: delete</c>, and drops its other directives (keys starting with <c>$</c>).
    /// </summary>
    static void Merge(JsonObject target, JsonObject patch, MergeKeys keys, JsonObject? schema, bool strategic)
    {
        foreach (var (key, value) in patch)
        {
            if (strategic && key.StartsWith('$')) continue;
            if (strategic && value is null)
            {
                target.Remove(key);
                continue;
            }
            var childSchema = MergeKeys.Child(schema, key);
            if (value is JsonObject o && target[key] is JsonObject existing) Merge(existing, o, keys, childSchema, strategic);
            else if (value is JsonArray items && target[key] is JsonArray list && keys.Of(key, childSchema, items) is { } keyFields)
                foreach (var item in items.OfType<JsonObject>())
                {
                    var match = list.OfType<JsonObject>().FirstOrDefault(l => MergeKeys.ItemKey(l, keyFields) == MergeKeys.ItemKey(item, keyFields));
                    if (strategic && item["$patch"]?.GetValue<string>() == "delete")
                    {
                        if (match is not null) list.Remove(match);
                    }
                    else if (match is not null) Merge(match, item, keys, childSchema?["items"] as JsonObject, strategic);
                    else list.Add(strategic ? WithoutDirectives(item) : item.DeepClone());
                }
            else target[key] = strategic && value is JsonObject obj ? WithoutDirectives(obj) : value?.DeepClone();
        }
    }

    /// <summary>The paths of the fields an object sets (leaves, and the items of keyed lists), outside what the server itself manages.</summary>
    public static HashSet<string> Fields(JsonObject obj, MergeKeys keys)
    {
        var fields = new HashSet<string>();
        foreach (var (key, value) in obj)
        {
            if (key is "apiVersion" or "kind" or "status") continue;
            if (key == "metadata" && value is JsonObject metadata)
            {
                foreach (var (field, child) in metadata.Where(m => !ServerMetadata.Contains(m.Key)))
                    Collect(child, "f:metadata" + Separator + "f:" + field, field, null, keys, fields);
                continue;
            }
            Collect(value, "f:" + key, key, MergeKeys.Child(keys.Schema, key), keys, fields);
        }
        return fields;
    }

    static void Collect(JsonNode? node, string path, string field, JsonObject? schema, MergeKeys keys, HashSet<string> fields)
    {
        switch (node)
        {
            case JsonObject { Count: > 0 } obj:
                foreach (var (key, value) in obj) Collect(value, path + Separator + "f:" + key, key, MergeKeys.Child(schema, key), keys, fields);
                break;
            case JsonArray list when keys.Of(field, schema, list) is { } keyFields:
                foreach (var item in list.OfType<JsonObject>())
                {
                    string itemPath = path + Separator + MergeKeys.ItemKey(item, keyFields);
                    fields.Add(itemPath);
                    foreach (var (key, value) in item) Collect(value, itemPath + Separator + "f:" + key, key, MergeKeys.Child(schema?["items"] as JsonObject, key), keys, fields);
                }
                break;
            default:
                fields.Add(path);
                break;
        }
    }

    static bool IsValue(JsonObject obj, string path) => !path.Split(Separator)[^1].StartsWith("k:", StringComparison.Ordinal) && Get(obj, path) is not JsonObject { Count: > 0 };

    static JsonNode? Get(JsonNode? node, string path)
    {
        foreach (var element in path.Split(Separator))
        {
            node = element.StartsWith("f:", StringComparison.Ordinal) ? (node as JsonObject)?[element[2..]]
                : (node as JsonArray)?.OfType<JsonObject>().FirstOrDefault(item => Matches(item, element));
            if (node is null) return null;
        }
        return node;
    }

    static bool Matches(JsonObject item, string element)
    {
        var key = JsonNode.Parse(element[2..])!.AsObject();
        return key.All(k => JsonNode.DeepEquals(item[k.Key], k.Value));
    }

    static void Remove(JsonObject obj, string path)
    {
        var elements = path.Split(Separator);
        var parent = Get(obj, string.Join(Separator, elements[..^1]));
        if (elements.Length == 1) parent = obj;
        string last = elements[^1];
        if (last.StartsWith("f:", StringComparison.Ordinal)) (parent as JsonObject)?.Remove(last[2..]);
        else if (parent is JsonArray list && list.OfType<JsonObject>().FirstOrDefault(i => Matches(i, last)) is { } item) list.Remove(item);
    }

    static string Describe(string path) => "." + string.Join(".", path.Split(Separator).Select(e => e.StartsWith("f:", StringComparison.Ordinal) ? e[2..] : $"[{e[2..]}]"));

    // ---- metadata.managedFields, in FieldsV1: a tree of "f:field" and "k:{key}" entries, "." marking an item itself ----

    static Dictionary<(string Manager, string Operation), HashSet<string>> Owners(JsonObject obj)
    {
        var owners = new Dictionary<(string, string), HashSet<string>>();
        foreach (var entry in (obj["metadata"]?["managedFields"] as JsonArray ?? []).OfType<JsonObject>())
        {
            var fields = new HashSet<string>();
            if (entry["fieldsV1"] is JsonObject tree) Flatten(tree, "", fields);
            owners[(entry["manager"]!.GetValue<string>(), entry["operation"]!.GetValue<string>())] = fields;
        }
        return owners;
    }

    static void Flatten(JsonObject tree, string prefix, HashSet<string> fields)
    {
        foreach (var (key, value) in tree)
        {
            if (key == ".") { fields.Add(prefix); continue; }
            string path = prefix.Length == 0 ? key : prefix + Separator + key;
            if (value is JsonObject { Count: > 0 } child) Flatten(child, path, fields);
            else fields.Add(path);
        }
    }

    /// <summary>Writes the owners back; an entry whose fields did not change keeps its time, so that a no-op write stays one.</summary>
    static void WriteOwners(JsonObject obj, Dictionary<(string Manager, string Operation), HashSet<string>> owners, string apiVersion)
    {
        var previous = (obj["metadata"]?["managedFields"] as JsonArray ?? []).OfType<JsonObject>().ToList();
        var entries = new JsonArray();
        foreach (var ((manager, operation), fields) in owners.Where(o => o.Value.Count > 0).OrderBy(o => o.Key.Manager, StringComparer.Ordinal))
        {
            var tree = new JsonObject();
            foreach (var path in fields.Order(StringComparer.Ordinal))
            {
                var node = tree;
                foreach (var element in path.Split(Separator)) node = node[element] as JsonObject ?? (JsonObject)(node[element] = new JsonObject());
                if (path.Split(Separator)[^1].StartsWith("k:", StringComparison.Ordinal)) node["."] = new JsonObject();
            }
            var same = previous.FirstOrDefault(p => p["manager"]?.GetValue<string>() == manager && p["operation"]?.GetValue<string>() == operation
                && JsonNode.DeepEquals(p["fieldsV1"], tree));
            entries.Add(new JsonObject
            {
                ["manager"] = manager, ["operation"] = operation, ["apiVersion"] = apiVersion,
                ["time"] = same?["time"]?.DeepClone() ?? DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", System.Globalization.CultureInfo.InvariantCulture),
                ["fieldsType"] = "FieldsV1", ["fieldsV1"] = tree,
            });
        }
        ((JsonObject)obj["metadata"]!)["managedFields"] = entries;
    }
}
