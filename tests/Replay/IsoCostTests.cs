using System.Globalization;
using System.Text.RegularExpressions;
using Adaptive.Core.Workloads;
using Adaptive.Experiments.Replay;
using Adaptive.Experiments.Replay.Policies;
using Adaptive.Experiments.Workloads;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Replay;

/// <summary>
/// The iso-cost rows (<c>replay --iso-cost</c>): an Adaptive policy with its cost weight tuned to spend what a
/// baseline spends. A class of its own so that these slow searches run beside the policies' tests.
/// </summary>
public sealed class IsoCostTests
{
    /// <summary>
    /// At hpa's spend over IPA's 20-minute window (the iso-cost row <c>ipa@hpa</c>): within −5 % … +2 % of hpa's cost,
    /// ipa keeps its violations within max(1 %, hpa's) and serves at least hpa's accuracy.
    /// </summary>
    [Fact]
    public void At_the_cost_of_hpa_ipa_misses_the_slo_no_more_and_is_no_less_accurate() => IpaAtTheCostOf("hpa", "resnet");

    /// <summary>
    /// At static's spend on the video sample, the cost weight alone buys accuracy with violations (1.31 % before the
    /// search tried headroom there); with headroom at each step, ipa@static keeps within 1 % and is no less accurate.
    /// </summary>
    [Fact]
    public void At_the_cost_of_static_on_the_video_sample_headroom_keeps_the_slo() => IpaAtTheCostOf("static", "video");

    /// <summary>
    /// On the quiet window of day 5 (second 431,400), the first run in hpa's band was 0.0006 less accurate than hpa
    /// (0.7607): cost comes in whole replicas held for minutes, and the search stopped below a jump in accuracy.
    /// Going on toward the band's upper edge finds the run that is not.
    /// </summary>
    [Fact]
    public void At_the_cost_of_hpa_the_search_goes_on_within_the_band() => IpaAtTheCostOf("hpa", "resnet", start: 431_400);

    /// <summary>
    /// Five quiet minutes of day 14 (second 1,185,000), at hpa's spend: one replica, hpa's resnet50, which keeps the SLO
    /// there. ipa, planning for the forecast peak at the 99th percentile, served part of them with a smaller variant at
    /// every cost weight, headroom and stabilization window the search tries first (accuracy 0.7449 at best); planning
    /// for less than the forecast (a target utilization over 1) buys hpa's accuracy. Through the command, which prints
    /// and reports the settings that did it.
    /// </summary>
    [Fact]
    public void At_the_cost_of_hpa_planning_for_less_than_the_forecast_buys_its_accuracy()
    {
        string dir = Path.Combine(Path.GetTempPath(), "adaptive-iso-cost-" + Guid.NewGuid().ToString("N"));
        var run = AdaptiveCli.Run("replay", "--start", "1185000", "--seconds", "300", "--policies", "ipa,hpa", "--iso-cost", "--out", dir);
        Assert.True(run.ExitCode == 0, run.Stderr);
        var rows = File.ReadAllLines(Path.Combine(dir, "report.csv")).Skip(1).Select(line => line.Split(','))
            .ToDictionary(c => c[0], c => new Outcome(Parse(c[2]), Parse(c[5]), Parse(c[6])));
        AssertTheBar("hpa", rows["ipa@hpa"], rows["hpa"]);
        string tuning = Regex.Match(run.Stdout, @"^ipa@hpa: (.*, target utilization (1\.25|1\.5|2))$", RegexOptions.Multiline).Groups[1].Value;
        Assert.True(tuning.Length > 0, run.Stdout);
        Assert.Contains($"  - ipa@hpa: {tuning}\n", File.ReadAllText(Path.Combine(dir, "report.md")));
    }

