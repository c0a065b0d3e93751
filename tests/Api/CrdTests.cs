using System.Reflection;
using System.Text.Json.Serialization;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Tests.Support;
using YamlDotNet.RepresentationModel;

namespace Adaptive.Tests.Api;

/// <summary>The CRD and the samples validate against the upstream schemas, and the CRD matches the C# types.</summary>
public sealed class CrdTests : IDisposable
{
    static readonly string Crd = RepoPaths.Of("crds", "inferencepipelines.adaptive.dev.yaml");
    readonly string dir = Directory.CreateTempSubdirectory("adaptive-crd-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    [Fact]
    public void CrdAndSamplesValidate()
    {
        var result = K8sValidate.Run(RepoPaths.Of("crds"), RepoPaths.Of("samples"));
        Assert.True(result.ExitCode == 0, result.Output);
        Assert.Contains("InferencePipeline/resnet-mixed", result.Output);
        Assert.Contains("InferencePipeline/video", result.Output);
        Assert.Contains("InferencePool/gpus", result.Output);
    }

    [Theory]
    [InlineData("throughputRps: 14.925", "throughputRps: -1")]
    [InlineData("mode: single", "mode: both")]
    [InlineData("sloMs: 800", "sloMs: fast")]
    [InlineData("    - name: detect\n", "    - nom: detect\n")]
    public void SchemaRejectsAnInvalidPipeline(string from, string to)
    {
        string sample = File.ReadAllText(RepoPaths.Of("samples", "video-pipeline.yaml"));
        Assert.Contains(from, sample);
        string broken = Path.Combine(dir, "broken.yaml");
        File.WriteAllText(broken, sample.Replace(from, to));

        var result = K8sValidate.Run(Crd, broken);

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("InferencePipeline/video", result.Output);
    }

    [Fact]
    public void SchemaHasEveryFieldOfTheTypesAndNoOther()
    {
        var yaml = new YamlStream();
        yaml.Load(new StringReader(File.ReadAllText(Crd)));
        var version = (YamlMappingNode)((YamlSequenceNode)((YamlMappingNode)yaml.Documents[0].RootNode)["spec"]["versions"])[0];
        var root = (YamlMappingNode)((YamlMappingNode)version["schema"])["openAPIV3Schema"];
        var properties = (YamlMappingNode)root["properties"];

        AssertSameFields(typeof(InferencePipelineSpec), (YamlMappingNode)properties["spec"], "spec");
        AssertSameFields(typeof(InferencePipelineStatus), (YamlMappingNode)properties["status"], "status");

        var pools = new YamlStream();
        pools.Load(new StringReader(File.ReadAllText(RepoPaths.Of("crds", "inferencepools.adaptive.dev.yaml"))));
        var poolVersion = (YamlMappingNode)((YamlSequenceNode)((YamlMappingNode)pools.Documents[0].RootNode)["spec"]["versions"])[0];
        var poolRoot = (YamlMappingNode)((YamlMappingNode)poolVersion["schema"])["openAPIV3Schema"];
        AssertSameFields(typeof(InferencePoolSpec), (YamlMappingNode)((YamlMappingNode)poolRoot["properties"])["spec"], "spec");
        AssertSameFields(typeof(InferencePoolStatus), (YamlMappingNode)((YamlMappingNode)poolRoot["properties"])["status"], "status");
    }

    static void AssertSameFields(Type type, YamlMappingNode schema, string path)
    {
        var fields = type.GetProperties().ToDictionary(p => p.GetCustomAttribute<JsonPropertyNameAttribute>()!.Name);
        var schemaFields = ((YamlMappingNode)schema["properties"]).Children.ToDictionary(c => ((YamlScalarNode)c.Key).Value!, c => (YamlMappingNode)c.Value);
        Assert.True(fields.Keys.Order().SequenceEqual(schemaFields.Keys.Order()),
            $"{path}: C# has [{string.Join(", ", fields.Keys.Order())}], the CRD has [{string.Join(", ", schemaFields.Keys.Order())}]");
        foreach (var (name, property) in fields)
        {
            var fieldType = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
            if (fieldType.IsGenericType && fieldType.GetGenericTypeDefinition() == typeof(List<>)) fieldType = fieldType.GetGenericArguments()[0];
            if (fieldType.Namespace != typeof(InferencePipelineSpec).Namespace) continue;
            var nested = schemaFields[name];
            if (nested.Children.ContainsKey("items")) nested = (YamlMappingNode)nested["items"];
            AssertSameFields(fieldType, nested, $"{path}.{name}");
        }
    }
}
