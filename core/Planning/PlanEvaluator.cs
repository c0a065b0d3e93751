namespace Adaptive.Core.Planning;

/// <summary>What a configuration is expected to deliver, by the planning semantics of docs/planning-format.md.</summary>
public sealed record PlanMetrics(
    IReadOnlyList<double> StageLatencyMs,
    double LatencyMs,
    double Accuracy,
    double Cost,
    int BatchTerm,
    double LoadingTerm,
    double Objective);

/// <summary>
/// Computes the metrics of a pipeline's configuration. The planner reports its objective with it and the
/// operator its expected accuracy, cost and latency, so both speak of the same numbers.
/// </summary>
public static class PlanEvaluator
{
    public static PlanMetrics Evaluate(PipelineProblem pipeline, IReadOnlyList<StagePlan> stages)
    {
        var stageLatencies = new List<double>();
        var stageAccuracies = new List<double>();
        double cost = 0;
        int batchTerm = 0;
        foreach (var (stage, plan) in pipeline.Stages.Zip(stages))
        {
            double latency = 0, accuracy = 0;
            int maxBatch = 0;
            foreach (var a in plan.Allocations)
            {
                var variant = stage.Variants.First(v => v.Name == a.Variant);
                var hardware = variant.Hardware.First(h => h.Class == a.Hardware);
                var point = PointOf(stage, a);
                latency = Math.Max(latency, AllocationLatency.Ms(pipeline, stage, point, a.Replicas, a.Share));
                accuracy += a.Share / pipeline.ArrivalRate * variant.Accuracy;
                cost += a.Replicas * hardware.CostPerReplica;
                maxBatch = Math.Max(maxBatch, a.Batch);
            }
            stageLatencies.Add(latency);
            stageAccuracies.Add(accuracy);
            batchTerm += maxBatch;
        }
        double pipelineAccuracy = pipeline.AccuracyMethod switch
        {
            AccuracyMethod.Sum => stageAccuracies.Sum(),
            AccuracyMethod.Average => stageAccuracies.Average(),
            AccuracyMethod.Product => stageAccuracies.Aggregate(1.0, (p, a) => p * a),
            _ => throw new ArgumentOutOfRangeException(nameof(pipeline)),
        };
        double loading = LoadingTerm(pipeline, stages);
        var w = pipeline.Weights;
        double objective = w.Accuracy * pipelineAccuracy - w.Cost * cost - w.Batch * batchTerm - w.Loading * loading;
        return new PlanMetrics(stageLatencies, stageLatencies.Sum(), pipelineAccuracy, cost, batchTerm, loading, objective);
    }

    /// <summary>
    /// The highest arrival rate a running configuration takes within the SLO, its shares scaled alike: the
    /// plan's own rate when it does not meet the SLO even there (a fallback), else found by bisection upward
    /// from it (more load only lengthens the queues; in the batch-fill model, up to the replicas' throughput).
    /// </summary>
    public static double SustainableRps(PipelineProblem pipeline, IReadOnlyList<StagePlan> stages)
    {
        double planned = stages.Count == 0 ? 0 : stages[0].Allocations.Sum(a => a.Share);
        if (!(planned > 0)) return 0;
        bool Meets(double rate)
        {
            double scale = rate / planned;
            var scaled = new List<StagePlan>();
            foreach (var (stage, plan) in pipeline.Stages.Zip(stages))
            {
                var allocations = plan.Allocations.Select(a => a with { Share = a.Share * scale }).ToList();
                if (allocations.Any(a => a.Share >= a.Replicas * PointOf(stage, a).Throughput)) return false;
                scaled.Add(plan with { Allocations = allocations });
            }
            return Evaluate(pipeline, scaled).LatencyMs <= pipeline.SloMs;
        }
        if (!Meets(planned)) return planned;
        double low = planned, high = 2 * planned;
        while (Meets(high) && high < 1e9) (low, high) = (high, 2 * high);
        for (int i = 0; i < 40 && high - low > 1e-6 * high; i++)
        {
            double middle = (low + high) / 2;
            if (Meets(middle)) low = middle;
            else high = middle;
        }
        return low;
    }

    static ProfilePoint PointOf(StageProblem stage, Allocation a) =>
        stage.Variants.First(v => v.Name == a.Variant).Hardware.First(h => h.Class == a.Hardware).At(a.Batch)
        ?? throw new ArgumentException($"stage '{stage.Name}': {a.Variant} on {a.Hardware} has no profile at batch {a.Batch}");

    /// <summary>
    /// The largest load time among the (stage, variant, hardware) that load their model (replicas grow against
    /// the running configuration, or its batch size changes), relative to the largest load time in the
    /// pipeline; 0 without a running configuration.
    /// </summary>
    static double LoadingTerm(PipelineProblem pipeline, IReadOnlyList<StagePlan> stages)
    {
        if (pipeline.Current.Count == 0 || pipeline.MaxLoadTimeS <= 0) return 0;
        double largest = 0;
        foreach (var (stage, plan) in pipeline.Stages.Zip(stages))
        {
            foreach (var a in plan.Allocations)
            {
                if (!pipeline.LoadsModel(stage.Name, a.Variant, a.Hardware, a.Batch, a.Replicas)) continue;
                var hardware = stage.Variants.First(v => v.Name == a.Variant).Hardware.First(h => h.Class == a.Hardware);
                largest = Math.Max(largest, hardware.LoadTimeS);
            }
        }
        return largest / pipeline.MaxLoadTimeS;
    }
}
