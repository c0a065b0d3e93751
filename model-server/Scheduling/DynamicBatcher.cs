using System.Diagnostics;
using Adaptive.ModelServer.Metrics;
using Adaptive.ModelServer.Protocol;

namespace Adaptive.ModelServer.Scheduling;

/// <summary>What runs a batch: one call for all the requests, one output list per request, in order.</summary>
public interface IBatchBackend
{
    IReadOnlyList<IReadOnlyList<Tensor>> Run(IReadOnlyList<InferRequest> batch);
}

/// <summary>One request's outputs and where its time went: waiting in the queue, then the backend call that ran its batch.</summary>
public sealed record BatchResult(IReadOnlyList<Tensor> Outputs, TimeSpan QueueWait, TimeSpan Inference);

/// <param name="MaxBatchSize">Most rows (the sum of the requests' first dimensions) in one backend call.</param>
/// <param name="MaxQueueDelay">Longest the oldest queued request waits for the batch to fill.</param>
/// <param name="QueueCapacity">Most requests waiting; beyond it requests are refused at once.</param>
public sealed record BatchingOptions(int MaxBatchSize, TimeSpan MaxQueueDelay, int QueueCapacity);

/// <summary>A request the batcher refuses rather than answer late; the client should retry after <see cref="RetryAfter"/>.</summary>
public sealed class RequestRejectedException(Outcome outcome, TimeSpan retryAfter, string message) : Exception(message)
{
    public Outcome Outcome { get; } = outcome;
    public TimeSpan RetryAfter { get; } = retryAfter;
}

/// <summary>
/// Dynamic batching as Triton's default scheduler does it: requests queue; one worker takes the oldest
/// and waits up to the max queue delay for more, until the batch holds the max batch size in rows; one
/// backend call runs the batch. Only requests whose inputs have the same shapes but for the batch
/// dimension share a batch (a model with another dynamic dimension takes requests of several shapes, and
/// stacking those would hand one client's rows to another); a request that cannot join the forming batch
/// keeps its place for the next one. The queue is bounded, and a request is refused at admission when the
/// work ahead of it (measured batch times) would make it miss its deadline, so latency cannot grow
/// without bound under overload. One backend call runs at a time.
/// A request that finds the batcher idle, when waiting could not make its batch bigger (no max queue
/// delay, or it fills a batch by itself), runs at once on the caller's thread: at low load that saves
/// the hand-offs to the worker and back, about 0.35 ms of a ResNet-18 request at p50 (adaptive bench server).
/// That blocks at most one thread-pool thread, since only one call runs at a time.
/// </summary>
public sealed class DynamicBatcher : IDisposable
{
    sealed record Work(InferRequest Request, long Rows, string Shapes, long EnqueuedAt, long Deadline, TaskCompletionSource<BatchResult> Completion);

    const double BatchTimeSmoothing = 0.2;

    readonly IBatchBackend backend;
    readonly BatchingOptions options;
    readonly ModelMetrics metrics;
    readonly LinkedList<Work> queue = new();
    readonly object gate = new(); // a Monitor, for Wait and Pulse
    readonly Thread worker;
    long queuedRows;
    bool completing;
    double batchSeconds;      // smoothed duration of one backend call; 0 until the first call
    long runningSince;        // timestamp of the call in progress (on the worker or a caller), 0 when idle

    public DynamicBatcher(IBatchBackend backend, BatchingOptions options, ModelMetrics metrics)
    {
        if (options.MaxBatchSize < 1) throw new ArgumentOutOfRangeException(nameof(options), "max batch size must be at least 1");
        if (options.QueueCapacity < 1) throw new ArgumentOutOfRangeException(nameof(options), "queue capacity must be at least 1");
        this.backend = backend;
        this.options = options;
        this.metrics = metrics;
        worker = new Thread(RunLoop) { IsBackground = true, Name = "batcher" };
        worker.Start();
    }

    /// <summary>
    /// Queues a validated request that must be answered within <paramref name="timeout"/>; the task
    /// completes with its outputs or fails with <see cref="RequestRejectedException"/>.
    /// </summary>
    public Task<BatchResult> Submit(InferRequest request, TimeSpan timeout)
    {
        var completion = new TaskCompletionSource<BatchResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        Work work;
        bool runHere;
        lock (gate)
        {
            if (completing) throw new ObjectDisposedException(nameof(DynamicBatcher));
            if (queue.Count >= options.QueueCapacity)
                throw new RequestRejectedException(Outcome.QueueFull, BacklogTime(), $"the queue is full ({options.QueueCapacity} requests waiting)");
            var expectedWait = ExpectedWait(request.Rows);
            if (expectedWait > timeout)
                throw new RequestRejectedException(Outcome.DeadlineUnreachable, BacklogTime(),
                    $"the request would wait about {expectedWait.TotalMilliseconds:F0} ms and miss its {timeout.TotalMilliseconds:F0} ms deadline");
            long now = Stopwatch.GetTimestamp();
            work = new Work(request, request.Rows, ShapesOf(request), now, now + (long)(timeout.TotalSeconds * Stopwatch.Frequency), completion);
            runHere = runningSince == 0 && queue.Count == 0 && (options.MaxQueueDelay == TimeSpan.Zero || request.Rows >= options.MaxBatchSize);
            if (runHere)
                runningSince = now; // claimed: the worker waits until this call is done
            else
            {
                queue.AddLast(work);
                queuedRows += request.Rows;
                metrics.QueueDepth.Set(queue.Count);
                Monitor.PulseAll(gate);
            }
        }
        if (runHere) Execute([work]);
        return completion.Task;
    }

