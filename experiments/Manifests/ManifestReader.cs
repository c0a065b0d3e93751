using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Planning;
using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace Adaptive.Experiments.Manifests;

/// <summary>Reads an InferencePipeline manifest (YAML or JSON) as <c>kubectl apply -f</c> would take it.</summary>
public static partial class ManifestReader
{
    static readonly IDeserializer Yaml = new DeserializerBuilder()
        .WithNamingConvention(CamelCaseNamingConvention.Instance)
        .Build();

    /// <summary>Parses and validates; a mistake is a <see cref="PlanningInputException"/> naming the field or the line.</summary>
    public static InferencePipeline Parse(string text)
    {
        InferencePipeline? pipeline;
        try
        {
            pipeline = Yaml.Deserialize<InferencePipeline>(text);
        }
        catch (YamlException e)
        {
            throw new PlanningInputException($"line {e.Start.Line}, column {e.Start.Column}", Explain(e));
        }
        if (pipeline == null) throw new PlanningInputException("(document)", "is empty");
        if (pipeline.Kind != InferencePipeline.KindName)
            throw new PlanningInputException("kind", $"must be {InferencePipeline.KindName}, got '{pipeline.Kind}'");
        if (pipeline.ApiVersion != InferencePipeline.ApiVersionString)
            throw new PlanningInputException("apiVersion", $"must be {InferencePipeline.ApiVersionString}, got '{pipeline.ApiVersion}'");
        InferencePipelineValidator.Validate(pipeline);
        return pipeline;
    }

    /// <summary>YamlDotNet's complaint, in the manifest's terms rather than our C# type names.</summary>
    static string Explain(YamlException e)
    {
        // The real complaint (an unknown field, a word where a number belongs) is often one level down.
        string message = (e.InnerException ?? e).Message;
        if (UnknownProperty().Match(message) is { Success: true } unknown) return $"unknown field '{unknown.Groups[1].Value}'";
        if (message.StartsWith("No node deserializer", StringComparison.Ordinal)) return "this value does not have the shape the field needs";
        return message;
    }

    [GeneratedRegex("Property '(.+)' not found on type")]
    private static partial Regex UnknownProperty();
}
