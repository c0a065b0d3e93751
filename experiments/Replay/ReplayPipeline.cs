using System.Text.Json;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Planning;
using Adaptive.Core.Simulation;
using Adaptive.Experiments.Manifests;

namespace Adaptive.Experiments.Replay;

/// <summary>
/// An InferencePipeline as the replay runs it: turns planned allocations into simulated groups with the
/// manifest's profiles, accuracies, costs and load times, and derives the pipelines the baselines plan with.
/// </summary>
public sealed class ReplayPipeline
{
    /// <summary>The samples shipped with the tool, by the short name <c>--pipeline</c> takes.</summary>
    public static readonly IReadOnlyDictionary<string, string> Samples = new Dictionary<string, string>
    {
        ["resnet"] = "resnet-mixed.yaml",
        ["video"] = "video-pipeline.yaml",
    };

    /// <summary>The model server's default queue per replica.</summary>
    const int QueueCapacityPerReplica = 256;

    public InferencePipeline Spec { get; }

    /// <summary>Seconds from a replica's creation to its model loading: scheduling, image, container start.</summary>
    public double PodStartSeconds { get; }

    /// <summary>
    /// What the router and HTTP add to a request at a stage, ms, by default: an assumption for a cluster, where the router
    /// and the replicas have cores of their own (<c>--hop-ms</c> sets a measured one). On the 2-core development machine,
    /// sharing its cores with the load generator, <c>replay --live</c> measures 1.7–4.2 ms at 4 requests/s and 5–8 ms
    /// under load (README, "Live").
    /// </summary>
    public const double DefaultHopMs = 1.0;

    /// <summary>
    /// Where every replica runs on one machine (<c>replay --live</c>): per variant, its profile measured with 1, 2, …
    /// replicas busy at once (<see cref="SimulatedGroup.ProfilesWhenBusy"/>). Null in a cluster.
    /// </summary>
    public IReadOnlyDictionary<string, IReadOnlyList<IReadOnlyList<ProfilePoint>>>? SharedMachineProfiles { get; init; }

    /// <summary>
    /// Per (variant, batch), how many times longer its batches take in the simulation than its profiles say: the slowdown a
    /// live run measured on its replicas (<c>replay --live</c>), so that the simulation can be run at the service times
    /// they had. The policies still plan with the profiles. Null: every group runs at its profiles.
    /// </summary>
    public IReadOnlyDictionary<(string Variant, int Batch), double>? ServiceSlowdown { get; init; }

    /// <summary>
    /// Where every replica runs on one machine: per number of copies busy (1, 2, …; the last for more), how many times longer
    /// batches take than <see cref="SharedMachineProfiles"/> say, measured at load beside the router, the generator and
    /// Prometheus (<c>replay --live</c>), whose CPU comes out of the replicas' more as more of them are busy. Null: as profiled.
    /// </summary>
    public IReadOnlyList<double>? SlowdownWhenBusy { get; init; }

    public ReplayPipeline(InferencePipeline spec, double podStartSeconds)
    {
        InferencePipelineValidator.Validate(spec);
        Spec = spec;
        PodStartSeconds = podStartSeconds;
    }

    /// <summary>A sample by short name, or a manifest file.</summary>
    public static ReplayPipeline Load(string nameOrPath, double podStartSeconds)
    {
        string path = Samples.TryGetValue(nameOrPath, out var sample) ? Path.Combine(AppContext.BaseDirectory, "Samples", sample) : nameOrPath;
        if (!File.Exists(path))
            throw new PlanningInputException("--pipeline", $"'{nameOrPath}' is neither a sample ({string.Join(", ", Samples.Keys)}) nor an existing manifest file");
        return new ReplayPipeline(ManifestReader.Parse(File.ReadAllText(path)), podStartSeconds);
    }

    public string Name => Spec.Metadata.Name;

    /// <param name="hopMs">What the router and HTTP add to a request at every stage (<see cref="Core.Simulation.SimulationOptions.HopMs"/>).</param>
    public SimulationOptions SimulationOptions(int seed, double hopMs) =>
        new(Spec.Spec.SloMs, StageSpec.DefaultMaxQueueDelayMs, QueueCapacityPerReplica, seed)
        {
            AccuracyMethod = Enum.Parse<AccuracyMethod>(Spec.Spec.Objective.AccuracyMethod, ignoreCase: true),
            HopMs = hopMs,
        };

    /// <summary>The simulated cluster that runs <paramref name="plan"/>: one group per allocation, weighted by its share.</summary>
    public IReadOnlyList<SimulatedStage> Simulate(IReadOnlyList<StagePlan> plan) =>
        [.. Spec.Spec.Stages.Zip(plan).Select(pair => new SimulatedStage(pair.First.Name, [.. pair.Second.Allocations.Select(a =>
        {
            var variant = pair.First.Variants.First(v => v.Name == a.Variant);
            var profile = variant.Profiles.First(p => p.HardwareClass == a.Hardware);
            var hardware = Spec.Spec.HardwareClasses.First(c => c.Name == a.Hardware);
            double slowdown = ServiceSlowdown?.GetValueOrDefault((a.Variant, a.Batch), 1) ?? 1;
            double WhenBusy(int busy) => SlowdownWhenBusy is { Count: > 0 } measured ? measured[Math.Min(busy, measured.Count) - 1] : 1;
            static IReadOnlyList<ProfilePoint> Slowed(IEnumerable<ProfilePoint> points, double factor) =>
                [.. points.Select(p => new ProfilePoint(p.Batch, p.LatencyMs * factor, p.Throughput / factor))];
            return new SimulatedGroup(a.Variant, a.Hardware, a.Replicas, a.Batch,
                Slowed(profile.Batches.Select(b => new ProfilePoint(b.Batch, b.LatencyMs, b.ThroughputRps)), slowdown), a.Share)
            {
                Accuracy = variant.Accuracy,
                CostPerReplica = profile.CostPerReplica ?? hardware.CostPerReplica,
                StartupSeconds = PodStartSeconds + profile.LoadTimeSeconds,
                MaxQueueDelayMs = pair.First.MaxQueueDelayMs,
                ProfilesWhenBusy = SharedMachineProfiles?.GetValueOrDefault(a.Variant) is { } shared
                    ? [.. shared.Select((points, index) => Slowed(points, slowdown * WhenBusy(index + 1)))] : null,
            };
        })]))];

    /// <summary>A deep copy changed by <paramref name="change"/>: the pipeline a baseline plans with.</summary>
    public InferencePipeline Derive(Action<InferencePipelineSpec> change)
    {
        var copy = JsonSerializer.Deserialize<InferencePipeline>(JsonSerializer.Serialize(Spec))!;
        change(copy.Spec);
        InferencePipelineValidator.Validate(copy);
        return copy;
    }

    /// <summary>The variant the fixed-variant baselines run: the median by accuracy.</summary>
    public static VariantSpec FixedVariant(StageSpec stage) => stage.Variants.OrderBy(v => v.Accuracy).ElementAt(stage.Variants.Count / 2);
}
