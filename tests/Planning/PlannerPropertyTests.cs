using System.Globalization;
using System.Text.Json.Nodes;
using Adaptive.Core.Planning;
using Adaptive.Core.Planning.Exchange;
using Adaptive.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace Adaptive.Tests.Planning;

/// <summary>
/// On random small problems (single and mixed stages, batching, one or two hardware classes with limits,
/// budgets, every accuracy method, loading cost, one or two pipelines sharing hardware) the planner reaches
/// the optimum the exhaustive oracle finds, with an answer that meets every rule of docs/planning-format.md,
/// in the papers' batch-fill latency model and in the queueing one.
/// </summary>
public class PlannerPropertyTests
{
    // ADAPTIVE_PLANNER_CASES=40000 runs a longer search for rare solver errors (7 min 40 s here).
    static readonly int Cases = int.TryParse(Environment.GetEnvironmentVariable("ADAPTIVE_PLANNER_CASES"), out int cases) ? cases : 300;

    // FsCheck picks the seeds (and reports the failing one); each seed builds one problem deterministically.
    static readonly Arbitrary<int> Seeds = Arb.From(Gen.Choose(0, int.MaxValue - 1));

    // The work limit, not the clock, ends these searches, so the answers do not depend on how busy the CI
    // machine is (the slowest problems known take 2.3 s on an idle core).
    static readonly CpSatPlanner Planner = new(new PlannerOptions(TimeSpan.FromMinutes(1)));

    [Fact]
    public void PlannerMatchesExhaustiveSearch() =>
        Prop.ForAll(Seeds, seed => AssertMatchesOracle(seed, RandomProblems.Build(seed))).Check(Config.QuickThrowOnFailure.WithMaxTest(Cases));

    /// <summary>The planner's answer keeps every rule and reaches the exhaustive oracle's optimum, or both find nothing.</summary>
    static void AssertMatchesOracle(int seed, JsonNode json)
    {
        var document = ExchangeFormat.Parse(json.ToJsonString());
        double? best = ExhaustivePlanner.BestObjective(document.Problem);
        var result = Planner.Plan(document.Problem);
        string context = $"seed {seed}: {json.ToJsonString()}";
        if (best == null)
        {
            Assert.True(result.Status == PlanStatus.Infeasible, $"planner says {result.Status}, oracle finds nothing; {context}");
            return;
        }
        Assert.True(result.Status == PlanStatus.Optimal, $"planner says {result.Status}, oracle finds {best}; {context}");
        var verdict = FormatJudge.Judge(json, JsonNode.Parse(ExchangeFormat.Write(result, document.ManyPipelines))!);
        Assert.True(verdict.Violations.Count == 0, $"{string.Join("; ", verdict.Violations)}; {context}");
        Assert.True(Math.Abs(verdict.Objective - best.Value) <= 1e-4 * Math.Max(1, Math.Abs(best.Value)),
            $"planner reaches {verdict.Objective}, oracle {best}; {context}");
    }

    /// <summary>
    /// Pipelines of single stages with queueing, where each (variant, class, batch) brings an option per useful
    /// replica count: the planner drops options by bounds before CP-SAT searches (SingleStageBounds), and still
    /// reaches the oracle's optimum, with budgets, hardware limits and loading in play.
    /// </summary>
    [Fact]
    public void PrunedSingleStageChainsMatchExhaustiveSearch() =>
        Prop.ForAll(Seeds, seed => AssertMatchesOracle(seed, RandomProblems.Build(seed, singleStageQueueing: true))).Check(Config.QuickThrowOnFailure.WithMaxTest(Cases / 2));

    /// <summary>
    /// Two mixed stages under a product of accuracies: the model is bilinear and CP-SAT may not prove the
    /// optimum in time, but the answer it gives within a short limit is valid and reaches the optimum.
    /// </summary>
    [Fact]
    public void BilinearProductReachesTheOptimumWithinALimit()
    {
        string text = File.ReadAllText(RepoPaths.Of("tests", "Planning", "Cases", "two-mixed-product.json"));
        var problem = ExchangeFormat.Parse(text).Problem;
        double best = ExhaustivePlanner.BestObjective(problem)!.Value;

        var result = new CpSatPlanner(new PlannerOptions(TimeSpan.FromSeconds(3))).Plan(problem);

        Assert.NotEqual(PlanStatus.Infeasible, result.Status);
        var verdict = FormatJudge.Judge(JsonNode.Parse(text)!, JsonNode.Parse(ExchangeFormat.Write(result, false))!);
        Assert.Empty(verdict.Violations);
        Assert.Equal(best, verdict.Objective, 4);
    }

