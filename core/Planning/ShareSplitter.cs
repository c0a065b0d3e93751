namespace Adaptive.Core.Planning;

/// <summary>
/// Splits a mixed stage's load among the allocations CP-SAT chose, in real numbers rather than the model's
/// share units. With the choices fixed, the best split is greedy: every allocation first gets the least
/// share that fills its batches within the stage's latency budget, then the rest of the load goes to the
/// most accurate allocations first, each up to what its replicas take within the budget
/// (<see cref="AllocationLatency"/>: their throughput with batch fill, less with queueing). Replicas the
/// split leaves idle are removed.
/// </summary>
static class ShareSplitter
{
    public sealed record Candidate(VariantProblem Variant, string Hardware, ProfilePoint Point, int Replicas, double SolverShare);

    // Shares at their lower bound meet the latency budget exactly; a hair more keeps rounding on the safe side.
    const double SafetyFactor = 1 + 1e-12;

    public static List<Allocation> Split(PipelineProblem pipeline, StageProblem stage, double latencyBudgetMs, IReadOnlyList<Candidate> chosen)
    {
        double load = pipeline.ArrivalRate;
        int minReplicas = stage.MinReplicas;
        var least = chosen.Select(c => SafetyFactor * AllocationLatency.LeastShare(pipeline, c.Point, latencyBudgetMs)).ToList();
        var most = chosen.Select(c => AllocationLatency.CapacityRps(pipeline, stage, c.Point, c.Replicas, latencyBudgetMs)).ToList();
        bool splittable = least.All(l => l >= 0 && double.IsFinite(l)) && least.Sum() <= load && most.Sum() >= load;
        var shares = splittable ? Greedy(load, chosen, least, most) : Rescaled(load, chosen);

        var kept = chosen.Select((c, i) => (Candidate: c, Share: shares[i])).Where(x => x.Share > 0).ToList();
        int total = kept.Sum(x => x.Candidate.Replicas);
        var allocations = new List<Allocation>();
        foreach (var (c, share) in kept)
        {
            int idle = c.Replicas - (AllocationLatency.ReplicasFor(pipeline, stage, c.Point, share, latencyBudgetMs, c.Replicas) ?? c.Replicas);
            int removed = Math.Clamp(Math.Min(idle, total - minReplicas), 0, c.Replicas - 1);
            total -= removed;
            allocations.Add(new Allocation(c.Variant.Name, c.Hardware, c.Replicas - removed, c.Point.Batch, share));
        }
        // Dropping an allocation the split left without load may take the stage below its minimum.
        if (total < minReplicas) allocations[0] = allocations[0] with { Replicas = allocations[0].Replicas + minReplicas - total };
        return allocations;
    }

    static double[] Greedy(double load, IReadOnlyList<Candidate> chosen, List<double> least, List<double> most)
    {
        var shares = least.ToArray();
        double remaining = load - least.Sum();
        foreach (int i in Enumerable.Range(0, chosen.Count).OrderByDescending(i => chosen[i].Variant.Accuracy))
        {
            double more = Math.Min(most[i] - shares[i], remaining);
            shares[i] += more;
            remaining -= more;
        }
        return shares;
    }

    /// <summary>
    /// The model's own shares, rescaled to the exact load: for the rare split that the model's rounding to
    /// share units made feasible but that real numbers put a hair outside the bounds.
    /// </summary>
    static double[] Rescaled(double load, IReadOnlyList<Candidate> chosen)
    {
        double total = chosen.Sum(c => c.SolverShare);
        return chosen.Select(c => load * c.SolverShare / total).ToArray();
    }
}
