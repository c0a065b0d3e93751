using System.Collections.Concurrent;
using Adaptive.Operator.Cluster;
using Adaptive.Operator.Queue;
using Adaptive.Operator.Watcher;
using Adaptive.Tests.Kubernetes;
using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging.Abstractions;

namespace Adaptive.Tests.Operator;

public sealed class WatcherAndQueueTests
{
    static readonly CancellationToken Cancel = TestContext.Current.CancellationToken;

    static async Task Until(Func<bool> condition, string what)
    {
        for (int i = 0; i < 200 && !condition(); i++) await Task.Delay(25, Cancel);
        Assert.True(condition(), $"timed out waiting for {what}");
    }

    /// <summary>The watcher resumes a dropped watch from its last version, relists on 410 Gone, and backs off through errors.</summary>
    [Fact]
    public async Task Watcher_resumes_relists_on_gone_and_survives_failures()
    {
        await using var api = await ApiServerDouble.Start();
        using var client = new k8s.Kubernetes(api.ClientConfiguration());
        using var cluster = new ClusterClient(api.ClientConfiguration());
        var seen = new ConcurrentQueue<string>();
        var watcher = new ResourceWatcher(cluster, "api/v1/namespaces/ns/configmaps",
            item => [item.GetProperty("metadata").GetProperty("name").GetString()!], seen.Enqueue, NullLogger.Instance);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Cancel);
        var running = watcher.RunAsync(stop.Token);
        Task Create(string name) => client.CoreV1.CreateNamespacedConfigMapAsync(new V1ConfigMap { Metadata = new V1ObjectMeta { Name = name } }, "ns", cancellationToken: Cancel);

        await Create("a");
        await Until(() => seen.Contains("a") && api.OpenWatches == 1, "a");
        Assert.Equal(1, watcher.Lists);

        api.DropWatches();
        await Create("b"); // made while no watch is open: the resumed watch must still deliver it
        await Until(() => seen.Contains("b"), "b after a dropped watch");
        Assert.Equal(1, watcher.Lists);

        api.Compact();
        api.DropWatches(); // the resumed watch asks for a compacted version
        await Until(() => watcher.Lists == 2, "a relist after 410 Gone");
        await Create("c");
        await Until(() => seen.Contains("c"), "c after the relist");
        Assert.Equal(2, watcher.Lists);

        // Three failures in a row (the resumed watch, then two relists) before a relist succeeds: the watcher waits
        // 200, 400 and 800 ms between them, so recovery takes at least 1.4 s (a busy machine only adds to it).
        var failing = System.Diagnostics.Stopwatch.StartNew();
        api.FailNext(3);
        api.DropWatches();
        await Until(() => watcher.Lists == 3 && api.OpenWatches == 1, "recovery after failures");
        Assert.True(failing.Elapsed >= TimeSpan.FromMilliseconds(1400), $"recovered after {failing.Elapsed.TotalMilliseconds:F0} ms: no back-off");
        await Create("d");
        await Until(() => seen.Contains("d"), "d after failures");

        await stop.CancelAsync();
        await running;
    }

    [Fact]
    public async Task Queue_dedupes_keys_never_hands_one_key_to_two_workers_and_backs_off()
    {
        var queue = new WorkQueue(TimeSpan.FromMilliseconds(50), TimeSpan.FromSeconds(1));
        queue.Add("ns/a");
        queue.Add("ns/a");
        queue.Add("ns/b");
        Assert.Equal(2, queue.Count);

        string first = await queue.Take(Cancel);
        Assert.Equal("ns/a", first);
        queue.Add("ns/a"); // changed while being reconciled: comes back after Done, not to a second worker
        Assert.Equal("ns/b", await queue.Take(Cancel));
        Assert.Equal(0, queue.Count);
        queue.Done("ns/a");
        Assert.Equal("ns/a", await queue.Take(Cancel));
        queue.Done("ns/a");
        queue.Done("ns/b");

        Assert.Equal(TimeSpan.FromMilliseconds(50), queue.AddRateLimited("ns/c"));
        Assert.Equal(TimeSpan.FromMilliseconds(100), queue.AddRateLimited("ns/c"));
        Assert.Equal(TimeSpan.FromMilliseconds(200), queue.AddRateLimited("ns/c"));
        for (int i = 0; i < 10; i++) queue.AddRateLimited("ns/c");
        Assert.Equal(TimeSpan.FromSeconds(1), queue.AddRateLimited("ns/c")); // capped
        queue.Forget("ns/c");
        Assert.Equal(TimeSpan.FromMilliseconds(50), queue.AddRateLimited("ns/c"));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        Assert.Equal("ns/c", await queue.Take(timeout.Token));
    }
}
