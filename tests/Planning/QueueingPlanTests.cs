using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Planning;
using Adaptive.Core.Simulation;
using Adaptive.Core.Workloads;
using Adaptive.Experiments.Replay;

namespace Adaptive.Tests.Planning;

/// <summary>
/// Plans made with the queueing latency model keep their promise: run in the simulator at the rate they were
/// planned for, at least 99 % of requests finish within the SLO, for the samples in single and mixed mode
/// at light, middling and heavy load. The papers' batch-fill model, planned for the same rate, does not.
/// </summary>
public sealed class QueueingPlanTests
{
    static readonly CpSatPlanner Planner = new(new PlannerOptions(TimeSpan.FromMinutes(1)));

    public static TheoryData<string, string, double> Cases()
    {
        var data = new TheoryData<string, string, double>();
        foreach (var (pipeline, rates) in new[] { ("resnet", new[] { 5.0, 20, 45 }), ("video", new[] { 4.0, 12, 30 }) })
            foreach (string mode in new[] { "single", "mixed" })
                foreach (double rate in rates)
                    data.Add(pipeline, mode, rate);
        return data;
    }

    static (SimulationResult Result, double SloMs) PlanAndRun(string sample, string mode, double rate, string latencyModel)
    {
        var sampled = ReplayPipeline.Load(sample, podStartSeconds: 0);
        var pipeline = new ReplayPipeline(sampled.Derive(spec =>
        {
            spec.Stages.ForEach(s => s.Mode = mode);
            spec.Adaptation.LatencyModel = latencyModel;
        }), 0);
        var plan = Planner.Plan(PlanningProblem.Single(PlanningProblemBuilder.Build(pipeline.Spec, rate, [])));
        Assert.Equal(PlanStatus.Optimal, plan.Status);
        var result = ClusterSimulator.Run(pipeline.Simulate(plan.Pipelines[0].Stages), WorkloadPatterns.Steady(rate, (int)Math.Clamp(40_000 / rate, 300, 3000)),
            pipeline.SimulationOptions(seed: 11, hopMs: 0) with { QueueCapacity = 100_000 });
        return (result, pipeline.Spec.Spec.SloMs);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void At_the_planned_rate_99_percent_of_requests_meet_the_slo(string sample, string mode, double rate)
    {
        var (result, sloMs) = PlanAndRun(sample, mode, rate, "queueing");
        Assert.True(result.ViolationRate <= 0.01, $"{result.ViolationRate:P2} of {result.Arrived} requests missed the {sloMs} ms SLO");
    }

    [Theory]
    [InlineData("resnet", 20.0)]
    [InlineData("video", 12.0)]
    public void The_batch_fill_model_runs_replicas_into_their_queues(string sample, double rate)
    {
        // 7.9 % and 39 % when measured (23 % and 74 % before the simulator refused, as the model server does, what would miss its deadline).
        var (result, sloMs) = PlanAndRun(sample, "single", rate, "batch-fill");
        Assert.True(result.ViolationRate > 0.05, $"{result.ViolationRate:P2} missed the {sloMs} ms SLO");
    }
}