    /// <summary>What requests that may share a batch have in common: every input's name and shape but for its first (batch) dimension.</summary>
    static string ShapesOf(InferRequest request) =>
        string.Join(';', request.Inputs.OrderBy(i => i.Name, StringComparer.Ordinal).Select(i => $"{i.Name}:{string.Join(',', i.Shape.Skip(1))}"));

    /// <summary>
    /// The wait a new request of <paramref name="rows"/> rows should expect: what is left of the call
    /// in progress, the batches ahead of it and its own, and the fill delay when its batch would not be full.
    /// </summary>
    TimeSpan ExpectedWait(long rows)
    {
        if (batchSeconds == 0) return TimeSpan.Zero; // nothing measured yet: admit
        long rowsAhead = queuedRows + rows;
        long batches = (rowsAhead + options.MaxBatchSize - 1) / options.MaxBatchSize;
        double seconds = RunningRemainder() + batches * batchSeconds;
        if (rowsAhead < options.MaxBatchSize) seconds += options.MaxQueueDelay.TotalSeconds;
        return TimeSpan.FromSeconds(seconds);
    }

    /// <summary>How long the work already admitted should take to clear: the hint for Retry-After.</summary>
    TimeSpan BacklogTime()
    {
        long batches = (queuedRows + options.MaxBatchSize - 1) / options.MaxBatchSize;
        return TimeSpan.FromSeconds(RunningRemainder() + batches * batchSeconds);
    }

    /// <summary>The queued rows that could share a batch with <paramref name="oldest"/>.</summary>
    long RowsLike(Work oldest)
    {
        long rows = 0;
        foreach (var work in queue)
            if (work.Shapes == oldest.Shapes) rows += work.Rows;
        return rows;
    }

    double RunningRemainder() =>
        runningSince == 0 ? 0 : Math.Max(0, batchSeconds - Stopwatch.GetElapsedTime(runningSince).TotalSeconds);

    void RunLoop()
    {
        while (TakeBatch() is { } batch) Execute(batch);
    }

    /// <summary>
    /// Blocks until a batch is ready (full, or its oldest request has waited the max queue delay) and no
    /// call runs on a caller's thread. Null once completed and empty.
    /// </summary>
    List<Work>? TakeBatch()
    {
        lock (gate)
        {
            while (queue.Count == 0 || runningSince != 0)
            {
                if (completing && queue.Count == 0) return null;
                Monitor.Wait(gate);
            }
            var oldest = queue.First!.Value;
            long windowEnd = oldest.EnqueuedAt + (long)(options.MaxQueueDelay.TotalSeconds * Stopwatch.Frequency);
            while (RowsLike(oldest) < options.MaxBatchSize && !completing)
            {
                long remaining = windowEnd - Stopwatch.GetTimestamp();
                if (remaining <= 0) break;
                Monitor.Wait(gate, TimeSpan.FromSeconds((double)remaining / Stopwatch.Frequency));
            }
            var batch = new List<Work>();
            long rows = 0;
            for (var node = queue.First; node is not null;)
            {
                var next = node.Next;
                var work = node.Value;
                if (batch.Count == 0 || (work.Shapes == oldest.Shapes && rows + work.Rows <= options.MaxBatchSize))
                {
                    queue.Remove(node);
                    rows += work.Rows;
                    queuedRows -= work.Rows;
                    batch.Add(work);
                    if (rows >= options.MaxBatchSize) break;
                }
                node = next;
            }
            metrics.QueueDepth.Set(queue.Count);
            runningSince = Stopwatch.GetTimestamp();
            return batch;
        }
    }

    void Execute(List<Work> batch)
    {
        long now = Stopwatch.GetTimestamp();
        var live = new List<Work>(batch.Count);
        foreach (var work in batch)
        {
            metrics.QueueWait.Observe(Stopwatch.GetElapsedTime(work.EnqueuedAt).TotalSeconds);
            if (now > work.Deadline)
                work.Completion.TrySetException(new RequestRejectedException(Outcome.Timeout, TimeSpan.FromSeconds(batchSeconds), "the request's deadline passed while it was queued"));
            else
                live.Add(work);
        }
        if (live.Count > 0)
        {
            long started = Stopwatch.GetTimestamp();
            try
            {
                var outputs = backend.Run([.. live.Select(w => w.Request)]);
                var inference = Stopwatch.GetElapsedTime(started);
                double seconds = inference.TotalSeconds;
                metrics.InferenceDuration.Observe(seconds);
                metrics.BatchSize.Observe(live.Sum(w => w.Rows));
                lock (gate) batchSeconds = batchSeconds == 0 ? seconds : batchSeconds + BatchTimeSmoothing * (seconds - batchSeconds);
                for (int i = 0; i < live.Count; i++)
                    live[i].Completion.TrySetResult(new BatchResult(outputs[i], Stopwatch.GetElapsedTime(live[i].EnqueuedAt, started), inference));
            }
            catch (Exception e)
            {
                foreach (var work in live) work.Completion.TrySetException(e);
            }
        }
        lock (gate)
        {
            runningSince = 0;
            // Only the worker with queued work, or Dispose, waits for this call to end: an idle worker sleeps on.
            if (queue.Count > 0 || completing) Monitor.PulseAll(gate);
        }
    }

    /// <summary>Stops admitting, runs everything already queued, and waits for the worker and any call on a caller's thread to finish.</summary>
    public void Dispose()
    {
        lock (gate)
        {
            completing = true;
            Monitor.PulseAll(gate);
        }
        worker.Join();
        lock (gate)
            while (runningSince != 0) Monitor.Wait(gate);
    }
}
