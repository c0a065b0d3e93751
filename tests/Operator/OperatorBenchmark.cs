using System.Diagnostics;
using System.Globalization;
using System.Text;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Routing;
using Adaptive.Operator.Metrics;
using Adaptive.Operator.Reconciliation;
using Adaptive.Tests.Kubernetes;
using Adaptive.Tests.Support;
using k8s;
using k8s.Models;

namespace Adaptive.Tests.Operator;

/// <summary>
/// The operator benchmark (not part of the suite; run it with
/// <c>dotnet test tests -c Release -- --filter-class "*OperatorBenchmark" --explicit only</c>):
/// reconcile latency from a spec change to updated Deployments, one adaptation step (query, forecast,
/// plan, apply), and the memory of an operator process running 200 pipelines. Against the API server
/// double and a real Prometheus. Writes docs/benchmarks/operator/operator.md.
/// </summary>
[Collection("serving")]
public sealed class OperatorBenchmark(TestModels models)
{
    static readonly CancellationToken Cancel = TestContext.Current.CancellationToken;
    const int Samples = 100;
    const int Pipelines = 200;

    static double P(List<double> values, double q)
    {
        var sorted = values.Order().ToList();
        return sorted[Math.Clamp((int)Math.Ceiling(q * sorted.Count) - 1, 0, sorted.Count - 1)];
    }

