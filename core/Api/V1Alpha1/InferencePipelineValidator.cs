using Adaptive.Core.Models;
using System.Text.RegularExpressions;
using Adaptive.Core.Planning;

namespace Adaptive.Core.Api.V1Alpha1;

/// <summary>
/// Checks what the CRD schema cannot (references between fields, uniqueness, a batch size nothing is
/// profiled for) and, for manifests read from files where no API server applied the schema, the rest too.
/// Throws a <see cref="PlanningInputException"/> naming the first field at fault.
/// </summary>
public static partial class InferencePipelineValidator
{
    public static readonly IReadOnlySet<string> AccuracyMethods = new HashSet<string> { "sum", "average", "product" };
    public static readonly IReadOnlySet<string> Modes = new HashSet<string> { "single", "mixed" };
    public static readonly IReadOnlySet<string> Forecasters = new HashSet<string> { "last-value", "moving-max", "ewma-trend", "learned" };

    public static readonly IReadOnlySet<string> LatencyModels = new HashSet<string> { "queueing", "batch-fill" };
    public static readonly IReadOnlySet<string> StageTransports = new HashSet<string> { "rest", "grpc" };

    /// <summary>The highest target utilization: plans for half the predicted load.</summary>
    public const double MaxTargetUtilization = 2;

