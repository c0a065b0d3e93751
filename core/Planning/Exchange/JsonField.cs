using System.Text.Json;

namespace Adaptive.Core.Planning.Exchange;

/// <summary>
/// A JSON value with the path that leads to it, so that every complaint about it names the field, as in
/// <c>stages[1].variants[0].hardware[0].profile[2].throughput: must be greater than 0, got -3</c>.
/// </summary>
readonly struct JsonField(JsonElement value, string path)
{
    public string Path { get; } = path;

    public PlanningInputException Error(string problem) => new(Path, problem);

    string Child(string name) => Path.Length == 0 ? name : $"{Path}.{name}";

    public JsonField Required(string name)
    {
        if (value.ValueKind != JsonValueKind.Object) throw Error($"must be an object, got {Describe(value)}");
        if (!value.TryGetProperty(name, out var child) || child.ValueKind == JsonValueKind.Null)
            throw new PlanningInputException(Child(name), "is required");
        return new JsonField(child, Child(name));
    }

    public JsonField? Optional(string name) =>
        value.ValueKind == JsonValueKind.Object && value.TryGetProperty(name, out var child) && child.ValueKind != JsonValueKind.Null
            ? new JsonField(child, Child(name))
            : null;

    public string String()
    {
        if (value.ValueKind != JsonValueKind.String || value.GetString() is not { Length: > 0 } text)
            throw Error($"must be a non-empty string, got {Describe(value)}");
        return text;
    }

    public double Number()
    {
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out double number) || !double.IsFinite(number))
            throw Error($"must be a number, got {Describe(value)}");
        return number;
    }

    public double Positive()
    {
        double number = Number();
        return number > 0 ? number : throw Error($"must be greater than 0, got {value.GetRawText()}");
    }

    public double NonNegative()
    {
        double number = Number();
        return number >= 0 ? number : throw Error($"must not be negative, got {value.GetRawText()}");
    }

    public int Integer(int minimum)
    {
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt32(out int number))
            throw Error($"must be a whole number, got {Describe(value)}");
        return number >= minimum ? number : throw Error($"must be at least {minimum}, got {number}");
    }

    public T Choice<T>(IReadOnlyDictionary<string, T> choices)
    {
        string text = String();
        return choices.TryGetValue(text, out var choice)
            ? choice
            : throw Error($"must be one of {string.Join(", ", choices.Keys)}, got '{text}'");
    }

    public List<JsonField> Array(bool allowEmpty = false)
    {
        if (value.ValueKind != JsonValueKind.Array) throw Error($"must be a list, got {Describe(value)}");
        if (!allowEmpty && value.GetArrayLength() == 0) throw Error("must not be empty");
        string path = Path;
        return value.EnumerateArray().Select((item, i) => new JsonField(item, $"{path}[{i}]")).ToList();
    }

    public List<(string Name, JsonField Value)> Entries()
    {
        if (value.ValueKind != JsonValueKind.Object) throw Error($"must be an object, got {Describe(value)}");
        string path = Path;
        return value.EnumerateObject().Select(p => (p.Name, new JsonField(p.Value, $"{path}.{p.Name}"))).ToList();
    }

    static string Describe(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => $"\"{value.GetString()}\"",
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "a list",
        _ => value.GetRawText(),
    };
}
