using System.Text.Json.Nodes;

namespace Adaptive.Tests.Kubernetes;

/// <summary>
/// A list or watch's label selector (<c>a=b</c>, <c>a==b</c>, <c>a!=b</c>, <c>a</c>, <c>!a</c>, <c>a in (x,y)</c>,
/// <c>a notin (x,y)</c>) and field selector (<c>metadata.name=x</c>, <c>involvedObject.uid!=y</c>, …), all terms ANDed.
/// </summary>
public sealed class Selector
{
    readonly List<Func<JsonObject, bool>> terms = [];

    public bool Matches(JsonObject item) => terms.All(t => t(item));

    public static Selector Parse(string? labels, string? fields)
    {
        var selector = new Selector();
        foreach (var term in Split(labels ?? ""))
            selector.terms.Add(LabelTerm(term));
        foreach (var term in Split(fields ?? ""))
        {
            bool negated = term.Contains("!=", StringComparison.Ordinal);
            var parts = term.Split(negated ? "!=" : term.Contains("==", StringComparison.Ordinal) ? "==" : "=", 2);
            if (parts.Length != 2) throw new FormatException($"invalid field selector: '{term}'");
            string path = parts[0].Trim(), value = parts[1].Trim();
            selector.terms.Add(item => (Field(item, path) == value) != negated);
        }
        return selector;
    }

    static Func<JsonObject, bool> LabelTerm(string term)
    {
        string? Label(JsonObject item, string key) => item["metadata"]?["labels"]?[key]?.GetValue<string>();
        var words = term.Split(' ', 2, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (words.Length == 2 && (words[1].StartsWith("in ", StringComparison.Ordinal) || words[1].StartsWith("notin ", StringComparison.Ordinal)))
        {
            bool notIn = words[1].StartsWith("notin", StringComparison.Ordinal);
            var set = words[1][(notIn ? 5 : 2)..].Trim().Trim('(', ')').Split(',', StringSplitOptions.TrimEntries).ToHashSet();
            return item => Label(item, words[0]) is { } v ? set.Contains(v) != notIn : notIn;
        }
        if (term.Contains("!=", StringComparison.Ordinal))
        {
            var parts = term.Split("!=", 2, StringSplitOptions.TrimEntries);
            return item => Label(item, parts[0]) != parts[1];
        }
        if (term.Contains('='))
        {
            var parts = term.Split(term.Contains("==", StringComparison.Ordinal) ? "==" : "=", 2, StringSplitOptions.TrimEntries);
            return item => Label(item, parts[0]) == parts[1];
        }
        if (term.StartsWith('!')) return item => Label(item, term[1..].Trim()) is null;
        return item => Label(item, term) is not null;
    }

    /// <summary>The string value of a dotted field path (<c>metadata.name</c>, <c>involvedObject.kind</c>); null when absent.</summary>
    static string? Field(JsonObject item, string path)
    {
        JsonNode? node = item;
        foreach (var part in path.Split('.')) node = (node as JsonObject)?[part];
        return node switch { null => null, JsonValue v when v.TryGetValue(out string? s) => s, _ => node.ToJsonString() };
    }

    /// <summary>Splits on the commas that are not inside a set's parentheses.</summary>
    static IEnumerable<string> Split(string text)
    {
        int depth = 0, start = 0;
        for (int i = 0; i <= text.Length; i++)
        {
            if (i < text.Length && text[i] == '(') depth++;
            else if (i < text.Length && text[i] == ')') depth--;
            else if (i == text.Length || (text[i] == ',' && depth == 0))
            {
                string term = text[start..i].Trim();
                if (term.Length > 0) yield return term;
                start = i + 1;
            }
        }
    }
}
