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
}
