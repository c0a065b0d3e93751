using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Adaptive.Tests.Kubernetes;

/// <summary>
/// What kube-apiserver does with a custom resource against its CRD's structural <c>openAPIV3Schema</c> on
/// every write, in its order: nulls of non-nullable fields and fields the schema does not know are pruned,
/// defaults are filled in, then the object is validated (types, int-or-string, required, enum, bounds,
/// lengths, patterns, item counts, date-time, unique keys of map lists). Errors are Kubernetes' field errors.
/// </summary>
public static class StructuralSchema
{
    public sealed record FieldError(string Field, string Reason, string Message);

    /// <summary>Prunes, defaults and validates <paramref name="node"/> in place; returns what is invalid, and the fields pruned.</summary>
    public static (List<FieldError> Errors, List<string> Unknown) Admit(JsonObject node, JsonObject schema)
    {
        var unknown = new List<string>();
        Prune(node, schema, "", unknown, root: true);
        Default(node, schema, root: true);
        var errors = new List<FieldError>();
        Validate(node, schema, "", errors, root: true);
        return (errors, unknown);
    }

    static bool PreservesUnknown(JsonObject schema) => schema["x-kubernetes-preserve-unknown-fields"]?.GetValue<bool>() == true;

    // At the root, apiVersion, kind and metadata belong to every object whatever the schema says, and metadata
    // is ObjectMeta, which the API server checks itself: the schema's `metadata: {type: object}` does not prune it.
    static bool IsObjectMeta(bool root, string key) => root && key is "apiVersion" or "kind" or "metadata";

    static void Prune(JsonNode? node, JsonObject schema, string path, List<string> unknown, bool root = false)
    {
        if (node is JsonObject obj && Type(schema) == "object")
        {
            var properties = schema["properties"] as JsonObject;
            var additional = schema["additionalProperties"] as JsonObject;
            foreach (var (key, value) in obj.ToList())
            {
                var child = properties?[key] as JsonObject ?? additional;
                if (child is null)
                {
                    if (PreservesUnknown(schema) || IsObjectMeta(root, key)) continue;
                    obj.Remove(key);
                    unknown.Add(Join(path, key));
                    continue;
                }
                if (value is null && child["nullable"]?.GetValue<bool>() != true) obj.Remove(key);
                else if (!IsObjectMeta(root, key)) Prune(value, child, Join(path, key), unknown);
            }
        }
        else if (node is JsonArray array && schema["items"] is JsonObject items)
            for (int i = 0; i < array.Count; i++) Prune(array[i], items, $"{path}[{i}]", unknown);
    }

    static void Default(JsonNode? node, JsonObject schema, bool root = false)
    {
        if (node is JsonObject obj && schema["properties"] is JsonObject properties)
        {
            foreach (var (key, child) in properties)
            {
                if (child is not JsonObject childSchema) continue;
                if (!obj.ContainsKey(key) && childSchema["default"] is { } value) obj[key] = value.DeepClone();
                if (obj[key] is { } present && !IsObjectMeta(root, key)) Default(present, childSchema);
            }
        }
        else if (node is JsonObject map && schema["additionalProperties"] is JsonObject additional)
            foreach (var (_, value) in map) Default(value, additional);
        else if (node is JsonArray array && schema["items"] is JsonObject items)
            foreach (var item in array) Default(item, items);
    }

    static string? Type(JsonObject schema) => schema["type"]?.GetValue<string>();

