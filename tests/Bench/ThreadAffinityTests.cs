using Adaptive.Experiments.Bench;

namespace Adaptive.Tests.Bench;

public sealed class ThreadAffinityTests
{
    /// <summary>The CPUs each thread of this process may run on, from /proc.</summary>
    static List<string> ThreadCpuLists() =>
        [.. Directory.EnumerateDirectories("/proc/self/task")
            .Select(task => File.Exists(Path.Combine(task, "status")) ? File.ReadLines(Path.Combine(task, "status")).FirstOrDefault(l => l.StartsWith("Cpus_allowed_list:", StringComparison.Ordinal)) : null)
            .OfType<string>()
            .Select(line => line["Cpus_allowed_list:".Length..].Trim())];

    /// <summary>
    /// Every thread, including one started while pinned, runs on one CPU until disposal, then where it
    /// ran before. (The whole test process is pinned for a few milliseconds.)
    /// </summary>
    [Fact]
    public void Pinning_covers_every_thread_and_is_undone()
    {
        if (!OperatingSystem.IsLinux()) Assert.Skip("CPU affinity per thread is Linux's");
        if (ThreadAffinity.AllowedCpuCount() is not > 1) Assert.Skip("this machine lets the process run on one CPU only: nothing to pin");
        var before = ThreadCpuLists().Distinct().ToList();

        using (var pinned = ThreadAffinity.PinTo(1))
        {
            Assert.NotNull(pinned);
            using var listed = new ManualResetEventSlim();
            var started = new Thread(() => listed.Wait());
            started.Start();
            var lists = ThreadCpuLists();
            Assert.True(lists.Count > 2, "the process has several threads");
            Assert.All(lists, list => Assert.Matches(@"^\d+$", list));
            listed.Set();
            started.Join();
            Assert.Single(lists.Distinct());
        }
        Assert.Equal(before, ThreadCpuLists().Distinct().ToList());
        Assert.Null(ThreadAffinity.PinTo(ThreadAffinity.AllowedCpuCount()!.Value));
    }
}