    /// <summary>
    /// Found by the properties above. Where CP-SAT alone fails: its presolve calls a feasible model infeasible
    /// (seed 1230346243); its presolve probing proves an optimum below the true one (seed 1454710112, one
    /// pipeline of it); with probing it finds nothing in 10 s where without it solves the problem in 30 ms
    /// (seed 1067058435); and the same in a linear model (one mixed stage without batching under a product of
    /// accuracies, seed 1693370104), which was searched once, with probing, and found nothing in 10 s. And
    /// where the model missed an option: a load exactly at one replica's throughput saturates it, and the
    /// option of two replicas was never offered (seed 1946870116). And presolve without probing proving a wrong optimum
    /// on a linear model with a mixed stage, three stages under a 838 ms SLO (seed 497795860: 1.58333, one replica more
    /// than needed in the last stage, where 1.58533 is best; the search without presolve finds it).
    /// </summary>
    [Theory]
    [InlineData("presolve-false-infeasible.json")]
    [InlineData("presolve-wrong-optimum.json")]
    [InlineData("probing-stalls.json")]
    [InlineData("linear-probing-stalls.json")]
    [InlineData("saturated-fewest-replicas.json")]
    [InlineData("presolve-wrong-optimum-linear.json")]
    public void ProblemsFoundByThePropertiesAreSolved(string file)
    {
        string text = File.ReadAllText(RepoPaths.Of("tests", "Planning", "Cases", file));
        var problem = ExchangeFormat.Parse(text).Problem;
        double best = ExhaustivePlanner.BestObjective(problem)!.Value;

        var result = Planner.Plan(problem);

        Assert.Equal(PlanStatus.Optimal, result.Status);
        var verdict = FormatJudge.Judge(JsonNode.Parse(text)!, JsonNode.Parse(ExchangeFormat.Write(result, false))!);
        Assert.Empty(verdict.Violations);
        Assert.Equal(best, verdict.Objective, 4);
    }

    [Fact]
    public void SameProblemGetsTheSameAnswer()
    {
        for (int seed = 0; seed < 20; seed++)
        {
            var problem = ExchangeFormat.Parse(RandomProblems.Build(seed).ToJsonString()).Problem;
            var first = new CpSatPlanner().Plan(problem);
            var second = new CpSatPlanner().Plan(problem);
            Assert.Equal(first.Status, second.Status);
            Assert.Equal(first.Objective, second.Objective);
            Assert.Equal(
                first.Pipelines.SelectMany(p => p.Stages).SelectMany(s => s.Allocations),
                second.Pipelines.SelectMany(p => p.Stages).SelectMany(s => s.Allocations));
        }
    }
}

/// <summary>Small, realistic planning problems in the exchange format, built from a seed.</summary>
static class RandomProblems
{
    const double MostConfigurations = 60_000;

    /// <param name="singleStageQueueing">One pipeline of two or three single stages with queueing and up to 12 replicas each, rather than any shape.</param>
    public static JsonNode Build(int seed, bool singleStageQueueing = false)
    {
        // Some seeds make problems too large for the oracle; the next seeds in a fixed sequence are tried.
        for (int attempt = 0; ; attempt++)
        {
            var random = new Random(seed + attempt * 1_000_003);
            var json = singleStageQueueing ? Pipeline(random, "p", random.Next(2, 4), singleStageQueueing: true) : BuildOnce(random);
            if (ExhaustivePlanner.Count(ExchangeFormat.Parse(json.ToJsonString()).Problem) <= MostConfigurations) return json;
        }
    }

    static JsonNode BuildOnce(Random random)
    {
        if (random.NextDouble() >= 0.2) return Pipeline(random, "p", random.Next(1, 4));
        var twoPipelines = new JsonObject
        {
            ["name"] = "shared",
            ["pipelines"] = new JsonArray(Pipeline(random, "a", random.Next(1, 3)), Pipeline(random, "b", random.Next(1, 3))),
        };
        if (twoPipelines.ToJsonString().Contains("\"gpu\"")) twoPipelines["hardwareLimits"] = new JsonObject { ["gpu"] = random.Next(1, 4) };
        return twoPipelines;
    }