    /// <summary>
    /// On day 12 (second 1,027,800) vpa runs one resnet50 replica all along and misses the SLO for 5.21 %. ipa spent 2.1 % more
    /// even at the highest cost weight (its surge decisions add capacity or switch variants for seconds at a time), so no run
    /// was in the band, and the search reported the closest. Planning for less than the forecast gets it into the band.
    /// </summary>
    [Fact]
    public void Where_even_the_highest_cost_weight_spends_too_much_planning_for_less_gets_into_the_band()
    {
        string dir = Path.Combine(Path.GetTempPath(), "adaptive-iso-cost-" + Guid.NewGuid().ToString("N"));
        var run = AdaptiveCli.Run("replay", "--start", "1027800", "--policies", "ipa,vpa", "--iso-cost", "--out", dir);
        Assert.True(run.ExitCode == 0, run.Stderr);
        var rows = File.ReadAllLines(Path.Combine(dir, "report.csv")).Skip(1).Select(line => line.Split(','))
            .ToDictionary(c => c[0], c => new Outcome(Parse(c[2]), Parse(c[5]), Parse(c[6])));
        var (matched, vpa) = (rows["ipa@vpa"], rows["vpa"]);
        Assert.True(vpa.ViolationRate > IsoCost.BaselineKeepsTheSlo, $"vpa missed {vpa.ViolationRate:P2}: its accuracy is bought with violations, and not matched");
        Assert.InRange(matched.Cost, vpa.Cost * (1 - IsoCost.Below), vpa.Cost * (1 + IsoCost.Above));
        Assert.True(matched.ViolationRate <= Math.Max(0.01, vpa.ViolationRate), $"{matched.ViolationRate:P2} against vpa's {vpa.ViolationRate:P2}");
        Assert.Matches(@"^ipa@vpa: .*, target utilization (1\.25|1\.5|2)$", run.Stdout.Split('\n').Single(l => l.StartsWith("ipa@vpa: ", StringComparison.Ordinal)));
    }

    static double Parse(string value) => double.Parse(value, CultureInfo.InvariantCulture);

    sealed record Outcome(double ViolationRate, double Accuracy, double Cost);

    /// <summary>The iso-cost row <c>ipa@B</c> over a 20-minute window (IPA's unless named).</summary>
    static void IpaAtTheCostOf(string baselineName, string pipelineName, int start = WorkloadPatterns.IpaWindowStart)
    {
        var window = ReplayWorkloads.Create("twitter", TwitterTrace.DefaultPath, start, WorkloadPatterns.IpaWindowSeconds, WorkloadPatterns.IpaDamping, seed: 1);
        var pipeline = ReplayPipeline.Load(pipelineName, podStartSeconds: 5);
        var baseline = ReplayPolicyTests.Replay(baselineName, pipelineName, window);
        var matched = IsoCost.Match(pipeline, "ipa", baseline, window, pipeline.SimulationOptions(seed: 2, ReplayPipeline.DefaultHopMs), ScrapeSchedule.Default);
        Assert.Equal($"ipa@{baselineName}", matched.Policy);
        Outcome Of(PolicyRun run) => new(run.Result.ViolationRate, ReplayReport.Summarize(run).Accuracy, run.Result.Cost);
        AssertTheBar(baselineName, Of(matched), Of(baseline));
    }

    /// <summary>Issue #20's bar for an iso-cost row: in the cost band, violations within max(1 %, B's), at least B's accuracy.</summary>
    static void AssertTheBar(string baselineName, Outcome matched, Outcome baseline)
    {
        Assert.InRange(matched.Cost, baseline.Cost * (1 - IsoCost.Below), baseline.Cost * (1 + IsoCost.Above));
        Assert.True(matched.ViolationRate <= Math.Max(0.01, baseline.ViolationRate), $"{matched.ViolationRate:P2} against {baselineName}'s {baseline.ViolationRate:P2}");
        Assert.True(matched.Accuracy >= baseline.Accuracy, $"accuracy {matched.Accuracy:F4} against {baselineName}'s {baseline.Accuracy:F4}");
    }
}
