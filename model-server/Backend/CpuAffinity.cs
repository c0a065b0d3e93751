using System.Runtime.InteropServices;

namespace Adaptive.ModelServer.Backend;

/// <summary>
/// The CPUs a thread may run on (Linux's affinity masks, kept per thread; a new thread inherits its
/// creator's). Off Linux there is nothing to read or set: <see cref="Allowed"/> is null.
/// </summary>
public static class CpuAffinity
{
    const int MaskWords = 16; // 1024 CPUs

    /// <summary>The CPUs the calling thread may run on, in ascending order; null off Linux.</summary>
    public static IReadOnlyList<int>? Allowed()
    {
        if (!OperatingSystem.IsLinux()) return null;
        var mask = new ulong[MaskWords];
        if (sched_getaffinity(0, MaskWords * sizeof(ulong), mask) != 0) return null;
        var cpus = new List<int>();
        for (int word = 0; word < MaskWords; word++)
            for (ulong bits = mask[word]; bits != 0; bits &= bits - 1) // the lowest set bit, then the next
                cpus.Add(word * 64 + System.Numerics.BitOperations.TrailingZeroCount(bits));
        return cpus;
    }

    /// <summary>Lets thread <paramref name="threadId"/> (0: the calling thread) run only on <paramref name="cpus"/>.</summary>
    public static void Set(int threadId, IEnumerable<int> cpus)
    {
        var mask = new ulong[MaskWords];
        foreach (int cpu in cpus) mask[cpu / 64] |= 1UL << (cpu % 64);
        if (sched_setaffinity(threadId, MaskWords * sizeof(ulong), mask) != 0 && threadId == 0)
            throw new InvalidOperationException($"could not set this thread's CPUs to {string.Join(",", cpus)} (errno {Marshal.GetLastPInvokeError()})");
    }

    [DllImport("libc", SetLastError = true)]
    static extern int sched_getaffinity(int pid, nint size, [Out] ulong[] mask);

    [DllImport("libc", SetLastError = true)]
    static extern int sched_setaffinity(int pid, nint size, ulong[] mask);
}
