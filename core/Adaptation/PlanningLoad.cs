namespace Adaptive.Core.Adaptation;

/// <summary>
/// The load a decision plans for, from what Prometheus shows: the forecast peak of the next interval, never
/// below the highest load of the last <c>scaleDownStabilizationSeconds</c> (so capacity leaves only once a
/// lower load has lasted that long, as Kubernetes' HPA stabilizes its scale-downs), and at a surge
/// <see cref="SurgeHeadroom"/> times the latest rate. The operator and the replay share it.
/// </summary>
/// <param name="ForecastRps">The forecaster's peak for the next interval.</param>
/// <param name="RecentPeakRps">The highest load in the stabilization window (<see cref="RecentPeak"/>).</param>
/// <param name="SurgeRps">The latest rate when a surge called this decision, else null.</param>
/// <param name="LatestRps">The latest rate, as the surge rule reads it (over the last scrape interval).</param>
public sealed record PlanningLoad(double ForecastRps, double RecentPeakRps, double? SurgeRps = null, double LatestRps = 0)
{
    /// <summary>
    /// A surge decision plans for this multiple of the latest rate: a rise seen at one scrape goes on while the
    /// new replicas start (the check, pod start and model load take 10–30 s). On the Twitter windows in the
    /// README, 1.5 took a third off the violations left in surges for 2–3 % more cost.
    /// </summary>
    public const double SurgeHeadroom = 1.5;

    /// <summary>
    /// What the plan is made for. Never less than the latest rate over the surge rule's <see cref="SurgeRule.Threshold"/>: a
    /// plan the surge rule would call short at once is not made. Live, without it, a scheduled decision planned for the
    /// stabilization window's 80 rps took back the replica a surge decision had added, the next check 5 s later found 85 rps
    /// at 0.9 of what was left and added it again, and so on every 30 s (docs/benchmarks/replay/live/HISTORY.md, the third run).
    /// </summary>
    public double Rps => Math.Max(Math.Max(Math.Max(ForecastRps, RecentPeakRps), SurgeHeadroom * (SurgeRps ?? 0)), LatestRps / SurgeRule.Threshold);

    /// <summary>
    /// What the stabilization window holds after this plan adds capacity: a surge's rate, without its headroom (holding the
    /// headroom for the whole window cost 6 % more on the Twitter windows), else the load planned for. The headroom itself is
    /// held for <see cref="HeadroomHeldSeconds"/>.
    /// </summary>
    public double HeldAfterScaleUpRps => SurgeRps ?? Rps;

    /// <summary>The stabilization window holds the plan above the forecast: the load has fallen, and capacity waits.</summary>
    public bool Stabilizing => RecentPeakRps > ForecastRps && SurgeRps is null;

    /// <summary>
    /// How long the load a scale-up planned for, a surge's headroom included, is held: two decision intervals, within the
    /// stabilization window. The next scheduled decision may come seconds after a surge decision, and, planning for the
    /// surge's rate alone, took back replicas not yet started or switched back variants still loading (on the Twitter
    /// window at 1,027,800, resnet101 × 3 at 238 s, resnet152 × 4 at 240 s). Measured over seven Twitter windows and the
    /// video sample at seeds 1–5 (README, "Holding a surge's headroom"): one interval left the video sample's rise at 1.24 %
    /// at seed 2; two took every seed under 1 % and the Twitter windows' worst run from 0.70 % to 0.46 %, for 2 % more cost.
    /// </summary>
    public static int HeadroomHeldSeconds(int intervalSeconds, int stabilizationSeconds) => Math.Min(2 * intervalSeconds, stabilizationSeconds);

    /// <summary>
    /// The highest load of the stabilization window: the highest rate in it and, while the last scale-up is in it, the load that
    /// scale-up holds (<see cref="HeldAfterScaleUpRps"/>; for <see cref="HeadroomHeldSeconds"/>, all it planned for), so that a
    /// scheduled decision does not take back at once what a surge decision added (HPA's window too holds its highest
    /// recommendation, not only the highest metric).
    /// </summary>
    /// <param name="history">Rates <paramref name="stepSeconds"/> apart, oldest first, the last at the decision.</param>
    /// <param name="lastScaleUp">When capacity last grew, and the loads that holds; null if never.</param>
    public static double RecentPeak(IReadOnlyList<double> history, double stepSeconds, int stabilizationSeconds, int intervalSeconds,
        ScaleUp? lastScaleUp, DateTimeOffset now)
    {
        int points = Math.Min(history.Count, (int)(stabilizationSeconds / stepSeconds) + 1);
        double peak = 0;
        for (int i = history.Count - points; i < history.Count; i++) peak = Math.Max(peak, history[i]);
        if (lastScaleUp is not { } grew) return peak;
        var since = now - grew.Time;
        if (since < TimeSpan.FromSeconds(stabilizationSeconds)) peak = Math.Max(peak, grew.HeldRps);
        if (since < TimeSpan.FromSeconds(HeadroomHeldSeconds(intervalSeconds, stabilizationSeconds))) peak = Math.Max(peak, grew.PlannedRps);
        return peak;
    }

    /// <summary>Why the plan is for <see cref="Rps"/>, and for how much it sized replicas at a target utilization other than 1; for events and logs.</summary>
    public string Describe(string forecaster, double targetUtilization) =>
        $"predicted {ForecastRps:F1} rps ({forecaster})"
        + (SurgeRps is { } surge ? $", a surge to {surge:F1} rps" : "")
        + (Stabilizing ? $", held at the recent peak {RecentPeakRps:F1} rps" : "")
        + (LatestRps / SurgeRule.Threshold > Math.Max(Math.Max(ForecastRps, RecentPeakRps), SurgeHeadroom * (SurgeRps ?? 0)) ? $", the latest rate {LatestRps:F1} rps" : "")
        + $": planned for {Rps:F1} rps"
        + (targetUtilization != 1 ? $", sized for {AdaptationDecider.SizedForRps(Rps, targetUtilization):F1} rps at target utilization {targetUtilization}" : "");
}

/// <summary>The last decision that added capacity: when, and the loads the plans after it hold (<see cref="PlanningLoad.RecentPeak"/>).</summary>
/// <param name="HeldRps">Held through the stabilization window: <see cref="PlanningLoad.HeldAfterScaleUpRps"/>.</param>
/// <param name="PlannedRps">Held for <see cref="PlanningLoad.HeadroomHeldSeconds"/>: the load it planned for, a surge's headroom included.</param>
public readonly record struct ScaleUp(DateTimeOffset Time, double HeldRps, double PlannedRps);
