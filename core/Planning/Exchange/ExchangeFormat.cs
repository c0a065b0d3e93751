using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Adaptive.Core.Planning.Exchange;

/// <summary>A problem read from the exchange format, and whether it was written as several pipelines.</summary>
public sealed record ExchangeDocument(PlanningProblem Problem, bool ManyPipelines);

/// <summary>
/// Reads planning problems and writes answers in the planning exchange format (docs/planning-format.md). Every input
/// mistake is reported as a <see cref="PlanningInputException"/> naming the field.
/// </summary>
public static class ExchangeFormat
{
    static readonly Dictionary<string, AccuracyMethod> AccuracyMethods = new()
    {
        ["sum"] = AccuracyMethod.Sum, ["average"] = AccuracyMethod.Average, ["product"] = AccuracyMethod.Product,
    };

    static readonly Dictionary<string, StageMode> Modes = new() { ["single"] = StageMode.Single, ["mixed"] = StageMode.Mixed };

    static readonly Dictionary<string, LatencyModel> LatencyModels = new() { ["batch-fill"] = LatencyModel.BatchFill, ["queueing"] = LatencyModel.Queueing };

    public static ExchangeDocument Parse(string json)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new PlanningInputException("(document)", $"not valid JSON: {e.Message}");
        }
        using (document)
        {
            var root = new JsonField(document.RootElement, "");
            if (root.Optional("pipelines") is not { } many) return new ExchangeDocument(PlanningProblem.Single(ReadPipeline(root)), false);

            var pipelines = many.Array().Select(ReadPipeline).ToList();
            RequireUnique(pipelines.Select(p => p.Name), many, "pipeline name");
            var limits = ReadLimits(root, pipelines.SelectMany(p => p.Stages));
            string name = root.Optional("name")?.String() ?? string.Join("+", pipelines.Select(p => p.Name));
            return new ExchangeDocument(new PlanningProblem(name, pipelines, limits), true);
        }
    }

    static PipelineProblem ReadPipeline(JsonField p)
    {
        var weights = p.Required("weights");
        var stages = p.Required("stages").Array().Select(ReadStage).ToList();
        RequireUnique(stages.Select(s => s.Name), p.Required("stages"), "stage name");
        var pipeline = new PipelineProblem(
            Name: p.Required("name").String(),
            SloMs: p.Required("sloMs").Positive(),
            ArrivalRate: p.Required("arrivalRate").Positive(),
            AccuracyMethod: p.Required("accuracyMethod").Choice(AccuracyMethods),
            Weights: new ObjectiveWeights(
                weights.Required("accuracy").NonNegative(), weights.Required("cost").NonNegative(),
                weights.Required("batch").NonNegative(), weights.Required("loading").NonNegative()),
            Budget: p.Optional("budget")?.NonNegative(),
            HardwareLimits: ReadLimits(p, stages),
            Stages: stages,
            Current: [])
        {
            LatencyModel = p.Optional("latencyModel")?.Choice(LatencyModels) ?? LatencyModel.BatchFill,
        };
        return pipeline with { Current = ReadCurrent(p, stages) };
    }

    static StageProblem ReadStage(JsonField s)
    {
        var batchSizes = s.Required("batchSizes").Array();
        var sizes = batchSizes.Select(b => b.Integer(1)).ToList();
        RequireUnique(sizes.Select(b => b.ToString(CultureInfo.InvariantCulture)), s.Required("batchSizes"), "batch size");
        var variants = s.Required("variants").Array().Select(ReadVariant).ToList();
        RequireUnique(variants.Select(v => v.Name), s.Required("variants"), "variant name");
        for (int i = 0; i < sizes.Count; i++)
        {
            if (!variants.SelectMany(v => v.Hardware).Any(h => h.At(sizes[i]) != null))
                throw batchSizes[i].Error($"batch size {sizes[i]} has no profile in any variant of the stage");
        }
        return new StageProblem(
            Name: s.Required("name").String(),
            Mode: s.Required("mode").Choice(Modes),
            MinReplicas: 1,
            MaxReplicas: s.Required("maxReplicas").Integer(1),
            BatchSizes: sizes,
            Variants: variants)
        {
            MaxQueueDelayMs = s.Optional("maxQueueDelayMs")?.NonNegative() ?? 0,
        };
    }

    static VariantProblem ReadVariant(JsonField v)
    {
        var hardware = v.Required("hardware").Array().Select(h =>
        {
            var profile = h.Required("profile").Array().Select(e => new ProfilePoint(
                e.Required("batch").Integer(1), e.Required("latencyMs").NonNegative(), e.Required("throughput").Positive())).ToList();
            RequireUnique(profile.Select(e => e.Batch.ToString(CultureInfo.InvariantCulture)), h.Required("profile"), "batch");
            return new HardwareProfile(
                h.Required("class").String(), h.Required("costPerReplica").NonNegative(), h.Required("loadTimeS").NonNegative(), profile);
        }).ToList();
        RequireUnique(hardware.Select(h => h.Class), v.Required("hardware"), "hardware class");
        return new VariantProblem(v.Required("name").String(), v.Required("accuracy").NonNegative(), hardware);
    }

    static Dictionary<string, int> ReadLimits(JsonField owner, IEnumerable<StageProblem> stages)
    {
        var limits = new Dictionary<string, int>();
        if (owner.Optional("hardwareLimits") is not { } field) return limits;
        var known = stages.SelectMany(s => s.Variants).SelectMany(v => v.Hardware).Select(h => h.Class).ToHashSet();
        foreach (var (hardwareClass, limit) in field.Entries())
        {
            if (!known.Contains(hardwareClass))
                throw limit.Error($"unknown hardware class '{hardwareClass}'; the variants run on: {string.Join(", ", known.Order())}");
            limits[hardwareClass] = limit.Integer(0);
        }
        return limits;
    }

    static List<RunningAllocation> ReadCurrent(JsonField p, IReadOnlyList<StageProblem> stages)
    {
        if (p.Optional("current") is not { } field) return [];
        return field.Array(allowEmpty: true).Select(c =>
        {
            var stageField = c.Required("stage");
            var stage = stages.FirstOrDefault(s => s.Name == stageField.String())
                ?? throw stageField.Error($"unknown stage '{stageField.String()}'");
            var variantField = c.Required("variant");
            var variant = stage.Variants.FirstOrDefault(v => v.Name == variantField.String())
                ?? throw variantField.Error($"unknown variant '{variantField.String()}' in stage '{stage.Name}'");
            var hardwareField = c.Required("hardware");
            if (variant.Hardware.All(h => h.Class != hardwareField.String()))
                throw hardwareField.Error($"unknown hardware class '{hardwareField.String()}' for variant '{variant.Name}'");
            return new RunningAllocation(stage.Name, variant.Name, hardwareField.String(), c.Required("replicas").Integer(0), c.Required("batch").Integer(1));
        }).ToList();
    }

    static void RequireUnique(IEnumerable<string> names, JsonField list, string what)
    {
        if (names.GroupBy(n => n).FirstOrDefault(g => g.Count() > 1) is { } twice)
            throw list.Error($"{what} '{twice.Key}' appears more than once");
    }

    public static string Write(PlanResult result, bool manyPipelines)
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteString("status", result.Status.ToString().ToLowerInvariant());
            WriteObjective(json, result.Objective);
            json.WriteNumber("solveMs", Math.Round(result.SolveMs, 3));
            if (manyPipelines)
            {
                json.WriteStartArray("pipelines");
                foreach (var pipeline in result.Pipelines)
                {
                    json.WriteStartObject();
                    json.WriteString("name", pipeline.Name);
                    WriteObjective(json, pipeline.Objective);
                    WriteStages(json, pipeline.Stages);
                    json.WriteEndObject();
                }
                json.WriteEndArray();
            }
            else WriteStages(json, result.Pipelines.Single().Stages);
            json.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    static void WriteObjective(Utf8JsonWriter json, double? objective)
    {
        if (objective is { } value) json.WriteNumber("objective", value);
        else json.WriteNull("objective");
    }

    static void WriteStages(Utf8JsonWriter json, IReadOnlyList<StagePlan> stages)
    {
        json.WriteStartArray("stages");
        foreach (var stage in stages)
        {
            json.WriteStartObject();
            json.WriteString("name", stage.Name);
            json.WriteStartArray("allocations");
            foreach (var a in stage.Allocations)
            {
                json.WriteStartObject();
                json.WriteString("variant", a.Variant);
                json.WriteString("hardware", a.Hardware);
                json.WriteNumber("replicas", a.Replicas);
                json.WriteNumber("batch", a.Batch);
                json.WriteNumber("share", a.Share);
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        json.WriteEndArray();
    }
}
