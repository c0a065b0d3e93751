using Adaptive.Core.Queueing;

namespace Adaptive.Core.Planning;

/// <summary>
/// The one latency model of the planner, its evaluator and its splitter: what an allocation of a stage adds
/// to a request's latency, and the share it can take within a latency budget, by the pipeline's
/// <see cref="LatencyModel"/>.
/// </summary>
public static class AllocationLatency
{
    /// <summary>The latency, ms, of <paramref name="replicas"/> replicas at batch <paramref name="point"/> taking <paramref name="share"/> requests per second.</summary>
    public static double Ms(PipelineProblem pipeline, StageProblem stage, ProfilePoint point, int replicas, double share) => pipeline.LatencyModel switch
    {
        LatencyModel.BatchFill => point.LatencyMs + BatchFillMs(point.Batch, share),
        LatencyModel.Queueing => BatchingStage.P99Ms(share, replicas, point.Batch, ServiceTime.Of(point), stage.MaxQueueDelayMs),
        _ => throw new ArgumentOutOfRangeException(nameof(pipeline), pipeline.LatencyModel, "unknown latency model"),
    };

    /// <summary>
    /// The most requests per second <paramref name="replicas"/> replicas take within <paramref name="budgetMs"/>.
    /// In the batch-fill model that is their throughput (the fill time is a lower bound on the share instead, <see cref="LeastShare"/>).
    /// </summary>
    public static double CapacityRps(PipelineProblem pipeline, StageProblem stage, ProfilePoint point, int replicas, double budgetMs) => pipeline.LatencyModel switch
    {
        LatencyModel.BatchFill => replicas * point.Throughput,
        LatencyModel.Queueing => BatchingStage.CapacityRps(replicas, point.Batch, ServiceTime.Of(point), stage.MaxQueueDelayMs, budgetMs),
        _ => throw new ArgumentOutOfRangeException(nameof(pipeline), pipeline.LatencyModel, "unknown latency model"),
    };

    /// <summary>
    /// The least share that fills batches within the budget: in the batch-fill model, (b − 1) / (budget − latency);
    /// 0 with queueing, where a partial batch leaves after the max queue delay. Infinite when the budget is below the batch's latency.
    /// </summary>
    public static double LeastShare(PipelineProblem pipeline, ProfilePoint point, double budgetMs)
    {
        if (pipeline.LatencyModel == LatencyModel.Queueing || point.Batch == 1) return 0;
        return budgetMs > point.LatencyMs ? BatchFillMs(point.Batch, 1) / (budgetMs - point.LatencyMs) : double.PositiveInfinity;
    }

    /// <summary>The fewest replicas that take <paramref name="share"/> within <paramref name="budgetMs"/>; null when even <paramref name="maxReplicas"/> cannot.</summary>
    public static int? ReplicasFor(PipelineProblem pipeline, StageProblem stage, ProfilePoint point, double share, double budgetMs, int maxReplicas)
    {
        if (pipeline.LatencyModel == LatencyModel.BatchFill)
        {
            int needed = Math.Max(1, FixedPoint.ReplicasFor(share, point.Throughput));
            return needed <= maxReplicas ? needed : null;
        }
        for (int n = Math.Max(1, (int)(share / point.Throughput)); n <= maxReplicas; n++)
            if (CapacityRps(pipeline, stage, point, n, budgetMs) >= share) return n;
        return null;
    }

    /// <summary>Time to fill a batch of <paramref name="batch"/> requests arriving at <paramref name="rate"/> per second.</summary>
    public static double BatchFillMs(int batch, double rate) => 1000.0 * (batch - 1) / rate;
}
