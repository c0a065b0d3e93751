using Adaptive.Core.Adaptation;
using System.Net;
using System.Text.Json.Nodes;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Routing;
using Adaptive.Operator.Metrics;
using Adaptive.Tests.Kubernetes;
using Adaptive.Tests.Support;
using k8s;
using k8s.Models;

namespace Adaptive.Tests.Operator;

/// <summary>
/// The adaptation loop with a real Prometheus scraping a real router: the load rises and the
/// configuration follows it, make-before-break; Prometheus goes away and nothing is scaled down.
/// </summary>
[Collection("serving")]
public sealed class OperatorAdaptationTests(TestModels models)
{
    static readonly CancellationToken Cancel = TestContext.Current.CancellationToken;

    static int TotalReplicas(InferencePipeline p) => p.Status!.Stages.Sum(s => s.Allocations.Sum(a => a.Replicas));

    /// <summary>What the planned replicas sustain at their profiled throughput, requests per second.</summary>
    static double Capacity(InferencePipeline p)
    {
        var spec = p.Spec.Stages.Single();
        return p.Status!.Stages.Single().Allocations.Sum(a =>
            a.Replicas * spec.Variants.Single(v => v.Name == a.Variant).Profiles.Single().Batches.Single(b => b.Batch == a.Batch).ThroughputRps);
    }

    static int RunningReplicas(OperatorHarness harness) => harness.Api.List("deployments", OperatorHarness.Namespace)
        .Where(d => d["metadata"]!["labels"]!["adaptive.dev/component"]!.GetValue<string>() == "model-server")
        .Where(d => d["metadata"]!["annotations"]?[Adaptive.Operator.Reconciliation.Names.RetiringSince] is null) // replaced, on its way out
        .Sum(d => d["spec"]!["replicas"]!.GetValue<int>());

    /// <summary>The ResNet sample on CPU only, so that more load needs more replicas, changed by <paramref name="change"/>.</summary>
    static System.Text.Json.Nodes.JsonObject CpuOnly(Action<InferencePipeline> change) => OperatorHarness.Sample("resnet-mixed.yaml", p =>
    {
        p.Spec.HardwareClasses.RemoveAll(c => c.Name == "gpu");
        foreach (var v in p.Spec.Stages.SelectMany(s => s.Variants)) v.Profiles.RemoveAll(pr => pr.HardwareClass == "gpu");
        change(p);
    });

    /// <summary>Requests through the local router at a rate that can be changed, until disposed.</summary>
    sealed class RouterLoad : IAsyncDisposable
    {
        readonly CancellationTokenSource stop = new();
        readonly Task sending;
        double rate;

        public RouterLoad(LocalPipeline local, TestModels models, double rate)
        {
            this.rate = rate;
            sending = Task.Run(async () =>
            {
                while (!stop.IsCancellationRequested)
                {
                    _ = local.Send(models, Cancel);
                    await Task.Delay(TimeSpan.FromSeconds(1 / Volatile.Read(ref this.rate)), Cancel).ContinueWith(_ => { }, TaskScheduler.Default);
                }
            }, Cancel);
        }

        public double Rate { set => Volatile.Write(ref rate, value); }

        public async ValueTask DisposeAsync()
        {
            await stop.CancelAsync();
            await sending;
            stop.Dispose();
        }
    }

