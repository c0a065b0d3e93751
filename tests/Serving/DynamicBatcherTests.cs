using System.Diagnostics;
using Adaptive.ModelServer.Metrics;
using Adaptive.ModelServer.Protocol;
using Adaptive.ModelServer.Scheduling;

namespace Adaptive.Tests.Serving;

/// <summary>The batcher's scheduling, against a backend that records its calls instead of running a model.</summary>
public sealed class DynamicBatcherTests
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    /// <summary>Echoes each request's input back as its output; records each call's rows, thread and overlap.</summary>
    sealed class RecordingBackend(TimeSpan callTime) : IBatchBackend
    {
        int running;
        public int MostAtOnce;
        public int Finished;
        public readonly List<(long Rows, int Thread)> Calls = [];

        public IReadOnlyList<IReadOnlyList<Tensor>> Run(IReadOnlyList<InferRequest> batch)
        {
            int now = Interlocked.Increment(ref running);
            lock (Calls)
            {
                MostAtOnce = Math.Max(MostAtOnce, now);
                Calls.Add((batch.Sum(r => r.Rows), Environment.CurrentManagedThreadId));
            }
            Thread.Sleep(callTime);
            Interlocked.Decrement(ref running);
            Interlocked.Increment(ref Finished);
            return [.. batch.Select(r => (IReadOnlyList<Tensor>)[r.Inputs[0] with { Name = "echo" }])];
        }
    }

    static DynamicBatcher Batcher(IBatchBackend backend, int maxBatch, TimeSpan maxQueueDelay) =>
        new(backend, new BatchingOptions(maxBatch, maxQueueDelay, QueueCapacity: 1000), new ModelMetrics(Prometheus.Metrics.NewCustomRegistry(), "m", "v"));

    static InferRequest Request(int rows, float value) =>
        new(null, [new Tensor("x", TensorDataType.Fp32, [rows, 1], Enumerable.Repeat(value, rows).ToArray())], null);

    /// <summary>
    /// With nothing running and no fill window to wait for, a request runs at once on the caller's thread
    /// (its task is complete when Submit returns); with a window it could fill, it waits for the worker.
    /// </summary>
    [Fact]
    public async Task An_idle_batcher_runs_a_request_on_the_callers_thread_only_when_waiting_could_not_fill_its_batch()
    {
        var backend = new RecordingBackend(TimeSpan.Zero);
        using (var noDelay = Batcher(backend, maxBatch: 4, TimeSpan.Zero))
        {
            var task = noDelay.Submit(Request(1, 1), Timeout);
            Assert.True(task.IsCompletedSuccessfully);
            Assert.Equal(Environment.CurrentManagedThreadId, backend.Calls.Single().Thread);
            Assert.Equal(1, (await task).Outputs[0].Rows);
        }

        backend.Calls.Clear();
        // A long window, so that a loaded machine cannot make the lone request finish before the assertion.
        using var withDelay = Batcher(backend, maxBatch: 4, TimeSpan.FromMilliseconds(500));
        var full = withDelay.Submit(Request(4, 1), Timeout); // fills a batch by itself: nothing to wait for
        Assert.True(full.IsCompletedSuccessfully);
        var watch = Stopwatch.StartNew();
        var lone = withDelay.Submit(Request(1, 1), Timeout);
        Assert.False(lone.IsCompleted);
        Assert.Equal(1, (await lone).Outputs[0].Rows);
        Assert.InRange(watch.ElapsedMilliseconds, 450, 10_000);
        Assert.NotEqual(Environment.CurrentManagedThreadId, backend.Calls[^1].Thread);
    }

    /// <summary>
    /// Many callers at once, some on the caller's-thread path, some queued: one backend call at a time, no
    /// batch over the max, and every request gets back its own rows.
    /// </summary>
    [Theory]
    [InlineData(0)]
    [InlineData(2)]
    public async Task Calls_never_overlap_batches_never_exceed_the_max_and_each_request_gets_its_own_rows(int maxQueueDelayMs)
    {
        var backend = new RecordingBackend(TimeSpan.FromMilliseconds(1));
        using var batcher = Batcher(backend, maxBatch: 4, TimeSpan.FromMilliseconds(maxQueueDelayMs));
        var random = new Random(7);
        var requests = Enumerable.Range(0, 300).Select(i => Request(1 + random.Next(3), i)).ToList();
        var results = await Task.WhenAll(requests.Select((request, i) => Task.Run(async () =>
        {
            await Task.Delay(i % 20, TestContext.Current.CancellationToken);
            return await batcher.Submit(request, Timeout);
        })));

        Assert.Equal(1, backend.MostAtOnce);
        Assert.All(backend.Calls, call => Assert.InRange(call.Rows, 1, 4));
        Assert.Equal(requests.Sum(r => r.Rows), backend.Calls.Sum(c => c.Rows));
        for (int i = 0; i < requests.Count; i++)
        {
            Assert.Equal(requests[i].Inputs[0].Data, results[i].Outputs[0].Data);
            Assert.True(results[i].Inference > TimeSpan.Zero && results[i].QueueWait >= TimeSpan.Zero);
        }
        Assert.Contains(backend.Calls, c => c.Rows > 1); // the queued path still batched
    }

    /// <summary>Dispose waits for a call running on a caller's thread, so the backend can be released after it.</summary>
    [Fact]
    public void Dispose_waits_for_a_call_on_a_callers_thread()
    {
        var backend = new RecordingBackend(TimeSpan.FromMilliseconds(300));
        var batcher = Batcher(backend, maxBatch: 1, TimeSpan.Zero);
        Task<BatchResult>? result = null;
        var caller = new Thread(() => result = batcher.Submit(Request(1, 1), Timeout));
        caller.Start();
        while (Volatile.Read(ref backend.MostAtOnce) == 0) Thread.Sleep(5);
        batcher.Dispose();
        Assert.Equal(1, Volatile.Read(ref backend.Finished));
        caller.Join();
        Assert.True(result!.IsCompletedSuccessfully);
    }
}
