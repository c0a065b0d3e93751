using System.Text.Json.Nodes;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Planning;

/// <summary>
/// `adaptive plan` on every public conformance case: the answer must meet every constraint of docs/planning-format.md
/// and reach the published optimum, both recomputed by <see cref="FormatJudge"/> from the allocations.
/// </summary>
public class ConformanceTests
{
    static readonly string CasesDir = RepoPaths.Of("tests", "Planning", "Conformance");

    public static TheoryData<string> Cases() =>
        new(Directory.GetFiles(CasesDir, "*.json").Select(Path.GetFileNameWithoutExtension).Where(n => n != "expected").Order()!);

    [Theory]
    [MemberData(nameof(Cases))]
    public void PlanReachesTheOptimum(string name)
    {
        var expected = JsonNode.Parse(File.ReadAllText(Path.Combine(CasesDir, "expected.json")))![name]!;
        var problem = JsonNode.Parse(File.ReadAllText(Path.Combine(CasesDir, name + ".json")))!;

        var run = AdaptiveCli.Run("plan", Path.Combine(CasesDir, name + ".json"));
        var answer = JsonNode.Parse(run.Stdout)!;

        Assert.Equal((string)expected["status"]!, (string)answer["status"]!);
        if ((string)expected["status"]! == "infeasible")
        {
            Assert.Equal(3, run.ExitCode);
            Assert.Null(answer["objective"]);
            return;
        }
        Assert.Equal(0, run.ExitCode);
        var verdict = FormatJudge.Judge(problem, answer);
        Assert.Empty(verdict.Violations);
        double optimum = (double)expected["objective"]!;
        Assert.InRange(verdict.Objective, optimum - 1e-4 * Math.Max(1, Math.Abs(optimum)), optimum + 1e-4 * Math.Max(1, Math.Abs(optimum)));
        Assert.Equal(verdict.Objective, (double)answer["objective"]!, 9);
    }

    [Fact]
    public void InfeasibleFallbackStaysWithinTheBounds()
    {
        string path = Path.Combine(CasesDir, "too-tight.json");
        var problem = JsonNode.Parse(File.ReadAllText(path))!;
        var answer = JsonNode.Parse(AdaptiveCli.Run("plan", path).Stdout)!;

        var stages = answer["stages"]!.AsArray();
        Assert.Equal(problem["stages"]!.AsArray().Count, stages.Count);
        var violations = FormatJudge.Judge(problem, answer).Violations;
        // The SLO cannot be met (that is why it is infeasible); every other rule still holds.
        Assert.All(violations, v => Assert.Contains("over the SLO", v));
        // The highest capacity within bounds: every stage takes its maximum replicas.
        Assert.All(stages, s => Assert.Equal(30, s!["allocations"]!.AsArray().Sum(a => (int)a!["replicas"]!)));
    }

    [Fact]
    public void CopyMatchesSharedCases()
    {
        string shared = RepoPaths.SharedOrSkip("planning", "examples");
        foreach (string file in Directory.GetFiles(shared, "*.json"))
            Assert.Equal(File.ReadAllText(file), File.ReadAllText(Path.Combine(CasesDir, Path.GetFileName(file))));
    }
}
