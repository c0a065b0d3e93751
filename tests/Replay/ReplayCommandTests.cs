using System.Diagnostics;
using Adaptive.Experiments.Replay.Policies;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Replay;

public sealed class ReplayCommandTests
{
    static string TempDir()
    {
        string dir = Path.Combine(Path.GetTempPath(), "adaptive-replay-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return dir;
    }

    [Fact]
    public void With_no_arguments_it_replays_twenty_minutes_of_twitter_under_every_policy_in_under_30_seconds()
    {
        string dir = TempDir();
        var clock = Stopwatch.StartNew();
        var run = AdaptiveCli.RunIn(dir, "replay");
        clock.Stop();

        Assert.True(run.ExitCode == 0, run.Stderr);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"took {clock.Elapsed.TotalSeconds:F1} s");
        Assert.Contains("twitter[1301160+1200]/8", run.Stdout);
        string report = Path.Combine(dir, "replay-report");
        var rows = File.ReadAllLines(Path.Combine(report, "report.csv"));
        Assert.Equal(["policy", .. ReplayPolicies.Names], rows.Select(r => r.Split(',')[0]));
        Assert.All(ReplayPolicies.Names, p => Assert.Contains(p, run.Stdout));
        string markdown = File.ReadAllText(Path.Combine(report, "report.md"));
        Assert.Contains("| infadapter |", markdown);
        Assert.All(["MS+", "FA2", "RIM"], paper => Assert.Contains($"{paper} approximated: Adaptive's planner", markdown)); // and how each differs
        foreach (var png in new[] { "load", "replicas", "latency", "accuracy", "cost", "variants-ipa", "variants-vpa" })
            Assert.True(new FileInfo(Path.Combine(report, png + ".png")).Length > 10_000, $"{png}.png");
        Assert.Equal(8 * 120 + 1, File.ReadAllLines(Path.Combine(report, "timeline.csv")).Length); // 10 s buckets
    }

    [Fact]
    public void The_same_seed_gives_the_same_run_and_another_seed_another()
    {
        string Timeline(string seed)
        {
            string dir = TempDir();
            var run = AdaptiveCli.Run("replay", "--seconds", "120", "--policies", "ipa,hpa", "--workload", "bursty", "--seed", seed, "--out", dir);
            Assert.True(run.ExitCode == 0, run.Stderr);
            return File.ReadAllText(Path.Combine(dir, "timeline.csv"));
        }
        string first = Timeline("5");
        Assert.Equal(first, Timeline("5"));
        Assert.NotEqual(first, Timeline("6"));
    }

    [Theory]
    [InlineData("--start=-5", "the window [-5, 1195) is not inside the trace")]
    [InlineData("--start=1899000", "is not inside the trace's 1899061 seconds")]
    [InlineData("--seconds=0", "--seconds: must be at least 1")]
    [InlineData("--trace=/no/such/trace.txt.gz", "--trace: no such file: /no/such/trace.txt.gz")]
    [InlineData("--policies=ipa,autopilot", "unknown policy 'autopilot'")]
    [InlineData("--workload=sawtooth", "unknown workload 'sawtooth'")]
    [InlineData("--pipeline=nowhere.yaml", "'nowhere.yaml' is neither a sample")]
    [InlineData("--forecaster=oracle", "unknown forecaster 'oracle'")]
    [InlineData("--target-utilization=2.5", "--target-utilization: must be between 0.01 and 2")]
    [InlineData("--hpa-target=0", "--hpa-target: must be between 0.01 and 1")]
    [InlineData("--scrape-seconds=0", "--scrape-seconds: must be between 1 and 60, got 0")]
    public void Bad_arguments_are_refused_with_a_message_naming_them(string argument, string message)
    {
        var run = AdaptiveCli.Run("replay", argument, "--out", TempDir());
        Assert.Equal(2, run.ExitCode);
        Assert.Contains(message, run.Stderr);
        Assert.DoesNotContain("   at ", run.Stderr);
    }

    [Theory]
    [InlineData("--pipeline=video", "--pipeline: --live serves the zoo's ResNets")]
    [InlineData("--profile-seconds=0", "--profile-seconds: must be greater than 0 and at most 600, got 0")]
    [InlineData("--calibration-seconds=0", "--calibration-seconds: must be between 1 and 600, got 0")]
    public void A_live_run_refuses_what_it_would_not_use_before_starting_anything(string argument, string message)
    {
        var run = AdaptiveCli.Run("replay", "--live", argument, "--out", TempDir());
        Assert.Equal(2, run.ExitCode);
        Assert.Contains(message, run.Stderr);
    }
}
