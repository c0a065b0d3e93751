using System.Globalization;

namespace Adaptive.ModelServer.Backend;

/// <summary>
/// One CPU for each ONNX Runtime thread of a replica that has CPUs of its own: the thread that calls
/// <c>Run</c> on the first, each intra-op worker on one of the others.
/// Why: on our 2-vCPU VM, after 15 ms idle the kernel woke a worker on the vCPU of the thread that woke
/// it 70–80 % of the time, while the other vCPU was idle, and there the worker waited up to a 4 ms tick
/// (docs/benchmarks/server-notes.md). An idle replica's <c>Run</c> then ran partly on one thread.
/// Only for exclusive CPUs (a Guaranteed pod with whole CPUs under the kubelet's static CPU manager
/// policy): on CPUs shared with other pods, pinning would crowd every replica onto the same few.
/// </summary>
public sealed class ThreadPinning
{
    public int CallerCpu { get; }
    public IReadOnlyList<int> WorkerCpus { get; }

    ThreadPinning(int callerCpu, IReadOnlyList<int> workerCpus)
    {
        CallerCpu = callerCpu;
        WorkerCpus = workerCpus;
    }

    /// <summary>
    /// ONNX Runtime's <c>session.intra_op_thread_affinities</c>: one entry per worker (it does not pin
    /// the calling thread), separated by ';', each a 1-based logical processor number. Null with no workers.
    /// </summary>
    public string? WorkerAffinities => WorkerCpus.Count == 0 ? null
        : string.Join(';', WorkerCpus.Select(cpu => (cpu + 1).ToString(CultureInfo.InvariantCulture)));

    /// <summary>
    /// Where <paramref name="threads"/> intra-op threads go, given the CPUs this process may run on and how
    /// many it may use (its CPU limit). Null, with the reason, when the CPUs are not its own or too few.
    /// </summary>
    public static ThreadPinning? Plan(int threads, IReadOnlyList<int>? allowedCpus, int usableCpus, out string? whyNot)
    {
        whyNot = null;
        if (allowedCpus is null)
            whyNot = "pinning threads to CPUs is supported on Linux only";
        else if (allowedCpus.Count > usableCpus)
            whyNot = $"this process may run on {allowedCpus.Count} CPUs but use only {usableCpus} (its CPU limit), so it shares them with others; "
                + "pinning needs CPUs of its own (a Guaranteed pod with whole CPUs under the kubelet's static CPU manager policy)";
        else if (threads > allowedCpus.Count)
            whyNot = $"{threads} intra-op threads need {threads} CPUs, and this process has {allowedCpus.Count}";
        return whyNot is null ? new ThreadPinning(allowedCpus![0], [.. allowedCpus.Skip(1).Take(threads - 1)]) : null;
    }

    /// <summary>Runs <paramref name="call"/> with the calling thread on <see cref="CallerCpu"/>, then lets it run where it could before.</summary>
    public T Run<T>(Func<T> call)
    {
        var before = CpuAffinity.Allowed()!;
        CpuAffinity.Set(0, [CallerCpu]);
        try
        {
            return call();
        }
        finally
        {
            CpuAffinity.Set(0, before);
        }
    }
}
