using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using YamlDotNet.RepresentationModel;

namespace Adaptive.Tests.Support;

/// <summary>
/// Renders the chart's templates for tests, as `helm template` would (helm itself is not on this machine).
/// The chart keeps to a small subset of Helm's template language, which this renderer implements and
/// nothing more: value and release substitution, if/else/end, <c>.Files.Get</c> with <c>indent</c>, and
/// whitespace trimming. Anything else throws, so a template outside the subset fails its test.
/// </summary>
public static partial class HelmTemplate
{
    public static string Render(string chart, string releaseName, string releaseNamespace, IReadOnlyDictionary<string, object?>? overrides = null)
    {
        var values = LoadValues(Path.Combine(chart, "values.yaml"));
        foreach (var (path, value) in overrides ?? new Dictionary<string, object?>()) Set(values, path.Split('.'), value);
        var output = new StringBuilder();
        foreach (var file in Directory.GetFiles(Path.Combine(chart, "templates"), "*.yaml").Order())
        {
            string rendered = RenderOne(File.ReadAllText(file), chart, values, releaseName, releaseNamespace).Trim();
            if (rendered.Length > 0) output.Append("---\n# Source: ").Append(Path.GetFileName(file)).Append('\n').Append(rendered).Append('\n');
        }
        return output.ToString();
    }

    static string RenderOne(string template, string chart, Dictionary<string, object?> values, string name, string ns)
    {
        var output = new StringBuilder();
        var active = new Stack<(bool Parent, bool Condition, bool InElse)>();
        bool Emitting() => active.All(a => a.Parent && (a.InElse ? !a.Condition : a.Condition));
        int position = 0;
        bool trimNext = false;
        foreach (Match tag in Tag().Matches(template))
        {
            string text = template[position..tag.Index];
            if (trimNext) text = text.TrimStart();
            if (tag.Groups[1].Value == "-") text = text.TrimEnd();
            if (Emitting()) output.Append(text);
            position = tag.Index + tag.Length;
            trimNext = tag.Groups[3].Value == "-";
            string action = tag.Groups[2].Value.Trim();
            if (action.StartsWith("if ", StringComparison.Ordinal))
            {
                bool emitting = Emitting();
                active.Push((emitting, Truthy(Evaluate(action[3..].Trim(), chart, values, name, ns)), false));
            }
            else if (action == "else")
            {
                var top = active.Pop();
                active.Push(top with { InElse = true });
            }
            else if (action == "end") active.Pop();
            else if (Emitting()) output.Append(Format(Evaluate(action, chart, values, name, ns)));
        }
        string rest = template[position..];
        output.Append(trimNext ? rest.TrimStart() : rest);
        if (active.Count != 0) throw new InvalidOperationException("an if without its end");
        return output.ToString();
    }

    static object? Evaluate(string expression, string chart, Dictionary<string, object?> values, string name, string ns)
    {
        var pipeline = expression.Split('|', StringSplitOptions.TrimEntries);
        object? value = pipeline[0] switch
        {
            ".Release.Name" => name,
            ".Release.Namespace" => ns,
            var v when v.StartsWith(".Values.", StringComparison.Ordinal) => Lookup(values, v[".Values.".Length..].Split('.')),
            var f when FilesGet().Match(f) is { Success: true } m => File.ReadAllText(Path.Combine(chart, m.Groups[1].Value)),
            var other => throw new NotSupportedException($"template expression '{other}' is outside the subset the test renderer supports"),
        };
        foreach (var function in pipeline.Skip(1))
        {
            var parts = function.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            value = parts[0] switch
            {
                "indent" => string.Join('\n', Format(value).Split('\n').Select(l => l.Length == 0 ? l : new string(' ', int.Parse(parts[1], CultureInfo.InvariantCulture)) + l)),
                "quote" => $"\"{Format(value)}\"",
                _ => throw new NotSupportedException($"template function '{parts[0]}' is outside the subset the test renderer supports"),
            };
        }
        return value;
    }

    static object? Lookup(Dictionary<string, object?> values, string[] path)
    {
        object? current = values;
        foreach (var key in path)
            current = current is Dictionary<string, object?> map && map.TryGetValue(key, out var next) ? next : null;
        return current;
    }

    static void Set(Dictionary<string, object?> values, string[] path, object? value)
    {
        var map = values;
        foreach (var key in path[..^1])
        {
            if (map.GetValueOrDefault(key) is not Dictionary<string, object?> child) map[key] = child = [];
            map = child;
        }
        map[path[^1]] = value;
    }

    static bool Truthy(object? value) => value switch
    {
        null => false,
        bool b => b,
        string s => s.Length > 0,
        Dictionary<string, object?> d => d.Count > 0,
        _ => true,
    };

    static string Format(object? value) => value switch
    {
        null => "",
        bool b => b ? "true" : "false",
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    static Dictionary<string, object?> LoadValues(string file)
    {
        var yaml = new YamlStream();
        yaml.Load(new StringReader(File.ReadAllText(file)));
        return (Dictionary<string, object?>)Convert(yaml.Documents[0].RootNode)!;
    }

    static object? Convert(YamlNode node) => node switch
    {
        YamlMappingNode map => map.Children.ToDictionary(c => ((YamlScalarNode)c.Key).Value!, c => Convert(c.Value)),
        YamlSequenceNode list => list.Children.Select(Convert).ToList(),
        YamlScalarNode { Style: YamlDotNet.Core.ScalarStyle.Plain } s when s.Value is "true" or "false" => s.Value == "true",
        YamlScalarNode { Style: YamlDotNet.Core.ScalarStyle.Plain } s when long.TryParse(s.Value, CultureInfo.InvariantCulture, out long l) => l,
        YamlScalarNode s => s.Value,
        _ => null,
    };

    [GeneratedRegex(@"\{\{(-?)(.*?)(-?)\}\}", RegexOptions.Singleline)]
    private static partial Regex Tag();

    [GeneratedRegex("^\\.Files\\.Get \"([^\"]+)\"$")]
    private static partial Regex FilesGet();
}