    [Fact(Explicit = true)]
    public async Task Measure()
    {
        var reconcile = await ReconcileLatency();
        var step = await AdaptationStep();
        var (memoryMb, readySeconds) = await MemoryWithManyPipelines();

        var table = new StringBuilder();
        table.AppendLine(CultureInfo.InvariantCulture, $"Measured {DateTime.UtcNow:yyyy-MM-dd} on {Environment.ProcessorCount} cores; {Samples} samples each.\n");
        table.AppendLine("| measurement | p50 | p99 | target |");
        table.AppendLine("|---|---|---|---|");
        table.AppendLine(CultureInfo.InvariantCulture, $"| reconcile: spec change → Deployments updated | {P(reconcile, 0.5):F1} ms | {P(reconcile, 0.99):F1} ms | p99 < 100 ms |");
        table.AppendLine(CultureInfo.InvariantCulture, $"| adaptation step: query, forecast, plan, apply, status | {P(step, 0.5):F1} ms | {P(step, 0.99):F1} ms | p99 < 250 ms |");
        table.AppendLine(CultureInfo.InvariantCulture, $"| operator process with {Pipelines} pipelines (video sample), resident memory | {memoryMb:F0} MB | | < 200 MB |");
        table.AppendLine(CultureInfo.InvariantCulture, $"\nAll {Pipelines} pipelines were Ready {readySeconds:F1} s after they were created.");
        string directory = RepoPaths.Of("docs", "benchmarks", "operator");
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "operator.md"), table.ToString());
        TestContext.Current.SendDiagnosticMessage(table.ToString());
    }

    /// <summary>Toggles a stage's minReplicas above what its load needs and times until the Deployment in the API server shows it.</summary>
    static async Task<List<double>> ReconcileLatency()
    {
        await using var harness = await OperatorHarness.Start();
        await harness.Create(OperatorHarness.Sample("video-pipeline.yaml", p => p.Spec.Adaptation.IntervalSeconds = p.Spec.Adaptation.Metrics.HistorySeconds = 3600));
        var ready = await OperatorHarness.Eventually(() => harness.Pipeline("video"),
            p => p.Status?.Conditions.Any(c => c.Type == PipelineCondition.Ready && c.Status == "True") == true, "Ready");
        var detect = ready.Status!.Stages.Single(s => s.Name == "detect").Allocations.Single();
        string deployment = Names.Allocation("video", "detect", detect.Variant, detect.HardwareClass);
        var latencies = new List<double>();
        for (int i = 0; i < Samples + 5; i++)
        {
            // Both above what the load needs (the ready plan's replicas), so that each toggle is a replica count the operator must run.
            int replicas = detect.Replicas + (i % 2 == 0 ? 2 : 1);
            string patch = $"{{\"spec\":{{\"stages\":{Stages(ready, replicas)}}}}}";
            long started = Stopwatch.GetTimestamp();
            await harness.Client.CustomObjects.PatchNamespacedCustomObjectAsync(new V1Patch(patch, V1Patch.PatchType.MergePatch),
                InferencePipeline.Group, InferencePipeline.Version, OperatorHarness.Namespace, InferencePipeline.Plural, "video", cancellationToken: Cancel);
            long Replicas() => harness.Api.List("deployments", OperatorHarness.Namespace).Single(d => d["metadata"]!["name"]!.GetValue<string>() == deployment)["spec"]!["replicas"]!.GetValue<long>();
            while (Replicas() != replicas)
            {
                if (Stopwatch.GetElapsedTime(started) > TimeSpan.FromSeconds(10))
                    throw new TimeoutException($"{deployment} has {Replicas()} replicas 10 s after detect's minReplicas became {replicas}");
                await Task.Delay(1, Cancel);
            }
            if (i >= 5) latencies.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds); // the first few warm up
        }
        return latencies;
    }

    /// <summary>The stages of a pipeline with the detect stage's minReplicas set, as a merge patch replaces the whole list.</summary>
    static string Stages(InferencePipeline pipeline, int detectMinReplicas)
    {
        foreach (var stage in pipeline.Spec.Stages) stage.MinReplicas = stage.Name == "detect" ? detectMinReplicas : 1;
        return System.Text.Json.JsonSerializer.Serialize(pipeline.Spec.Stages, new System.Text.Json.JsonSerializerOptions { DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull });
    }

    /// <summary>One decision each time: a real Prometheus range query, the forecast, CP-SAT, the apply and the status write.</summary>
    async Task<List<double>> AdaptationStep()
    {
        await using var local = await LocalPipeline.Start(models, "resnet-mixed");
        await using var prometheus = await TestPrometheus.Start(local.Router.Address);
        // Traffic flows all along, as it does while an operator works.
        using var traffic = CancellationTokenSource.CreateLinkedTokenSource(Cancel);
        var load = Task.Run(async () =>
        {
            while (!traffic.IsCancellationRequested)
            {
                await local.Send(models, Cancel);
                await Task.Delay(50, Cancel).ContinueWith(_ => { }, TaskScheduler.Default);
            }
        }, Cancel);
        var history = new PrometheusClient(new HttpClient(), prometheus.Address);
        await OperatorHarness.Eventually(async () =>
        {
            try { return (await history.ArrivalRateHistory("resnet-mixed", DateTimeOffset.UtcNow, TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(3), Cancel)).Count; }
            catch (MetricsUnavailableException) { return 0; }
        }, count => count >= 5, "Prometheus to hold some history", seconds: 30);

        await using var api = await ApiServerDouble.Start();
        using var client = new k8s.Kubernetes(api.ClientConfiguration());
        var pipeline = OperatorHarness.Sample("resnet-mixed.yaml");
        await client.CustomObjects.CreateNamespacedCustomObjectAsync(pipeline, InferencePipeline.Group, InferencePipeline.Version, OperatorHarness.Namespace, InferencePipeline.Plural, cancellationToken: Cancel);
        var reconciler = OperatorHarness.Reconciler(client, prometheus.Address, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
        var steps = new List<double>();
        for (int i = 0; i < Samples + 5; i++)
        {
            // Make the decision due, outside the timing: as if the interval had passed.
            string due = "{\"status\":{\"lastDecisionTime\":\"2000-01-01T00:00:00Z\"}}";
            await client.CustomObjects.PatchNamespacedCustomObjectStatusAsync(new V1Patch(due, V1Patch.PatchType.MergePatch),
                InferencePipeline.Group, InferencePipeline.Version, OperatorHarness.Namespace, InferencePipeline.Plural, "resnet-mixed", cancellationToken: Cancel);
            long started = Stopwatch.GetTimestamp();
            await reconciler.Reconcile(OperatorHarness.Namespace, "resnet-mixed", Cancel);
            if (i >= 5) steps.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        }
        await traffic.CancelAsync();
        await load;
        var status = (await OperatorHarness.Read(client, "resnet-mixed")).Status!;
        var degraded = status.Conditions.Single(c => c.Type == PipelineCondition.Degraded);
        Assert.True(degraded.Status == "False", degraded.Message); // the steps really used Prometheus
        return steps;
    }

    /// <summary>The operator as its own process (as in a pod), with 200 pipelines, its resident memory once all are Ready.</summary>
    static async Task<(double MemoryMb, double ReadySeconds)> MemoryWithManyPipelines()
    {
        await using var api = await ApiServerDouble.Start();
        using var client = new k8s.Kubernetes(api.ClientConfiguration());
        string kubeconfig = Path.Combine(Path.GetTempPath(), $"adaptive-benchmark-{Environment.ProcessId}.kubeconfig");
        api.Credentials.WriteKubeconfig(kubeconfig, api.Address, ClusterCredentials.Login.Token);
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in new[] { Path.Combine(AppContext.BaseDirectory, "adaptive-operator.dll"), "--kubeconfig", kubeconfig, "--host", "127.0.0.1", "--port", "0", "--workers", "2" })
            start.ArgumentList.Add(arg);
        start.Environment["Logging__LogLevel__Default"] = "Warning";
        using var process = Process.Start(start)!;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            var created = Stopwatch.StartNew();
            for (int i = 0; i < Pipelines; i++)
            {
                var pipeline = OperatorHarness.Sample("video-pipeline.yaml", p => p.Spec.Adaptation.IntervalSeconds = p.Spec.Adaptation.Metrics.HistorySeconds = 30);
                pipeline["metadata"]!["name"] = $"video-{i:D3}";
                await client.CustomObjects.CreateNamespacedCustomObjectAsync(pipeline, InferencePipeline.Group, InferencePipeline.Version, OperatorHarness.Namespace, InferencePipeline.Plural, cancellationToken: Cancel);
            }
            await OperatorHarness.Eventually(() => Task.FromResult(api.List("inferencepipelines", OperatorHarness.Namespace)),
                list => list.Count(p => p["status"]?["conditions"]?.AsArray().Any(c => c!["type"]!.GetValue<string>() == "Ready" && c["status"]!.GetValue<string>() == "True") == true) == Pipelines,
                "every pipeline to be Ready", seconds: 300);
            double readySeconds = created.Elapsed.TotalSeconds;
            await Task.Delay(TimeSpan.FromSeconds(5), Cancel); // steady state: reconciles keep coming at their intervals
            string rss = File.ReadAllLines($"/proc/{process.Id}/status").Single(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
            double kb = double.Parse(rss.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
            return (kb / 1024, readySeconds);
        }
        finally
        {
            process.Kill(entireProcessTree: true);
            File.Delete(kubeconfig);
        }
    }
}
