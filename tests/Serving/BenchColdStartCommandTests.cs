using Adaptive.Tests.Support;

namespace Adaptive.Tests.Serving;

/// <summary>The cold-start benchmark is no test, but the command must keep working: one start in each mode of a small ResNet.</summary>
[Collection("serving")]
public sealed class BenchColdStartCommandTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("adaptive-bench-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    [Fact]
    public void Writes_a_row_for_each_start_with_and_without_the_warm_up()
    {
        var run = AdaptiveCli.Run("bench", "cold-start", "--starts", "1", "--resolution", "32", "--out", dir);

        Assert.True(run.ExitCode == 0, run.Stderr + run.Stdout);
        var lines = File.ReadAllLines(Path.Combine(dir, "cold-start.csv"));
        Assert.Equal("warm_up,ready_ms,first_ms,following_mean_ms,steady_median_ms", lines[0]);
        Assert.Equal(["False", "True"], lines.Skip(1).Select(l => l.Split(',')[0]));
        Assert.All(lines.Skip(1), l => Assert.All(l.Split(',').Skip(1), v => Assert.True(double.Parse(v, System.Globalization.CultureInfo.InvariantCulture) > 0, l)));
        Assert.Contains("| on | 1 |", File.ReadAllText(Path.Combine(dir, "cold-start.md")));
    }

    [Fact]
    public void A_bad_setting_is_named()
    {
        var run = AdaptiveCli.Run("bench", "cold-start", "--starts", "0", "--out", dir);
        Assert.Equal(2, run.ExitCode);
        Assert.Contains("--starts", run.Stderr);
    }
}
