namespace Adaptive.Core.Planning;

/// <summary>
/// One adaptation decision, frozen: one or more pipelines that plan together because they share
/// hardware limits. This is the planner's input language; the exchange format (docs/planning-format.md) and the
/// InferencePipeline resource are both translated into it.
/// </summary>
public sealed record PlanningProblem(
    string Name,
    IReadOnlyList<PipelineProblem> Pipelines,
    IReadOnlyDictionary<string, int> SharedHardwareLimits)
{
    public static PlanningProblem Single(PipelineProblem pipeline) =>
        new(pipeline.Name, [pipeline], new Dictionary<string, int>());
}

public sealed record PipelineProblem(
    string Name,
    double SloMs,
    double ArrivalRate,
    AccuracyMethod AccuracyMethod,
    ObjectiveWeights Weights,
    double? Budget,
    IReadOnlyDictionary<string, int> HardwareLimits,
    IReadOnlyList<StageProblem> Stages,
    IReadOnlyList<RunningAllocation> Current)
{
    /// <summary>How a stage's latency is modelled: the papers' batch latency plus fill time, or with queueing.</summary>
    public LatencyModel LatencyModel { get; init; } = LatencyModel.BatchFill;

    /// <summary>The largest model load time in the pipeline: the loading term's unit.</summary>
    public double MaxLoadTimeS => Stages.SelectMany(s => s.Variants).SelectMany(v => v.Hardware)
        .Select(h => h.LoadTimeS).DefaultIfEmpty(0).Max();

    /// <summary>Replicas of (stage, variant, hardware) running now, all batch sizes together.</summary>
    public int RunningReplicas(string stage, string variant, string hardware) =>
        Current.Where(c => c.Stage == stage && c.Variant == variant && c.Hardware == hardware).Sum(c => c.Replicas);

    /// <summary>
    /// Whether running <paramref name="replicas"/> of (stage, variant, hardware) at <paramref name="batch"/> loads
    /// the model anew: more replicas than run now, or running ones at another batch size (a server's batch size
    /// is part of its pod, so a change replaces every replica).
    /// </summary>
    public bool LoadsModel(string stage, string variant, string hardware, int batch, int replicas) =>
        replicas > RunningReplicas(stage, variant, hardware) || replicas > 0 && RunsAtOtherBatch(stage, variant, hardware, batch);

    /// <summary>Whether replicas of (stage, variant, hardware) run now at a batch size other than <paramref name="batch"/>.</summary>
    public bool RunsAtOtherBatch(string stage, string variant, string hardware, int batch) =>
        Current.Any(c => c.Stage == stage && c.Variant == variant && c.Hardware == hardware && c.Replicas > 0 && c.Batch != batch);
}

public enum AccuracyMethod { Sum, Average, Product }

/// <summary>How the latency of a stage's allocation is modelled (docs/planning-format.md, <c>latencyModel</c>).</summary>
public enum LatencyModel
{
    /// <summary>
    /// The papers' model (InfAdapter, IPA): the batch's profiled latency plus the time to fill it at the
    /// allocation's share, with replicas that sustain the share at their profiled throughput. No queueing.
    /// </summary>
    BatchFill,

    /// <summary>
    /// The p99 time in a stage of n replicas that batch, with queueing (<see cref="Queueing.BatchingStage"/>):
    /// replicas are sized so that the p99, not the mean, stays within the SLO.
    /// </summary>
    Queueing,
}

public enum StageMode
{
    /// <summary>One active variant per stage (IPA).</summary>
    Single,
    /// <summary>A set of variants serving the stage at once, the load split between them (InfAdapter).</summary>
    Mixed,
}

/// <summary>α, β, γ, δ of the objective α·accuracy − β·cost − γ·batch − δ·loading.</summary>
public sealed record ObjectiveWeights(double Accuracy, double Cost, double Batch, double Loading);

public sealed record StageProblem(
    string Name,
    StageMode Mode,
    int MinReplicas,
    int MaxReplicas,
    IReadOnlyList<int> BatchSizes,
    IReadOnlyList<VariantProblem> Variants)
{
    /// <summary>The longest a request waits for its batch to fill before a partial one runs (the queueing model's batch formation).</summary>
    public double MaxQueueDelayMs { get; init; }
}

public sealed record VariantProblem(string Name, double Accuracy, IReadOnlyList<HardwareProfile> Hardware);

/// <summary>How one variant performs on one hardware class.</summary>
public sealed record HardwareProfile(
    string Class,
    double CostPerReplica,
    double LoadTimeS,
    IReadOnlyList<ProfilePoint> Profile)
{
    public ProfilePoint? At(int batch) => Profile.FirstOrDefault(p => p.Batch == batch);
}

/// <summary>
/// <paramref name="LatencyMs"/>: time one replica takes to process one batch of this size;
/// <paramref name="Throughput"/>: requests per second one replica sustains at this batch size.
/// </summary>
public sealed record ProfilePoint(int Batch, double LatencyMs, double Throughput);

/// <summary>What runs now, for the loading term.</summary>
public sealed record RunningAllocation(string Stage, string Variant, string Hardware, int Replicas, int Batch);