    static void Validate(JsonNode? node, JsonObject schema, string path, List<FieldError> errors, bool root = false)
    {
        string at = path.Length == 0 ? "<root>" : path;
        if (node is null)
        {
            if (schema["nullable"]?.GetValue<bool>() != true) errors.Add(new(at, "FieldValueRequired", $"{at}: Required value"));
            return;
        }
        if (schema["x-kubernetes-int-or-string"]?.GetValue<bool>() == true)
        {
            if (!(node is JsonValue v && (v.GetValueKind() == JsonValueKind.String || IsInteger(v))))
                errors.Add(new(at, "FieldValueInvalid", $"{at}: Invalid value: {Show(node)}: {at} in body must be of type int-or-string"));
            return;
        }
        string? type = Type(schema);
        if (type is not null && !HasType(node, type))
        {
            errors.Add(new(at, "FieldValueTypeInvalid", $"{at}: Invalid value: \"{KindOf(node)}\": {at} in body must be of type {type}: \"{KindOf(node)}\""));
            return;
        }
        if (schema["enum"] is JsonArray allowed && !allowed.Any(a => JsonNode.DeepEquals(a, node)))
            errors.Add(new(at, "FieldValueNotSupported", $"{at}: Unsupported value: {Show(node)}: supported values: {string.Join(", ", allowed.Select(Show))}"));
        switch (node)
        {
            case JsonObject obj:
                foreach (var required in (schema["required"] as JsonArray ?? []).Select(r => r!.GetValue<string>()))
                    if (!obj.ContainsKey(required)) errors.Add(new($"{Join(path, required)}", "FieldValueRequired", $"{Join(path, required)}: Required value"));
                foreach (var (key, value) in obj)
                {
                    var child = (schema["properties"] as JsonObject)?[key] as JsonObject ?? schema["additionalProperties"] as JsonObject;
                    if (child is not null && !IsObjectMeta(root, key)) Validate(value, child, Join(path, key), errors);
                }
                break;
            case JsonArray array:
                if (schema["minItems"] is { } minItems && array.Count < Number(minItems))
                    errors.Add(new(at, "FieldValueInvalid", $"{at}: Invalid value: {array.Count}: {at} in body should have at least {minItems} items"));
                if (schema["maxItems"] is { } maxItems && array.Count > Number(maxItems))
                    errors.Add(new(at, "FieldValueTooMany", $"{at}: Too many: {array.Count}: must have at most {maxItems} items"));
                if (schema["x-kubernetes-list-type"]?.GetValue<string>() == "map" && schema["x-kubernetes-list-map-keys"] is JsonArray keys)
                {
                    var seen = new HashSet<string>();
                    for (int i = 0; i < array.Count; i++)
                    {
                        string key = new JsonObject(keys.Select(k => KeyValuePair.Create(k!.GetValue<string>(), array[i]?[k.GetValue<string>()]?.DeepClone()))).ToJsonString();
                        if (!seen.Add(key)) errors.Add(new($"{at}[{i}]", "FieldValueDuplicate", $"{at}[{i}]: Duplicate value: {key}"));
                    }
                }
                if (schema["items"] is JsonObject items)
                    for (int i = 0; i < array.Count; i++) Validate(array[i], items, $"{path}[{i}]", errors);
                break;
            case JsonValue value when value.GetValueKind() == JsonValueKind.String:
                string text = value.GetValue<string>();
                if (schema["minLength"] is { } minLength && text.Length < Number(minLength))
                    errors.Add(new(at, "FieldValueInvalid", $"{at}: Invalid value: {Show(node)}: {at} in body should be at least {minLength} chars long"));
                if (schema["maxLength"] is { } maxLength && text.Length > Number(maxLength))
                    errors.Add(new(at, "FieldValueTooLong", $"{at}: Too long: may not be more than {maxLength} bytes"));
                if (schema["pattern"] is { } pattern && !Regex.IsMatch(text, pattern.GetValue<string>()))
                    errors.Add(new(at, "FieldValueInvalid", $"{at}: Invalid value: {Show(node)}: {at} in body should match '{pattern}'"));
                if (schema["format"]?.GetValue<string>() == "date-time" && !DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.None, out _))
                    errors.Add(new(at, "FieldValueInvalid", $"{at}: Invalid value: {Show(node)}: {at} in body must be of type date-time"));
                break;
            case JsonValue number when number.GetValueKind() == JsonValueKind.Number:
                double x = Number(number);
                if (schema["minimum"] is { } minimum && x < Number(minimum))
                    errors.Add(new(at, "FieldValueInvalid", $"{at}: Invalid value: {Show(node)}: {at} in body should be greater than or equal to {Show(minimum)}"));
                if (schema["maximum"] is { } maximum && x > Number(maximum))
                    errors.Add(new(at, "FieldValueInvalid", $"{at}: Invalid value: {Show(node)}: {at} in body should be less than or equal to {Show(maximum)}"));
                break;
        }
    }

    static double Number(JsonNode node) => double.Parse(node.ToJsonString(), CultureInfo.InvariantCulture);

    static string Join(string path, string key) => path.Length == 0 ? key : $"{path}.{key}";

    static bool IsInteger(JsonValue value) => value.GetValueKind() == JsonValueKind.Number && decimal.TryParse(value.ToJsonString(), NumberStyles.Integer, CultureInfo.InvariantCulture, out _);

    static bool HasType(JsonNode node, string type) => type switch
    {
        "object" => node is JsonObject,
        "array" => node is JsonArray,
        "string" => node is JsonValue v && v.GetValueKind() == JsonValueKind.String,
        "boolean" => node is JsonValue v && v.GetValueKind() is JsonValueKind.True or JsonValueKind.False,
        "number" => node is JsonValue v && v.GetValueKind() == JsonValueKind.Number,
        "integer" => node is JsonValue v && IsInteger(v),
        _ => true,
    };

    static string KindOf(JsonNode node) => node switch
    {
        JsonObject => "object",
        JsonArray => "array",
        JsonValue v when v.GetValueKind() == JsonValueKind.String => "string",
        JsonValue v when v.GetValueKind() == JsonValueKind.Number => IsInteger(v) ? "integer" : "number",
        _ => "boolean",
    };

    static string Show(JsonNode? node) => node?.ToJsonString() ?? "null";
}
