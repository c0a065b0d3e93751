using System.IO.Pipelines;

namespace Adaptive.ModelServer.Hosting;

/// <summary>
/// The bytes of all request bodies being read at once, bounded: a request takes its share (its
/// Content-Length, or the most it may send) before reading, and gives it back once its body is parsed.
/// A request that finds no room is refused at once rather than queued, so that a few large bodies cannot
/// take the memory of a pod.
/// </summary>
public sealed class BodyBudget(long totalBytes)
{
    long used;

    public long TotalBytes => totalBytes;

    /// <summary>Takes <paramref name="bytes"/> of the budget until the returned handle is disposed; null when they do not fit.</summary>
    public IDisposable? TryTake(long bytes)
    {
        while (true)
        {
            long now = Volatile.Read(ref used);
            if (now + bytes > totalBytes && now > 0) return null; // one body larger than the budget still gets it alone
            if (Interlocked.CompareExchange(ref used, now + bytes, now) == now) return new Share(this, bytes);
        }
    }

    sealed class Share(BodyBudget budget, long bytes) : IDisposable
    {
        int disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref disposed, 1) == 0) Interlocked.Add(ref budget.used, -bytes);
        }
    }
}

public static class PipeReads
{
    /// <summary>
    /// Reads from a request body until <paramref name="deadline"/>: a deadline that passes cancels the pending
    /// read through the pipe (then OperationCanceledException), which leaves the body in a state Kestrel can
    /// still close cleanly, where cancelling through a token mid-read does not.
    /// </summary>
    public static async ValueTask<ReadResult> ReadWithinAsync(this PipeReader pipe, CancellationToken deadline)
    {
        using var stop = deadline.Register(pipe.CancelPendingRead);
        while (true)
        {
            var read = await pipe.ReadAsync(CancellationToken.None);
            if (!read.IsCanceled) return read;
            pipe.AdvanceTo(read.Buffer.Start);
            deadline.ThrowIfCancellationRequested();
        }
    }
}