    [Fact]
    public async Task Replicas_follow_the_load_make_before_break_and_hold_when_prometheus_is_gone()
    {
        // The router of the pipeline, in this process, in front of a real model server.
        await using var local = await LocalPipeline.Start(models, "resnet-mixed");
        var prometheus = await TestPrometheus.Start(local.Router.Address);

        await using var harness = await OperatorHarness.Start(retireAfter: TimeSpan.FromSeconds(1), prometheus: prometheus.Address);
        harness.Api.PodsReadyAfter = TimeSpan.FromSeconds(1.5);
        await harness.Create(CpuOnly(p =>
        {
            p.Spec.Adaptation.Metrics.HistorySeconds = 60;
            p.Spec.Adaptation.ScaleDownStabilizationSeconds = 60;
        }));

        await using var load = new RouterLoad(local, models, 2);

        var low = await OperatorHarness.Eventually(() => harness.Pipeline("resnet-mixed"),
            p => p.Status?.Conditions.Any(c => c.Type == PipelineCondition.Degraded && c.Status == "False") == true
                 && p.Status.PredictedLoadRps is > 0.5 and < 6
                 && p.Status.Conditions.Any(c => c.Type == PipelineCondition.Ready && c.Status == "True"),
            "a decision from Prometheus at the low load", seconds: 40);
        int lowReplicas = TotalReplicas(low);

        load.Rate = 40;
        var high = await OperatorHarness.Eventually(() => harness.Pipeline("resnet-mixed"),
            p => p.Status?.PredictedLoadRps > 25 && TotalReplicas(p) > lowReplicas
                 && p.Status.Conditions.Any(c => c.Type == PipelineCondition.Ready && c.Status == "True"),
            "more replicas for the higher load", seconds: 40);
        Assert.Equal("True", high.Status!.Conditions.Single(c => c.Type == PipelineCondition.SloFeasible).Status);
        // The rate queries' windows follow the scrape interval the operator measured, and Degraded says it.
        Assert.EndsWith("; Prometheus scrapes the router every 1 s", high.Status.Conditions.Single(c => c.Type == PipelineCondition.Degraded).Message);
        // The planned capacity covers the forecast.
        double capacity = Capacity(high);
        Assert.True(capacity >= high.Status.PredictedLoadRps, $"capacity {capacity} rps for a forecast of {high.Status.PredictedLoadRps} rps");
        AssertMakeBeforeBreak(harness);

        // The load falls back: fewer replicas would do, but the stabilization window holds the plan at the recent peak.
        load.Rate = 2;
        var cooling = await OperatorHarness.Eventually(() => harness.Pipeline("resnet-mixed"),
            p => p.Status?.Conditions.Any(c => c.Type == PipelineCondition.Adapting && c.Reason == "ScaleDownStabilization") == true,
            "the scale-down stabilization", seconds: 40);
        string message = cooling.Status!.Conditions.Single(c => c.Type == PipelineCondition.Adapting).Message;
        Assert.Matches(@"^the forecast fell to [\d.]+ rps; plans hold [\d.]+ rps, the highest load of the last 60 s, until it leaves that window$", message);
        Assert.True(cooling.Status.PredictedLoadRps > 25, $"planned for {cooling.Status.PredictedLoadRps} rps");
        // Not more replicas than at the peak necessarily: the peak's plan may have carried the surge rule's headroom.
        Assert.True(Capacity(cooling) >= cooling.Status.PredictedLoadRps, $"capacity {Capacity(cooling)} rps for a held peak of {cooling.Status.PredictedLoadRps} rps");
        Assert.Equal(TotalReplicas(cooling), RunningReplicas(harness));

        // Prometheus goes away: Degraded says why, and the replicas stay as they are.
        await prometheus.DisposeAsync();
        var degraded = await OperatorHarness.Eventually(() => harness.Pipeline("resnet-mixed"),
            p => p.Status?.Conditions.Any(c => c.Type == PipelineCondition.Degraded && c.Status == "True" && c.Reason == "MetricsUnavailable") == true,
            "Degraded after Prometheus stopped");
        Assert.Contains("unreachable", degraded.Status!.Conditions.Single(c => c.Type == PipelineCondition.Degraded).Message);
        load.Rate = 1;
        await Task.Delay(TimeSpan.FromSeconds(5), Cancel);
        var held = await harness.Pipeline("resnet-mixed");
        Assert.Equal(TotalReplicas(cooling), TotalReplicas(held));
        Assert.Equal(TotalReplicas(cooling), RunningReplicas(harness));

    }

