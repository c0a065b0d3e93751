using Adaptive.Core.Simulation;
using Adaptive.Experiments.Bench;
using Adaptive.Experiments.Replay.Policies;

namespace Adaptive.Experiments.Replay.SharedPool;

/// <summary>One pipeline of a shared-pool replay, on its own window of the trace.</summary>
public sealed record PoolMemberReplay(ReplayPipeline Pipeline, ReplayWorkload Replay);

/// <param name="Members">Each member's run, in the members' order.</param>
public sealed record PoolRun(string Policy, IReadOnlyList<PolicyRun> Members);

/// <param name="ViolationRate">Late, rejected and expired requests over all that arrived, all members together.</param>
/// <param name="Accuracy">Mean accuracy of the requests served, all members together.</param>
/// <param name="Cost">Replica-seconds weighted by each class's cost per replica, summed over members.</param>
/// <param name="PoolHeld">The share of the pool's replica-seconds its members held (starting and draining replicas included).</param>
/// <param name="OverCommittedSeconds">Seconds in which the members held more of the pool than it has (a handover's new replicas start before the old ones drain).</param>
/// <param name="MemberViolationRates">Each member's violations.</param>
public sealed record PoolSummary(string Policy, int Requests, double ViolationRate, double P99Ms, double Accuracy, double Cost, double PoolHeld,
    int OverCommittedSeconds, IReadOnlyList<double> MemberViolationRates);

/// <summary>
/// Replays several pipelines, each on its own workload, through their own simulated clusters in lockstep, so that one policy
/// decides for all of them at the same moments from what each has seen: the replay of pipelines that share a GPU pool.
/// </summary>
public static class PoolReplay
{
    /// <param name="scrapes">When Prometheus scrapes each member's router, the phase counted from the window's start; <see cref="ScrapeSchedule.Default"/> when not given.</param>
    public static PoolRun Run(IReadOnlyList<PoolMemberReplay> members, IPoolPolicy policy, IReadOnlyList<SimulationOptions> options, ScrapeSchedule? scrapes = null)
    {
        if (members.Select(m => m.Replay.Workload.Seconds).Distinct().Count() != 1)
            throw new ArgumentException("the members' windows must be equally long: their decisions come at the same moments", nameof(members));
        var tracks = members.Select(m => new ReplayTrack(m.Pipeline, m.Replay.PriorArrivals, scrapes ?? ScrapeSchedule.Default)).ToArray();
        var first = policy.Decide([.. tracks.Select(t => t.FirstContext())]);
        for (int i = 0; i < tracks.Length; i++) tracks[i].Start(first[i], policy.Name);

        // Each member's simulator runs on a thread of its own and stops at every decision until all have: the last to arrive decides for all.
        var contexts = new PolicyContext[tracks.Length];
        IReadOnlyList<PolicyDecision?> decisions = [];
        using var barrier = new Barrier(tracks.Length, _ => decisions = policy.Decide(contexts));
        var runs = members.Select((member, i) => Task.Factory.StartNew(() =>
        {
            try
            {
                return ClusterSimulator.Run(member.Pipeline.Simulate(tracks[i].Running), member.Replay.Workload, options[i], (now, observed) =>
                {
                    contexts[i] = tracks[i].Observe(now, observed);
                    barrier.SignalAndWait();
                    return tracks[i].Apply((int)now, decisions[i]);
                }, policy.IntervalSeconds);
            }
            finally
            {
                barrier.RemoveParticipant();
            }
        }, TaskCreationOptions.LongRunning)).ToArray();
        Task.WaitAll(runs);
        return new PoolRun(policy.Name, [.. runs.Select((r, i) => new PolicyRun(policy.Name, r.Result, tracks[i].Decisions))]);
    }

    /// <summary>The run over all members; <paramref name="poolClass"/>'s replicas are held of a pool of <paramref name="capacity"/>.</summary>
    public static PoolSummary Summarize(PoolRun run, string poolClass, int capacity)
    {
        var results = run.Members.Select(m => m.Result).ToList();
        var latencies = results.SelectMany(r => r.LatenciesMs).Order().ToList();
        var served = results.SelectMany(r => r.Requests.Where(q => q.Served)).ToList();
        int seconds = results.Min(r => r.Seconds.Count);
        var held = Enumerable.Range(0, seconds).Select(s => results.Sum(r => r.Seconds[s].Replicas.Where(k => k.Key.Contains($"@{poolClass}/", StringComparison.Ordinal)).Sum(k => k.Value))).ToList();
        int arrived = results.Sum(r => r.Arrived);
        return new PoolSummary(run.Policy, arrived, arrived == 0 ? 0 : results.Sum(r => r.ViolationRate * r.Arrived) / arrived, Percentiles.Of(latencies, 0.99),
            served.Count == 0 ? 0 : served.Average(q => q.Accuracy), results.Sum(r => r.Cost), capacity == 0 || seconds == 0 ? 0 : held.Sum() / ((double)capacity * seconds),
            held.Count(h => h > capacity), [.. results.Select(r => r.ViolationRate)]);
    }
}
