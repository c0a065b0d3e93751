using System.CommandLine;
using System.CommandLine.Parsing;
using System.ComponentModel;

namespace Adaptive.ModelServer.Hosting;

/// <summary>A setting that is out of range; the message names it.</summary>
public sealed class ConfigurationException(string message) : Exception(message);

/// <summary>
/// Options that come from a flag or, failing that, from an environment variable (<c>--max-batch</c> ←
/// <c>ADAPTIVE_MAX_BATCH</c>): flags for people, environment variables for the operator's pods.
/// </summary>
public static class EnvironmentOptions
{
    public static string VariableFor(string flag) => "ADAPTIVE_" + flag.TrimStart('-').Replace('-', '_').ToUpperInvariant();

    public static Option<T> Create<T>(string flag, string description, T fallback)
    {
        string variable = VariableFor(flag);
        return new Option<T>(flag)
        {
            Description = $"{description} [env {variable}; default {fallback}]",
            DefaultValueFactory = result => FromEnvironment(result, flag, variable, fallback),
        };
    }

    /// <summary>A flag with no default: the flag or its environment variable must be given.</summary>
    public static Option<string> Required(string flag, string description)
    {
        string variable = VariableFor(flag);
        return new Option<string>(flag)
        {
            Description = $"{description} [env {variable}]",
            DefaultValueFactory = result =>
            {
                if (Environment.GetEnvironmentVariable(variable) is { Length: > 0 } value) return value;
                result.AddError($"{flag} (or {variable}) is required");
                return "";
            },
        };
    }

    static T FromEnvironment<T>(ArgumentResult result, string flag, string variable, T fallback)
    {
        string? text = Environment.GetEnvironmentVariable(variable);
        if (string.IsNullOrEmpty(text)) return fallback;
        try
        {
            return (T)TypeDescriptor.GetConverter(typeof(T)).ConvertFromInvariantString(text)!;
        }
        catch (Exception e) when (e is FormatException or NotSupportedException or ArgumentException)
        {
            result.AddError($"{variable}={text} is not a valid value for {flag} ({typeof(T).Name})");
            return fallback;
        }
    }

    public static void Check(bool condition, string message)
    {
        if (!condition) throw new ConfigurationException(message);
    }
}
