using System.Runtime.InteropServices;

namespace Adaptive.Experiments.Bench;

/// <summary>
/// Pins every thread of this process to some of the CPUs it may run on, until disposed. Linux keeps the
/// affinity per thread, so each thread is set; threads started meanwhile inherit their creator's.
/// </summary>
public static class ThreadAffinity
{
    const int MaskWords = 16; // 1024 CPUs

    /// <summary>
    /// Pins the process to the first <paramref name="count"/> of its CPUs. Null, and nothing pinned, when
    /// it may run on no more than that anyway, or off Linux.
    /// </summary>
    public static IDisposable? PinTo(int count)
    {
        if (Allowed() is not { } allowed) return null;
        var cpus = Cpus(allowed);
        if (cpus.Count <= count) return null;
        var pinned = new ulong[MaskWords];
        foreach (int cpu in cpus.Take(count)) pinned[cpu / 64] |= 1UL << (cpu % 64);
        SetAll(pinned);
        return new Restore(allowed);
    }

    /// <summary>How many CPUs the calling thread may run on; null off Linux.</summary>
    public static int? AllowedCpuCount() => Allowed() is { } allowed ? Cpus(allowed).Count : null;

    static ulong[]? Allowed()
    {
        if (!OperatingSystem.IsLinux()) return null;
        var mask = new ulong[MaskWords];
        return sched_getaffinity(0, MaskWords * sizeof(ulong), mask) == 0 ? mask : null;
    }

    static List<int> Cpus(ulong[] mask) =>
        [.. Enumerable.Range(0, MaskWords * 64).Where(cpu => (mask[cpu / 64] & (1UL << (cpu % 64))) != 0)];

    static void SetAll(ulong[] mask)
    {
        // A thread may end between the listing and the call; it needs no affinity then.
        foreach (var task in Directory.EnumerateDirectories("/proc/self/task"))
            if (int.TryParse(Path.GetFileName(task), out int tid)) sched_setaffinity(tid, MaskWords * sizeof(ulong), mask);
    }

    sealed class Restore(ulong[] mask) : IDisposable
    {
        public void Dispose() => SetAll(mask);
    }

    [DllImport("libc")]
    static extern int sched_getaffinity(int pid, nint size, [Out] ulong[] mask);

    [DllImport("libc")]
    static extern int sched_setaffinity(int pid, nint size, ulong[] mask);
}
