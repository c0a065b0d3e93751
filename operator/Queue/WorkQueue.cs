namespace Adaptive.Operator.Queue;

/// <summary>
/// The controller's work queue, as client-go's: keys, not events (a key queued twice is reconciled once);
/// a key being reconciled is never handed to a second worker, and one added meanwhile comes back after;
/// failed keys return with per-key exponential backoff; keys can be scheduled for later (the next
/// adaptation). Bounded by the number of distinct keys, one per pipeline.
/// </summary>
public sealed class WorkQueue(TimeSpan baseDelay, TimeSpan maxDelay, TimeProvider? clock = null)
{
    readonly TimeProvider time = clock ?? TimeProvider.System;
    readonly Lock gate = new();
    readonly LinkedList<string> ready = new();
    readonly HashSet<string> queued = [];
    readonly HashSet<string> processing = [];
    readonly HashSet<string> dirty = [];
    readonly Dictionary<string, int> failures = [];
    readonly Dictionary<string, ITimer> scheduled = [];
    readonly SemaphoreSlim available = new(0);

    public int Count
    {
        get { lock (gate) return ready.Count; }
    }

    public void Add(string key)
    {
        lock (gate)
        {
            if (processing.Contains(key))
            {
                dirty.Add(key);
                return;
            }
            if (!queued.Add(key)) return;
            ready.AddLast(key);
        }
        available.Release();
    }

    /// <summary>Adds the key after <paramref name="delay"/>; an earlier schedule for the same key is replaced.</summary>
    public void AddAfter(string key, TimeSpan delay)
    {
        if (delay <= TimeSpan.Zero)
        {
            Add(key);
            return;
        }
        lock (gate)
        {
            if (scheduled.Remove(key, out var previous)) previous.Dispose();
            scheduled[key] = time.CreateTimer(_ =>
            {
                lock (gate) scheduled.Remove(key);
                Add(key);
            }, null, delay, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>Re-adds a key whose reconcile failed, after base·2^failures (capped).</summary>
    public TimeSpan AddRateLimited(string key)
    {
        TimeSpan delay;
        lock (gate)
        {
            int count = failures.GetValueOrDefault(key);
            failures[key] = count + 1;
            delay = TimeSpan.FromTicks(Math.Min(maxDelay.Ticks, baseDelay.Ticks * (1L << Math.Min(count, 30))));
        }
        AddAfter(key, delay);
        return delay;
    }

    /// <summary>The key succeeded: its backoff starts over.</summary>
    public void Forget(string key)
    {
        lock (gate) failures.Remove(key);
    }

    /// <summary>Waits for a key; the caller must call <see cref="Done"/> with it.</summary>
    public async Task<string> Take(CancellationToken cancellation)
    {
        while (true)
        {
            await available.WaitAsync(cancellation);
            lock (gate)
            {
                if (ready.First is not { } first) continue;
                ready.RemoveFirst();
                queued.Remove(first.Value);
                processing.Add(first.Value);
                return first.Value;
            }
        }
    }

    public void Done(string key)
    {
        bool again;
        lock (gate)
        {
            processing.Remove(key);
            again = dirty.Remove(key);
        }
        if (again) Add(key);
    }
}