    // Names become parts of Deployment and Service names.
    [GeneratedRegex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
    private static partial Regex DnsLabel();

    /// <summary>A Kubernetes object name (RFC 1123 subdomain), at most 253 characters: pipelines, Secrets, claims.</summary>
    public static bool IsObjectName(string name) => name.Length <= 253 && DnsSubdomain().IsMatch(name);

    [GeneratedRegex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")]
    private static partial Regex DnsSubdomain();

    public static void Validate(InferencePipeline pipeline)
    {
        // Any name the API server takes for a custom resource (a DNS-1123 subdomain); the operator derives valid child names from it.
        if (string.IsNullOrEmpty(pipeline.Metadata.Name)) throw new PlanningInputException("metadata.name", "is required");
        if (!IsObjectName(pipeline.Metadata.Name))
            throw new PlanningInputException("metadata.name", $"'{pipeline.Metadata.Name}' must be lower-case letters, digits, '-' and '.', at most 253 characters");
        var spec = pipeline.Spec;
        Positive(spec.SloMs, "spec.sloMs");
        OneOf(spec.Objective.AccuracyMethod, AccuracyMethods, "spec.objective.accuracyMethod");
        var w = spec.Objective.Weights;
        NonNegative(w.Accuracy, "spec.objective.weights.accuracy");
        NonNegative(w.Cost, "spec.objective.weights.cost");
        NonNegative(w.Batch, "spec.objective.weights.batch");
        NonNegative(w.Loading, "spec.objective.weights.loading");
        if (spec.Budget is { } budget) NonNegative(budget, "spec.budget");
        Positive(spec.Objective.Priority, "spec.objective.priority");
        OneOf(spec.StageTransport, StageTransports, "spec.stageTransport");

        NotEmpty(spec.HardwareClasses, "spec.hardwareClasses");
        Unique(spec.HardwareClasses.Select(c => c.Name), "spec.hardwareClasses", "hardware class");
        for (int c = 0; c < spec.HardwareClasses.Count; c++)
        {
            var hardwareClass = spec.HardwareClasses[c];
            string at = $"spec.hardwareClasses[{c}]";
            Name(hardwareClass.Name, $"{at}.name", 63);
            NonNegative(hardwareClass.CostPerReplica, $"{at}.costPerReplica");
            if (hardwareClass.MaxReplicas is { } max) AtLeast(max, 0, $"{at}.maxReplicas");
            if (hardwareClass.Pool is { } pool && !IsObjectName(pool))
                throw new PlanningInputException($"{at}.pool", $"must name an InferencePool (a lowercase DNS subdomain), got '{pool}'");
            if (hardwareClass.Image is { } image && (image.Length == 0 || image.Any(char.IsWhiteSpace)))
                throw new PlanningInputException($"{at}.image", $"must be an image reference (registry/name:tag), without spaces; got '{image}'");
        }
        // The joint decision plans a pipeline against one pool (JointDecider): with two, it could trade one pool's replicas for the other's.
        if (spec.HardwareClasses.Where(c => c.Pool is not null).Skip(1).FirstOrDefault() is { } second)
            throw new PlanningInputException($"spec.hardwareClasses[{spec.HardwareClasses.IndexOf(second)}].pool",
                $"only one hardware class of a pipeline may name an InferencePool; '{spec.HardwareClasses.First(c => c.Pool is not null).Name}' already names '{spec.HardwareClasses.First(c => c.Pool is not null).Pool}'");
        var classes = spec.HardwareClasses.Select(c => c.Name).ToHashSet();

        NotEmpty(spec.Stages, "spec.stages");
        Unique(spec.Stages.Select(s => s.Name), "spec.stages", "stage");
        for (int s = 0; s < spec.Stages.Count; s++) Stage(spec.Stages[s], $"spec.stages[{s}]", classes);
        for (int c = 0; c < spec.HardwareClasses.Count; c++)
            if (spec.HardwareClasses[c].PinThreads) PinnedClass(spec, c);

        if (spec.ModelStorage is { } storage && !IsObjectName(storage.SecretName))
            throw new PlanningInputException("spec.modelStorage.secretName", $"must name a Secret (a lowercase DNS subdomain), got '{storage.SecretName}'");

        var adaptation = spec.Adaptation;
        AtLeast(adaptation.IntervalSeconds, 1, "spec.adaptation.intervalSeconds");
        OneOf(adaptation.Forecaster, Forecasters, "spec.adaptation.forecaster");
        OneOf(adaptation.LatencyModel, LatencyModels, "spec.adaptation.latencyModel");
        Positive(adaptation.PlannerTimeLimitSeconds, "spec.adaptation.plannerTimeLimitSeconds");
        if (!(adaptation.TargetUtilization >= 0.01 && adaptation.TargetUtilization <= MaxTargetUtilization))
            throw new PlanningInputException("spec.adaptation.targetUtilization", $"must be between 0.01 and {MaxTargetUtilization}, got {adaptation.TargetUtilization}");
        AtLeast(adaptation.Metrics.HistorySeconds, adaptation.IntervalSeconds, "spec.adaptation.metrics.historySeconds");
        AtLeast(adaptation.ScaleDownStabilizationSeconds, 0, "spec.adaptation.scaleDownStabilizationSeconds");
        if (adaptation.ScaleDownStabilizationSeconds > adaptation.Metrics.HistorySeconds)
            throw new PlanningInputException("spec.adaptation.scaleDownStabilizationSeconds",
                $"must be at most spec.adaptation.metrics.historySeconds ({adaptation.Metrics.HistorySeconds}), the history it is read from; got {adaptation.ScaleDownStabilizationSeconds}");
    }

    static void Stage(StageSpec stage, string at, HashSet<string> classes)
    {
        Name(stage.Name, $"{at}.name", 63);
        OneOf(stage.Mode, Modes, $"{at}.mode");
        NotEmpty(stage.BatchSizes, $"{at}.batchSizes");
        for (int b = 0; b < stage.BatchSizes.Count; b++) AtLeast(stage.BatchSizes[b], 1, $"{at}.batchSizes[{b}]");
        Unique(stage.BatchSizes.Select(b => b.ToString()), $"{at}.batchSizes", "batch size");
        AtLeast(stage.MinReplicas, 1, $"{at}.minReplicas");
        AtLeast(stage.MaxReplicas, stage.MinReplicas, $"{at}.maxReplicas");
        if (stage.MaxQueueDelayMs is { } delay) NonNegative(delay, $"{at}.maxQueueDelayMs");

        NotEmpty(stage.Variants, $"{at}.variants");
        Unique(stage.Variants.Select(v => v.Name), $"{at}.variants", "variant");
        for (int v = 0; v < stage.Variants.Count; v++)
        {
            var variant = stage.Variants[v];
            string vat = $"{at}.variants[{v}]";
            Name(variant.Name, $"{vat}.name", 63);
            if (string.IsNullOrWhiteSpace(variant.ModelUri)) throw new PlanningInputException($"{vat}.modelUri", "is required");
            ModelSource.Of(variant, vat);
            if (variant.Accuracy is < 0 or > 1 || double.IsNaN(variant.Accuracy))
                throw new PlanningInputException($"{vat}.accuracy", $"must be a fraction between 0 and 1, got {variant.Accuracy}");
            NotEmpty(variant.Profiles, $"{vat}.profiles");
            Unique(variant.Profiles.Select(p => p.HardwareClass), $"{vat}.profiles", "hardware class");
            for (int p = 0; p < variant.Profiles.Count; p++) Profile(variant.Profiles[p], $"{vat}.profiles[{p}]", classes);
        }
        for (int b = 0; b < stage.BatchSizes.Count; b++)
        {
            int batch = stage.BatchSizes[b];
            if (!stage.Variants.SelectMany(v => v.Profiles).SelectMany(p => p.Batches).Any(x => x.Batch == batch))
                throw new PlanningInputException($"{at}.batchSizes[{b}]", $"batch size {batch} has no profile in any variant of the stage");
        }
    }

    static void Profile(VariantProfileSpec profile, string at, HashSet<string> classes)
    {
        if (!classes.Contains(profile.HardwareClass))
            throw new PlanningInputException($"{at}.hardwareClass",
                $"unknown hardware class '{profile.HardwareClass}'; spec.hardwareClasses has: {string.Join(", ", classes.Order())}");
        NonNegative(profile.LoadTimeSeconds, $"{at}.loadTimeSeconds");
        if (profile.CostPerReplica is { } cost) NonNegative(cost, $"{at}.costPerReplica");
        if (profile.Threads is { } threads) AtLeast(threads, 1, $"{at}.threads");
        NotEmpty(profile.Batches, $"{at}.batches");
        Unique(profile.Batches.Select(b => b.Batch.ToString()), $"{at}.batches", "batch");
        for (int b = 0; b < profile.Batches.Count; b++)
        {
            var point = profile.Batches[b];
            AtLeast(point.Batch, 1, $"{at}.batches[{b}].batch");
            NonNegative(point.LatencyMs, $"{at}.batches[{b}].latencyMs");
            Positive(point.ThroughputRps, $"{at}.batches[{b}].throughputRps");
        }
    }

    /// <summary>
    /// A class whose replicas pin their threads must get CPUs of their own from the kubelet's static CPU
    /// manager: a Guaranteed pod (requests equal to limits, for CPU and memory) with whole CPUs, at least
    /// one per thread of each profile on the class.
    /// </summary>
    static void PinnedClass(InferencePipelineSpec spec, int c)
    {
        var hardwareClass = spec.HardwareClasses[c];
        string classAt = $"spec.hardwareClasses[{c}]";
        var uses = spec.Stages.SelectMany((stage, s) => stage.Variants.SelectMany((variant, v) => variant.Profiles.Select((profile, p) =>
            (Profile: profile, At: $"spec.stages[{s}].variants[{v}].profiles[{p}]")))).Where(u => u.Profile.HardwareClass == hardwareClass.Name);
        foreach (var (profile, at) in uses)
        {
            string resourcesAt = profile.Resources is null ? $"{classAt}.resources" : $"{at}.resources";
            string why = $"{classAt}.pinThreads needs replicas with CPUs of their own, which the static CPU manager gives only to Guaranteed pods with whole CPUs";
            var resources = profile.Resources ?? hardwareClass.Resources;
            string? cpuLimit = resources?.Limits?.GetValueOrDefault("cpu");
            if (Cpus(cpuLimit) is not { } cpus || cpus < 1 || cpus != Math.Floor(cpus))
                throw new PlanningInputException($"{resourcesAt}.limits.cpu", $"must be a whole number of CPUs, got {(cpuLimit is null ? "none" : $"'{cpuLimit}'")}: {why}");
            if (resources!.Requests?.GetValueOrDefault("cpu") is { } cpuRequest && Cpus(cpuRequest) != cpus)
                throw new PlanningInputException($"{resourcesAt}.requests.cpu", $"must equal limits.cpu ({cpuLimit}), got '{cpuRequest}': {why}");
            if (resources.Limits!.GetValueOrDefault("memory") is not { } memoryLimit)
                throw new PlanningInputException($"{resourcesAt}.limits.memory", $"is required: {why}");
            if (resources.Requests?.GetValueOrDefault("memory") is { } memoryRequest && memoryRequest != memoryLimit)
                throw new PlanningInputException($"{resourcesAt}.requests.memory", $"must equal limits.memory ({memoryLimit}), got '{memoryRequest}': {why}");
            if (profile.Threads > cpus)
                throw new PlanningInputException($"{at}.threads", $"{profile.Threads} threads cannot each have one of the replica's {cpus} CPUs ({classAt}.pinThreads)");
        }
    }

    /// <summary>A Kubernetes CPU quantity ("2", "1.5", "500m") in CPUs; null when it is not one.</summary>
    static double? Cpus(string? quantity)
    {
        if (quantity is null) return null;
        var culture = System.Globalization.CultureInfo.InvariantCulture;
        if (quantity.EndsWith('m'))
            return long.TryParse(quantity[..^1], System.Globalization.NumberStyles.None, culture, out long milli) ? milli / 1000.0 : null;
        return double.TryParse(quantity, System.Globalization.NumberStyles.AllowDecimalPoint, culture, out double cpus) ? cpus : null;
    }

    static void Name(string name, string field, int maxLength)
    {
        if (string.IsNullOrEmpty(name)) throw new PlanningInputException(field, "is required");
        if (name.Length > maxLength || !DnsLabel().IsMatch(name))
            throw new PlanningInputException(field, $"'{name}' must be lower-case letters, digits and '-', at most {maxLength} characters");
    }

    static void Positive(double value, string field)
    {
        if (!(value > 0) || !double.IsFinite(value)) throw new PlanningInputException(field, $"must be greater than 0, got {value}");
    }

    static void NonNegative(double value, string field)
    {
        if (!(value >= 0) || !double.IsFinite(value)) throw new PlanningInputException(field, $"must not be negative, got {value}");
    }

    static void AtLeast(int value, int minimum, string field)
    {
        if (value < minimum) throw new PlanningInputException(field, $"must be at least {minimum}, got {value}");
    }

    static void OneOf(string value, IReadOnlySet<string> allowed, string field)
    {
        if (!allowed.Contains(value)) throw new PlanningInputException(field, $"must be one of {string.Join(", ", allowed)}, got '{value}'");
    }

    static void NotEmpty<T>(List<T>? list, string field)
    {
        if (list is not { Count: > 0 }) throw new PlanningInputException(field, "must not be empty");
    }

    static void Unique(IEnumerable<string> names, string field, string what)
    {
        if (names.GroupBy(n => n).FirstOrDefault(g => g.Count() > 1) is { } twice)
            throw new PlanningInputException(field, $"{what} '{twice.Key}' appears more than once");
    }
}
