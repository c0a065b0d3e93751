using System.Text.Json;
using System.Text.Json.Serialization;

namespace Adaptive.Core.Routing;

/// <summary>A router configuration that cannot be used; the message names the field.</summary>
public sealed class RouterConfigException(string message) : Exception(message);

/// <param name="Endpoint">Base URL of the variant's model servers (its Kubernetes Service), at the port of <paramref name="Transport"/>.</param>
/// <param name="Weight">Share of the stage's requests, relative to the other variants' weights.</param>
/// <param name="Transport">How the router calls them: the Open Inference Protocol over REST (the default) or gRPC.</param>
public sealed record VariantRoute(string Name, string Endpoint, double Weight,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] StageTransport Transport = StageTransport.Rest);

[JsonConverter(typeof(JsonStringEnumConverter<StageTransport>))]
public enum StageTransport
{
    [JsonStringEnumMemberName("rest")] Rest,
    [JsonStringEnumMemberName("grpc")] Grpc,
}

public sealed record StageRoute(string Name, IReadOnlyList<VariantRoute> Variants);

/// <summary>
/// The contract between the operator and the router (model-server/Routing): what the router serves, as
/// the operator writes it into a ConfigMap: the pipeline's name, its SLO (optional: with it the router gives each stage
/// its share of the SLO, <see cref="StageDeadlines"/>, and counts the requests that miss it) and, for each
/// stage in order, the variants and their weights. Example:
/// <code>{"pipeline":"video","sloMs":800,"stages":[{"name":"detect","variants":[{"name":"yolov5n","endpoint":"http://video-detect-yolov5n:8080","weight":12.5}]}]}</code>
/// A variant called over gRPC says so: <c>{"name":"yolov5n","endpoint":"http://video-detect-yolov5n:8081","weight":12.5,"transport":"grpc"}</c>.
/// </summary>
public sealed record RouterConfig(string Pipeline, IReadOnlyList<StageRoute> Stages, double? SloMs = null)
{
    static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        WriteIndented = true,
    };

    public static RouterConfig Parse(string text)
    {
        RouterConfig? config;
        try
        {
            config = JsonSerializer.Deserialize<RouterConfig>(text, Json);
        }
        catch (JsonException e)
        {
            throw new RouterConfigException($"not a router configuration: {(e.Path is { } path ? path + ": " : "")}{e.Message.Split(" Path:")[0]}");
        }
        if (config is null) throw new RouterConfigException("the configuration is empty");
        config.Validate();
        return config;
    }

    public string Write() => JsonSerializer.Serialize(this, Json);

    void Validate()
    {
        if (string.IsNullOrWhiteSpace(Pipeline)) throw new RouterConfigException("pipeline: a name is required");
        if (SloMs is { } slo && !(slo > 0 && double.IsFinite(slo))) throw new RouterConfigException($"sloMs: must be a positive number of milliseconds, got {slo}");
        if (Stages is null || Stages.Count == 0) throw new RouterConfigException("stages: at least one stage is required");
        for (int s = 0; s < Stages.Count; s++)
        {
            var stage = Stages[s];
            string path = $"stages[{s}]";
            if (string.IsNullOrWhiteSpace(stage.Name)) throw new RouterConfigException($"{path}.name: a name is required");
            if (Stages.Take(s).Any(other => other.Name == stage.Name)) throw new RouterConfigException($"{path}.name: stage '{stage.Name}' appears twice");
            if (stage.Variants is null || stage.Variants.Count == 0) throw new RouterConfigException($"{path}.variants: at least one variant is required");
            for (int v = 0; v < stage.Variants.Count; v++)
            {
                var variant = stage.Variants[v];
                string vpath = $"{path}.variants[{v}]";
                if (string.IsNullOrWhiteSpace(variant.Name)) throw new RouterConfigException($"{vpath}.name: a name is required");
                if (!Uri.TryCreate(variant.Endpoint, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
                    throw new RouterConfigException($"{vpath}.endpoint: '{variant.Endpoint}' is not an absolute http(s) URL");
                if (!double.IsFinite(variant.Weight) || variant.Weight < 0)
                    throw new RouterConfigException($"{vpath}.weight: must be a non-negative number, got {variant.Weight}");
            }
            if (stage.Variants.Sum(v => v.Weight) <= 0) throw new RouterConfigException($"{path}.variants: the weights must not all be zero");
        }
    }
}
