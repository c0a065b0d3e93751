using Adaptive.ModelServer.Backend;

namespace Adaptive.Experiments.Bench;

/// <summary>
/// Pins every thread of this process to some of the CPUs it may run on, until disposed. Linux keeps the
/// affinity per thread, so each thread is set; threads started meanwhile inherit their creator's.
/// </summary>
public static class ThreadAffinity
{
    /// <summary>
    /// Pins the process to the first <paramref name="count"/> of its CPUs. Null, and nothing pinned, when
    /// it may run on no more than that anyway, or off Linux.
    /// </summary>
    public static IDisposable? PinTo(int count)
    {
        if (CpuAffinity.Allowed() is not { } allowed || allowed.Count <= count) return null;
        SetAll(allowed.Take(count));
        return new Restore(allowed);
    }

    /// <summary>How many CPUs the calling thread may run on; null off Linux.</summary>
    public static int? AllowedCpuCount() => CpuAffinity.Allowed()?.Count;

    static void SetAll(IEnumerable<int> cpus)
    {
        // A thread may end between the listing and the call; it needs no affinity then.
        foreach (var task in Directory.EnumerateDirectories("/proc/self/task"))
            if (int.TryParse(Path.GetFileName(task), out int tid)) CpuAffinity.Set(tid, cpus);
    }

    sealed class Restore(IReadOnlyList<int> cpus) : IDisposable
    {
        public void Dispose() => SetAll(cpus);
    }
}
