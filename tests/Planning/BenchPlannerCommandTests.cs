using Adaptive.Tests.Support;

namespace Adaptive.Tests.Planning;

/// <summary>The planner benchmark itself is no test, but the command must keep working: a tiny grid.</summary>
public sealed class BenchPlannerCommandTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("adaptive-bench-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    [Fact]
    public void WritesCsvAndPlots()
    {
        var run = AdaptiveCli.Run("bench", "planner", "--stages", "1", "2", "--mixed-stages", "1", "--variants", "3", "--repeats", "2", "--out", dir);

        Assert.True(run.ExitCode == 0, run.Stderr);
        var lines = File.ReadAllLines(Path.Combine(dir, "planner.csv"));
        Assert.Equal("mode,hardwareClasses,stages,variants,runs,p50Ms,p99Ms,maxMs,optimal,feasible,infeasible", lines[0]);
        // single × {1, 2} classes × {1, 2} stages, mixed × {1, 2} classes × 1 stage; every instance solved.
        Assert.Equal(6, lines.Length - 1);
        Assert.All(lines.Skip(1), line => Assert.EndsWith(",2,0,0", line));
        foreach (string plot in new[] { "planner-single.png", "planner-mixed.png" })
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, File.ReadAllBytes(Path.Combine(dir, plot))[..4]);
    }

    /// <summary>The joint rows: a first round, as good as CP-SAT on the whole problem where that is small, then warm rounds that plan only what changed.</summary>
    [Fact]
    public void Joint_rounds_write_their_rows()
    {
        var run = AdaptiveCli.Run("bench", "planner", "--joint", "4", "--repeats", "1", "--out", dir);

        Assert.True(run.ExitCode == 0, run.Stderr);
        var lines = File.ReadAllLines(Path.Combine(dir, "joint.csv"));
        Assert.Equal("pipelines,instance,round,round_ms,plans,constrained,whole_status,whole_ms,whole_objective,decomposed_objective", lines[0]);
        var first = lines[1].Split(',');
        Assert.Equal(["4", "0", "first", "optimal"], [first[0], first[1], first[2], first[6]]);
        Assert.Equal(double.Parse(first[8], System.Globalization.CultureInfo.InvariantCulture), double.Parse(first[9], System.Globalization.CultureInfo.InvariantCulture), 6);
        var warm = lines.Skip(2).Select(l => l.Split(',')).ToList();
        Assert.Equal(20, warm.Count);
        // A tenth of 4 pipelines is one: each warm round plans that one again, at most its whole menu.
        Assert.All(warm, w => Assert.True(w[2] == "warm" && int.Parse(w[4], System.Globalization.CultureInfo.InvariantCulture) <= int.Parse(first[4], System.Globalization.CultureInfo.InvariantCulture) / 2, string.Join(",", w)));
    }
}
