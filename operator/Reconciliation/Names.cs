using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;

namespace Adaptive.Operator.Reconciliation;

/// <summary>
/// Names and labels of the objects the operator owns. A pipeline's name may be any DNS-1123 subdomain (up to
/// 253 characters, dots, a leading digit); the names made from it must be valid for their kinds, so a name
/// that is not kept as it is gets a hash of the original, which keeps different pipelines apart.
/// </summary>
public static partial class Names
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

    const int MaxLabel = 63;
    const int HashLength = 8;

    public static string Allocation(string pipeline, string stage, string variant, string hardwareClass) =>
        Dns($"{pipeline}-{stage}-{variant}-{hardwareClass}");

    public static string RouterName(string pipeline) => Dns($"{pipeline}-router");

    public static string RoutesConfigMap(string pipeline) => Dns($"{pipeline}-routes");

    /// <summary>
    /// An Event's name, <c>pipeline.time</c> as client-go's recorder makes them, within the 253 characters of a
    /// DNS-1123 subdomain however long the pipeline's name (which already is one).
    /// </summary>
    public static string Event(string pipeline, DateTime time)
    {
        string suffix = $".{time.Ticks:x}";
        string head = pipeline[..Math.Min(pipeline.Length, 253 - suffix.Length)].TrimEnd('-', '.');
        return head + suffix;
    }

    /// <summary>
    /// A DNS-1035 label, what a Service's name must be (the operator gives each Deployment its Service's
    /// name): a lower-case letter, then letters, digits and '-', not ending in '-', at most 63 characters.
    /// A name that already is one is kept; any other is cleaned ('-' for other characters, an 'x' before a
    /// leading digit), cut, and ended with a hash of the original.
    /// </summary>
    public static string Dns(string name)
    {
        if (Dns1035Label().IsMatch(name)) return name;
        var clean = new StringBuilder(name.Length);
        foreach (char c in name.ToLowerInvariant()) clean.Append(char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) ? c : '-');
        string text = clean.ToString().Trim('-');
        if (!char.IsAsciiLetterLower(text.FirstOrDefault())) text = "x" + text;
        return WithHash(text, name, c => c == '-');
    }

    /// <summary>
    /// A label value: at most 63 letters, digits, '-', '_' and '.', beginning and ending with a letter or digit.
    /// A pipeline's name of up to 63 characters is kept; a longer one is cut and ended with a hash of it.
    /// </summary>
    public static string LabelValue(string value)
    {
        if (LabelValuePattern().IsMatch(value)) return value;
        var clean = new StringBuilder(value.Length);
        foreach (char c in value) clean.Append(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '-');
        return WithHash(clean.ToString().Trim('-', '_', '.'), value, c => c is '-' or '_' or '.');
    }

    static string WithHash(string text, string original, Func<char, bool> separator)
    {
        string hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(original)))[..HashLength];
        string head = text[..Math.Min(text.Length, MaxLabel - HashLength - 1)];
        while (head.Length > 0 && separator(head[^1])) head = head[..^1];
        return head.Length == 0 ? hash : $"{head}-{hash}";
    }

    [GeneratedRegex("^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")]
    public static partial Regex Dns1035Label();

    [GeneratedRegex("^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")]
    public static partial Regex LabelValuePattern();
}
