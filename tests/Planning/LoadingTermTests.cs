using System.Text.Json.Nodes;
using Adaptive.Core.Planning;
using Adaptive.Core.Planning.Exchange;

namespace Adaptive.Tests.Planning;

/// <summary>
/// A batch size is part of a model server's pod, so changing it replaces every replica and loads the model
/// again: the loading term counts it like new replicas, and the planner keeps a running batch size where
/// the saving of a change is smaller than the loading weight (what made ipa flap between batch 1 and 2 live).
/// </summary>
public sealed class LoadingTermTests
{
    static readonly CpSatPlanner Planner = new(new PlannerOptions(TimeSpan.FromMinutes(1)));

    /// <summary>
    /// 60 requests/s on one variant: batch 1 needs 3 replicas (25 rps each), batch 2 needs 2 (40 rps each).
    /// One replica saves β = 0.01; loading its model again costs δ = 0.05.
    /// </summary>
    static string Problem(string mode, int? runningBatch) => new JsonObject
    {
        ["name"] = "p", ["sloMs"] = 200, ["arrivalRate"] = 60, ["accuracyMethod"] = "sum",
        ["weights"] = new JsonObject { ["accuracy"] = 1, ["cost"] = 0.01, ["batch"] = 0, ["loading"] = 0.05 },
        ["stages"] = new JsonArray(new JsonObject
        {
            ["name"] = "classify", ["mode"] = mode, ["maxReplicas"] = 4, ["batchSizes"] = new JsonArray(1, 2),
            ["variants"] = new JsonArray(new JsonObject
            {
                ["name"] = "resnet18", ["accuracy"] = 0.7,
                ["hardware"] = new JsonArray(new JsonObject
                {
                    ["class"] = "cpu", ["costPerReplica"] = 1, ["loadTimeS"] = 10,
                    ["profile"] = new JsonArray(
                        new JsonObject { ["batch"] = 1, ["latencyMs"] = 40, ["throughput"] = 25 },
                        new JsonObject { ["batch"] = 2, ["latencyMs"] = 60, ["throughput"] = 40 }),
                }),
            }),
        }),
        ["current"] = runningBatch is int batch
            ? new JsonArray(new JsonObject { ["stage"] = "classify", ["variant"] = "resnet18", ["hardware"] = "cpu", ["replicas"] = 3, ["batch"] = batch })
            : new JsonArray(),
    }.ToJsonString();

    static (int Replicas, int Batch, double Objective) Plan(string json)
    {
        var result = Planner.Plan(ExchangeFormat.Parse(json).Problem);
        Assert.Equal(PlanStatus.Optimal, result.Status);
        var verdict = FormatJudge.Judge(JsonNode.Parse(json)!, JsonNode.Parse(ExchangeFormat.Write(result, false))!);
        Assert.Empty(verdict.Violations);
        Assert.Equal(verdict.Objective, result.Objective!.Value, 6);
        var allocation = Assert.Single(result.Pipelines[0].Stages[0].Allocations);
        return (allocation.Replicas, allocation.Batch, result.Objective!.Value);
    }

    [Theory]
    [InlineData("single")]
    [InlineData("mixed")]
    public void A_running_batch_size_is_kept_where_changing_it_costs_more_than_it_saves(string mode)
    {
        var kept = Plan(Problem(mode, runningBatch: 1));
        Assert.Equal((3, 1), (kept.Replicas, kept.Batch));
        Assert.Equal(0.7 - 0.03, kept.Objective, 6);
    }

    [Theory]
    [InlineData("single")]
    [InlineData("mixed")]
    public void Without_replicas_running_the_cheaper_batch_size_wins(string mode)
    {
        var fresh = Plan(Problem(mode, runningBatch: null));
        Assert.Equal((2, 2), (fresh.Replicas, fresh.Batch));
    }

    [Theory]
    [InlineData("single")]
    [InlineData("mixed")]
    public void Fewer_replicas_at_the_running_batch_size_load_nothing(string mode)
    {
        // Running batch 2 already: two of the three replicas stay, nothing loads.
        var shrunk = Plan(Problem(mode, runningBatch: 2));
        Assert.Equal((2, 2), (shrunk.Replicas, shrunk.Batch));
        Assert.Equal(0.7 - 0.02, shrunk.Objective, 6);
    }
}