    /// <summary>
    /// Between decisions the reconciler comes back a second after the router's next scrape, which it reads from Prometheus,
    /// rather than at the fixed period of surge checks: a rise is acted on within a second of the scrape that shows it.
    /// </summary>
    [Fact]
    public async Task Between_decisions_the_reconciler_comes_back_just_after_the_next_scrape()
    {
        await using var local = await LocalPipeline.Start(models, "resnet-mixed");
        await using var prometheus = await TestPrometheus.Start(local.Router.Address); // scrapes every second
        await using var load = new RouterLoad(local, models, 2);
        await using var api = await ApiServerDouble.Start();
        using var client = new k8s.Kubernetes(api.ClientConfiguration());
        await client.CustomObjects.CreateNamespacedCustomObjectAsync(CpuOnly(p => p.Spec.Adaptation.IntervalSeconds = p.Spec.Adaptation.Metrics.HistorySeconds = 600),
            InferencePipeline.Group, InferencePipeline.Version, OperatorHarness.Namespace, InferencePipeline.Plural, cancellationToken: Cancel);
        var scrape = TimeSpan.FromSeconds(1);
        // Told 15 s, as an operator whose Prometheus scrapes faster would be: it measures the interval.
        var reconciler = OperatorHarness.Reconciler(client, prometheus.Address, scrape, TimeSpan.FromSeconds(15));
        await reconciler.Reconcile(OperatorHarness.Namespace, "resnet-mixed", Cancel); // the first decision
        // As if its capacity had been added long ago, so that surge checks may decide at once.
        await client.CustomObjects.PatchNamespacedCustomObjectStatusAsync(new V1Patch("{\"status\":{\"lastScaleUpTime\":\"2000-01-01T00:00:00Z\"}}", V1Patch.PatchType.MergePatch),
            InferencePipeline.Group, InferencePipeline.Version, OperatorHarness.Namespace, InferencePipeline.Plural, "resnet-mixed", cancellationToken: Cancel);
        var metrics = new PrometheusClient(new HttpClient(), prometheus.Address);
        var first = await OperatorHarness.Eventually(() => metrics.Scrapes("resnet-mixed", DateTimeOffset.UtcNow, Cancel), scrapes => scrapes is not null, "a scrape of the router's requests");
        await OperatorHarness.Eventually(() => metrics.Scrapes("resnet-mixed", DateTimeOffset.UtcNow, Cancel), scrapes => scrapes!.Last > first!.Last, "a second scrape, for the latest rate");

        var settled = new List<TimeSpan>();
        for (int i = 0; i < 20 && settled.Count < 3; i++)
        {
            var next = (await reconciler.Reconcile(OperatorHarness.Namespace, "resnet-mixed", Cancel))!.Value;
            var status = (await OperatorHarness.Read(client, "resnet-mixed")).Status!;
            if (status.Conditions.Any(c => c.Type == PipelineCondition.Ready && c.Status == "True") && status.LastScaleUpTime!.Value.Year == 2000) settled.Add(next);
            await Task.Delay(next, Cancel);
        }
        Assert.NotEmpty(settled);
        // Just after the next scrape: within the scrape interval and the lag, where the fixed period would be 5 s.
        Assert.All(settled, next => Assert.True(next <= scrape + TimeSpan.FromSeconds(SurgeRule.CheckLagSeconds) || next == TimeSpan.FromSeconds(SurgeRule.CheckSeconds), $"{next}"));
        Assert.Contains(settled, next => next < scrape + TimeSpan.FromSeconds(SurgeRule.CheckLagSeconds));
    }

