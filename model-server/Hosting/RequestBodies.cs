using System.IO.Pipelines;
using System.Runtime.InteropServices;

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

/// <summary>
/// A request body in native memory, freed when disposed: a large JSON body's pages go back to the operating
/// system as soon as it has been parsed, not whenever the garbage collector next compacts.
/// </summary>
public sealed class NativeBody : IDisposable
{
    unsafe byte* data;
    long capacity;

    public long Length { get; private set; }

    unsafe NativeBody(long capacity)
    {
        data = (byte*)NativeMemory.Alloc((nuint)Math.Max(1, capacity));
        this.capacity = capacity;
    }

    public unsafe ReadOnlySpan<byte> Span => new(data, checked((int)Length));

    /// <summary>
    /// Reads the rest of the body from <paramref name="pipe"/>; more than <paramref name="limit"/> bytes is a
    /// <see cref="TooLargeException"/>. <paramref name="expected"/> (the Content-Length) sizes the buffer once.
    /// </summary>
    public static async Task<NativeBody> ReadAsync(PipeReader pipe, long? expected, long limit, CancellationToken cancel)
    {
        var body = new NativeBody(Math.Min(expected ?? 64 * 1024, limit));
        try
        {
            while (true)
            {
                var read = await pipe.ReadWithinAsync(cancel);
                foreach (var segment in read.Buffer) body.Append(segment.Span, limit);
                pipe.AdvanceTo(read.Buffer.End);
                if (read.IsCompleted) return body;
            }
        }
        catch
        {
            body.Dispose();
            throw;
        }
    }

    unsafe void Append(ReadOnlySpan<byte> bytes, long limit)
    {
        long needed = Length + bytes.Length;
        if (needed > limit) throw new TooLargeException(limit);
        if (needed > capacity)
        {
            long grown = Math.Min(limit, Math.Max(2 * capacity, needed));
            data = (byte*)NativeMemory.Realloc(data, (nuint)grown);
            capacity = grown;
        }
        bytes.CopyTo(new Span<byte>(data + Length, bytes.Length));
        Length = needed;
    }

    public unsafe void Dispose()
    {
        if (data is null) return;
        NativeMemory.Free(data);
        data = null;
    }

    /// <summary>The body went past its limit.</summary>
    public sealed class TooLargeException(long limit) : Exception($"the request body is larger than the {limit}-byte limit");
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
