using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Planning;
using YamlDotNet.Core;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace Adaptive.Experiments.Manifests;

/// <summary>Reads an InferencePipeline manifest (YAML or JSON) as <c>kubectl apply -f</c> would take it.</summary>
public static class ManifestReader
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
            // YamlDotNet wraps the real complaint (an unknown field, a word where a number belongs) one level down.
            string problem = (e.InnerException ?? e).Message;
            throw new PlanningInputException($"line {e.Start.Line}, column {e.Start.Column}", problem);
        }
        if (pipeline == null) throw new PlanningInputException("(document)", "is empty");
        if (pipeline.Kind != InferencePipeline.KindName)
            throw new PlanningInputException("kind", $"must be {InferencePipeline.KindName}, got '{pipeline.Kind}'");
        if (pipeline.ApiVersion != InferencePipeline.ApiVersionString)
            throw new PlanningInputException("apiVersion", $"must be {InferencePipeline.ApiVersionString}, got '{pipeline.ApiVersion}'");
        InferencePipelineValidator.Validate(pipeline);
        return pipeline;
    }
}