    /// <summary>
    /// Decisions ten minutes apart, and the load rises tenfold after the first: the surge rule adds capacity
    /// (more replicas, or faster variants) within a check or two, says so in an Event, and leaves the schedule
    /// of decisions alone.
    /// </summary>
    [Fact]
    public async Task A_surge_gets_replicas_before_the_next_scheduled_decision()
    {
        await using var local = await LocalPipeline.Start(models, "resnet-mixed");
        await using var prometheus = await TestPrometheus.Start(local.Router.Address);
        await using var harness = await OperatorHarness.Start(prometheus: prometheus.Address);
        harness.Api.PodsReadyAfter = TimeSpan.FromSeconds(1);
        await harness.Create(CpuOnly(p => p.Spec.Adaptation.IntervalSeconds = p.Spec.Adaptation.Metrics.HistorySeconds = 600));

        await using var load = new RouterLoad(local, models, 2);
        // The first decision comes before Prometheus has data: the least load. The low load stays within it.
        var low = await OperatorHarness.Eventually(() => harness.Pipeline("resnet-mixed"),
            p => p.Status?.Conditions.Any(c => c.Type == PipelineCondition.Ready && c.Status == "True") == true, "the first configuration serving", seconds: 40);
        await Task.Delay(TimeSpan.FromSeconds(5), Cancel);
        Assert.Equal(Capacity(low), Capacity(await harness.Pipeline("resnet-mixed")));
        Assert.True(Capacity(low) < 20, $"{Capacity(low)} rps at first");

        load.Rate = 30;
        var surged = await OperatorHarness.Eventually(() => harness.Pipeline("resnet-mixed"),
            p => Capacity(p) > 20, "capacity for the surge before the next scheduled decision", seconds: 60);
        Assert.Equal(low.Status!.LastDecisionTime, surged.Status!.LastDecisionTime);
        Assert.True(surged.Status.PredictedLoadRps > 10, $"planned for {surged.Status.PredictedLoadRps} rps");
        // What the surge added is held through the stabilization window at the surge's rate.
        var surges = harness.Api.List("events", OperatorHarness.Namespace)
            .Where(e => e["reason"]?.GetValue<string>() == "Reconfigured")
            .Select(e => System.Text.RegularExpressions.Regex.Match(e["message"]!.GetValue<string>(), @"a surge to ([\d.]+) rps"))
            .Where(m => m.Success).Select(m => double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.NotEmpty(surges);
        double held = surged.Status.LastScaleUpLoadRps!.Value;
        Assert.Contains(surges, rate => Math.Abs(rate - held) < 0.06);
        Assert.True(held * PlanningLoad.SurgeHeadroom <= surged.Status.PredictedLoadRps + 0.01, $"held {held} rps of a plan for {surged.Status.PredictedLoadRps} rps");
        // Its headroom, for two decision intervals.
        Assert.InRange(surged.Status.LastScaleUpPlannedRps!.Value, held * PlanningLoad.SurgeHeadroom - 0.01, surged.Status.PredictedLoadRps!.Value + 0.01);
    }

    /// <summary>
    /// Every version of the routes, after the first, sends traffic only to Deployments that had ready
    /// pods before it was written (resourceVersions order all changes).
    /// </summary>
    static void AssertMakeBeforeBreak(OperatorHarness harness)
    {
        var readyAt = new Dictionary<string, long>();
        foreach (var (_, d) in harness.Api.Changes("deployments"))
        {
            string name = d["metadata"]!["name"]!.GetValue<string>();
            long version = long.Parse(d["metadata"]!["resourceVersion"]!.GetValue<string>(), System.Globalization.CultureInfo.InvariantCulture);
            if (d["status"]?["readyReplicas"]?.GetValue<long>() >= 1 && !readyAt.ContainsKey(name)) readyAt[name] = version;
        }
        var versions = harness.Api.Changes("configmaps").Where(c => c.Type != "DELETED").Skip(1).ToList();
        Assert.NotEmpty(versions);
        foreach (var (_, map) in versions)
        {
            long version = long.Parse(map["metadata"]!["resourceVersion"]!.GetValue<string>(), System.Globalization.CultureInfo.InvariantCulture);
            var config = RouterConfig.Parse(map["data"]!["routes.json"]!.GetValue<string>());
            Assert.Equal(250, config.SloMs); // the sample's SLO: the router shares it out among the stages
            foreach (var variant in config.Stages.SelectMany(s => s.Variants))
            {
                string host = new Uri(variant.Endpoint).Host;
                Assert.EndsWith($"-{variant.Name}", host); // each route keeps its name: variant-class of its Service
                Assert.True(readyAt.TryGetValue(host, out long ready) && ready < version,
                    $"routes version {version} sends traffic to {host} before it had ready pods");
            }
        }
    }
}
