namespace Adaptive.Core.Routing;

/// <summary>
/// How long each stage of a pipeline may take with a request, so that the request can still meet its SLO:
/// what is left of the SLO less what the later stages have been taking (a moving average of the stage calls
/// that were answered). The router sends it to the stage's model server, whose batcher then refuses at once a
/// request it could not serve in that time (and drops one whose time runs out in its queue), instead of
/// serving it, late, with capacity that on-time requests need. Without it each model server would count the
/// whole SLO from its own arrival, and under overload the later stages of a pipeline would serve nearly
/// everything late (on the video sample's surge, 73 % of requests instead of 35 %). The router and the
/// simulator share it.
/// </summary>
public sealed class StageDeadlines(int stages)
{
    /// <summary>The request header, in milliseconds, by which the router tells a model server the time it has for a request.</summary>
    public const string TimeoutHeader = "Adaptive-Timeout-Ms";

    /// <summary>The weight of the newest call in a stage's moving average.</summary>
    public const double Smoothing = 0.1;

    readonly double[] takesMs = new double[stages]; // 0 until the stage has answered a call
    readonly Lock gate = new();

    /// <summary>A call of <paramref name="stage"/> answered after <paramref name="ms"/>, hop included.</summary>
    public void Answered(int stage, double ms)
    {
        lock (gate) takesMs[stage] = takesMs[stage] == 0 ? ms : takesMs[stage] + Smoothing * (ms - takesMs[stage]);
    }

    /// <summary>
    /// The time <paramref name="stage"/> may take, in ms, for a request that has <paramref name="leftMs"/> of its SLO; 0 when none is
    /// left. It never holds back more than half of what is left for the later stages: one that was slow once (a cold start, an
    /// overload) must not starve the stages before it, or no request would reach it again and its average would never learn.
    /// </summary>
    public double TimeForMs(int stage, double leftMs)
    {
        double later = 0;
        lock (gate)
            for (int s = stage + 1; s < takesMs.Length; s++) later += takesMs[s];
        return Math.Max(0, leftMs - Math.Min(later, leftMs / 2));
    }
}
