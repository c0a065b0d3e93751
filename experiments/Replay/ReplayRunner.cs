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

public sealed record PolicyRun(string Policy, SimulationResult Result, IReadOnlyList<DecisionRecord> Decisions)
{
    /// <summary>The settings a search tuned for this run (<see cref="IsoCost"/>), for the report; null if none.</summary>
    public string? Tuning { get; init; }
}

/// <summary>Replays a workload through the simulated cluster with one policy deciding every interval.</summary>
public static class ReplayRunner
{
    /// <param name="priorArrivals">Requests per second before the window: the history the first decisions forecast from.</param>
    /// <param name="onDecision">Called after each decision, for progress.</param>
    /// <param name="scrapes">When Prometheus scrapes the router, the phase counted from the window's start (<see cref="CountedLoadHistory"/>); <see cref="ScrapeSchedule.Default"/> when not given.</param>
    public static PolicyRun Run(ReplayPipeline pipeline, IReplayPolicy policy, Workload workload, IReadOnlyList<double> priorArrivals,
        SimulationOptions options, Action? onDecision = null, ScrapeSchedule? scrapes = null)
    {
        var track = new ReplayTrack(pipeline, priorArrivals, scrapes ?? ScrapeSchedule.Default);
        track.Start(policy.Decide(track.FirstContext()), policy.Name);
        onDecision?.Invoke();
        var result = ClusterSimulator.Run(pipeline.Simulate(track.Running), workload, options, (now, observed) =>
        {
            var decision = policy.Decide(track.Observe(now, observed));
            onDecision?.Invoke();
            return track.Apply((int)now, decision);
        }, policy.IntervalSeconds);
        return new PolicyRun(policy.Name, result, track.Decisions);
    }

    /// <summary>How many times a policy is asked over <paramref name="seconds"/>, the first included.</summary>
    public static int DecisionCount(IReplayPolicy policy, int seconds) => 1 + (seconds - 1) / policy.IntervalSeconds;

    public static string Describe(IReadOnlyList<StagePlan> plan) =>
        string.Join(" ", plan.Select(s => $"{s.Name}={string.Join("+", s.Allocations.Select(a => $"{a.Variant}@{a.Hardware}×{a.Replicas}/b{a.Batch}"))}"));
}

/// <summary>
/// One pipeline's side of a replay: the history its policy sees (the requests per second before the window, then what the
/// simulator counted, known up to the last scrape), what it runs, and the decisions so far.
/// </summary>
public sealed class ReplayTrack
{
    readonly ReplayPipeline pipeline;
    readonly int priorSeconds;
    readonly ScrapeSchedule scrapes; // the phase counted from the history's first second
    readonly List<double> arrivals;
    readonly List<int> answered;
    readonly List<int> missed;
    readonly List<DecisionRecord> decisions = [];

    /// <param name="scrapes">When Prometheus scrapes the router, the phase counted from the window's start.</param>
    public ReplayTrack(ReplayPipeline pipeline, IReadOnlyList<double> priorArrivals, ScrapeSchedule scrapes)
    {
        if (priorArrivals.Count == 0) throw new ArgumentException("the replay needs some history before the window to forecast from", nameof(priorArrivals));
        this.pipeline = pipeline;
        priorSeconds = priorArrivals.Count;
        arrivals = [.. priorArrivals];
        answered = [.. new int[priorSeconds]];
        missed = [.. new int[priorSeconds]];
        this.scrapes = scrapes with { PhaseSeconds = (priorSeconds + scrapes.PhaseSeconds) % scrapes.IntervalSeconds };
    }

    /// <summary>What runs now; set by the first decision.</summary>
    public IReadOnlyList<StagePlan> Running { get; private set; } = [];

    public IReadOnlyList<DecisionRecord> Decisions => decisions;

    /// <summary>The context of the first decision: the history before the window, nothing running.</summary>
    public PolicyContext FirstContext() => new(0, new CountedLoadHistory(arrivals, scrapes), null);

    /// <summary>Records the first decision, which must choose a configuration.</summary>
    public void Start(PolicyDecision? first, string policy)
    {
        Running = first?.Plan ?? throw new InvalidOperationException($"policy {policy} chose no initial configuration");
        decisions.Add(new DecisionRecord(0, first.PredictedRps, first.SolveMs, false, Running));
    }

    /// <summary>The context of a decision at <paramref name="now"/>, from what the simulator has counted so far (a second's counts grow until it has passed).</summary>
    public PolicyContext Observe(double now, SimulationObservations observed)
    {
        for (int s = arrivals.Count - priorSeconds; s < observed.Arrivals.Count; s++) arrivals.Add(observed.Arrivals[s]);
        answered.RemoveRange(priorSeconds, answered.Count - priorSeconds);
        answered.AddRange(observed.Answered);
        missed.RemoveRange(priorSeconds, missed.Count - priorSeconds);
        missed.AddRange(observed.Missed);
        return new PolicyContext((int)now, new CountedLoadHistory(arrivals, scrapes, answered, missed), Running);
    }

    /// <summary>Records a decision and returns the change for the simulator; null when there is none.</summary>
    public Reconfiguration? Apply(int now, PolicyDecision? decision)
    {
        if (decision is null) return null;
        if (decision.Plan is not { } plan)
        {
            decisions.Add(new DecisionRecord(now, decision.PredictedRps, decision.SolveMs, false, Running));
            return null;
        }
        bool reconfigured = ReplayRunner.Describe(plan) != ReplayRunner.Describe(Running);
        decisions.Add(new DecisionRecord(now, decision.PredictedRps, decision.SolveMs, reconfigured, plan));
        Running = plan;
        return new Reconfiguration(pipeline.Simulate(plan), decision.Recreate);
    }
}
