using Adaptive.Core.Forecasting;
using Adaptive.Core.Planning;
using Adaptive.Core.Simulation;
using Adaptive.Core.Workloads;
using Adaptive.Experiments.Replay.Policies;

namespace Adaptive.Experiments.Replay;

/// <param name="Second">Seconds into the window.</param>
/// <param name="Reconfigured">Whether the replicas, variants or batch sizes changed (a new split alone does not count).</param>
/// <param name="Running">What runs after the decision.</param>
public sealed record DecisionRecord(int Second, double PredictedRps, double SolveMs, bool Reconfigured, IReadOnlyList<StagePlan> Running)
{
    /// <summary>E.g. <c>classify=resnet50@cpu×3/b4</c>.</summary>
    public string Configuration => ReplayRunner.Describe(Running);
}

public sealed record PolicyRun(string Policy, SimulationResult Result, IReadOnlyList<DecisionRecord> Decisions);

/// <summary>Replays a workload through the simulated cluster with one policy deciding every interval.</summary>
public static class ReplayRunner
{
    /// <param name="priorArrivals">Requests per second before the window: the history the first decisions forecast from.</param>
    /// <param name="onDecision">Called after each decision, for progress.</param>
    /// <param name="scrapePhaseSeconds">When, in each scrape interval from the window's start, Prometheus scrapes (<see cref="CountedLoadHistory"/>).</param>
    public static PolicyRun Run(ReplayPipeline pipeline, IReplayPolicy policy, Workload workload, IReadOnlyList<double> priorArrivals,
        SimulationOptions options, Action? onDecision = null, int scrapePhaseSeconds = CountedLoadHistory.DefaultScrapePhase)
    {
        if (priorArrivals.Count == 0) throw new ArgumentException("the replay needs some history before the window to forecast from", nameof(priorArrivals));
        var arrivals = new List<double>(priorArrivals);
        int phase = (priorArrivals.Count + scrapePhaseSeconds) % ArrivalHistory.OperatorScrapeSeconds; // from the history's first second
        var decisions = new List<DecisionRecord>();
        var first = policy.Decide(new PolicyContext(0, new CountedLoadHistory(arrivals, phase), null));
        var running = first?.Plan ?? throw new InvalidOperationException($"policy {policy.Name} chose no initial configuration");
        decisions.Add(new DecisionRecord(0, first!.PredictedRps, first.SolveMs, false, running));
        onDecision?.Invoke();

        var answered = new List<int>(new int[priorArrivals.Count]);
        var missed = new List<int>(new int[priorArrivals.Count]);
        var result = ClusterSimulator.Run(pipeline.Simulate(running), workload, options, (now, observed) =>
        {
            for (int s = arrivals.Count - priorArrivals.Count; s < observed.Arrivals.Count; s++) arrivals.Add(observed.Arrivals[s]);
            answered.RemoveRange(priorArrivals.Count, answered.Count - priorArrivals.Count);
            answered.AddRange(observed.Answered); // a second's count grows until it has passed
            missed.RemoveRange(priorArrivals.Count, missed.Count - priorArrivals.Count);
            missed.AddRange(observed.Missed);
            var decision = policy.Decide(new PolicyContext((int)now, new CountedLoadHistory(arrivals, phase, answered, missed), running));
            onDecision?.Invoke();
            if (decision is null) return null;
            if (decision.Plan is not { } plan)
            {
                decisions.Add(new DecisionRecord((int)now, decision.PredictedRps, decision.SolveMs, false, running));
                return null;
            }
            bool reconfigured = Describe(plan) != Describe(running);
            decisions.Add(new DecisionRecord((int)now, decision.PredictedRps, decision.SolveMs, reconfigured, plan));
            running = plan;
            return new Reconfiguration(pipeline.Simulate(plan), decision.Recreate);
        }, policy.IntervalSeconds);
        return new PolicyRun(policy.Name, result, decisions);
    }

    /// <summary>How many times a policy is asked over <paramref name="seconds"/>, the first included.</summary>
    public static int DecisionCount(IReplayPolicy policy, int seconds) => 1 + (seconds - 1) / policy.IntervalSeconds;

    public static string Describe(IReadOnlyList<StagePlan> plan) =>
        string.Join(" ", plan.Select(s => $"{s.Name}={string.Join("+", s.Allocations.Select(a => $"{a.Variant}@{a.Hardware}×{a.Replicas}/b{a.Batch}"))}"));
}