    static JsonObject Pipeline(Random random, string name, int stageCount, bool singleStageQueueing = false)
    {
        // Bounds prune only where accuracies add up.
        string accuracyMethod = singleStageQueueing ? Pick(random, "sum", "average") : Pick(random, "sum", "average", "product");
        // Two mixed stages under a product of accuracies make the model bilinear, which CP-SAT cannot
        // always prove optimal in time: PlannerPropertyTests covers that case on its own.
        int mixedLeft = accuracyMethod == "product" ? 1 : 2;
        var stages = new JsonArray();
        bool usesGpu = false;
        for (int s = 0; s < stageCount; s++)
        {
            bool mixed = !singleStageQueueing && mixedLeft > 0 && random.NextDouble() < 0.4;
            if (mixed) mixedLeft--;
            int classes = random.Next(1, 3);
            int variants = mixed ? (classes == 2 ? 1 : random.Next(1, 4)) : random.Next(1, 4);
            usesGpu |= classes == 2;
            var batches = new[] { 1, 2, 4 }.Where(_ => random.NextDouble() < 0.6).Take(mixed ? 2 : 3).ToList();
            if (batches.Count == 0) batches.Add(1);
            stages.Add(new JsonObject
            {
                ["name"] = $"s{s}",
                ["mode"] = mixed ? "mixed" : "single",
                ["maxReplicas"] = random.Next(1, mixed ? 4 : singleStageQueueing ? 13 : 6),
                ["batchSizes"] = new JsonArray(batches.Select(b => (JsonNode)b).ToArray()),
                ["variants"] = new JsonArray(Enumerable.Range(0, variants).Select(v => (JsonNode)Variant(random, $"v{v}", classes, batches)).ToArray()),
            });
        }
        double lambda = Round(random.NextDouble() * 39 + 1, 2);
        var pipeline = new JsonObject
        {
            ["name"] = name,
            ["sloMs"] = Round(stageCount * (20 + random.NextDouble() * 280), 1),
            ["arrivalRate"] = lambda,
            ["accuracyMethod"] = accuracyMethod,
            ["weights"] = new JsonObject
            {
                ["accuracy"] = Pick(random, 1.0, 2.0),
                ["cost"] = Pick(random, 0.0, 0.002, 0.01, 0.05),
                ["batch"] = Pick(random, 0.0, 0.001, 0.01),
                ["loading"] = Pick(random, 0.0, 0.05, 0.2),
            },
            ["budget"] = random.NextDouble() < 0.3 ? Round(2 + random.NextDouble() * 13, 2) : null,
            ["stages"] = stages,
        };
        if (usesGpu && random.NextDouble() < 0.4) pipeline["hardwareLimits"] = new JsonObject { ["gpu"] = random.Next(0, 3) };
        if (random.NextDouble() < 0.4)
        {
            pipeline["current"] = new JsonArray(stages.Select(stage =>
            {
                var variant = stage!["variants"]!.AsArray()[0]!;
                return (JsonNode)new JsonObject
                {
                    ["stage"] = (string)stage["name"]!,
                    ["variant"] = (string)variant["name"]!,
                    ["hardware"] = "cpu",
                    ["replicas"] = random.Next(0, 3),
                    ["batch"] = (int)stage["batchSizes"]!.AsArray()[random.Next(stage["batchSizes"]!.AsArray().Count)]!,
                };
            }).ToArray());
        }
        if (singleStageQueueing || random.NextDouble() < 0.4)
        {
            pipeline["latencyModel"] = "queueing";
            foreach (var stage in stages) stage!["maxQueueDelayMs"] = Pick(random, 0.0, 5.0, 20.0);
        }
        return pipeline;
    }

    static JsonObject Variant(Random random, string name, int classes, List<int> batches)
    {
        double baseLatency = 5 + random.NextDouble() * 115;
        var hardware = new JsonArray();
        foreach (var (cls, speedup, cost) in new[] { ("cpu", 1.0, 1.0), ("gpu", 3 + random.NextDouble() * 3, Pick(random, 3.0, 5.0)) }.Take(classes))
        {
            hardware.Add(new JsonObject
            {
                ["class"] = cls,
                ["costPerReplica"] = cost,
                ["loadTimeS"] = Round(1 + random.NextDouble() * 9, 2),
                ["profile"] = new JsonArray(batches.Select(b =>
                {
                    double latency = baseLatency / speedup * (0.3 + 0.7 * b) * (0.9 + 0.2 * random.NextDouble());
                    return (JsonNode)new JsonObject
                    {
                        ["batch"] = b,
                        ["latencyMs"] = Round(latency, 2),
                        ["throughput"] = Round(1000 * b / latency * (0.8 + 0.2 * random.NextDouble()), 3),
                    };
                }).ToArray()),
            });
        }
        return new JsonObject { ["name"] = name, ["accuracy"] = Round(0.5 + random.NextDouble() * 0.45, 3), ["hardware"] = hardware };
    }

    static T Pick<T>(Random random, params T[] values) => values[random.Next(values.Length)];

    static double Round(double value, int digits) => double.Parse(Math.Round(value, digits).ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
}
