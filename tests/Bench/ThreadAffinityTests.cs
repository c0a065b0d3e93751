using Adaptive.Experiments.Bench;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Bench;

public sealed class ThreadAffinityTests
{
    /// <summary>
    /// Every thread, including one started while pinned, runs on one CPU until disposal, then where it
    /// ran before. (The whole test process is pinned for a few milliseconds.)
    /// </summary>
    [Fact]
    public void Pinning_covers_every_thread_and_is_undone()
    {
        if (!OperatingSystem.IsLinux()) Assert.Skip("CPU affinity per thread is Linux's");
        if (ThreadAffinity.AllowedCpuCount() is not > 1) Assert.Skip("this machine lets the process run on one CPU only: nothing to pin");
        var before = ThreadCpuLists.OfThisProcess().Distinct().ToList();

        using (var pinned = ThreadAffinity.PinTo(1))
        {
            Assert.NotNull(pinned);
            using var listed = new ManualResetEventSlim();
            var started = new Thread(() => listed.Wait());
            started.Start();
            var lists = ThreadCpuLists.OfThisProcess();
            Assert.True(lists.Count > 2, "the process has several threads");
            Assert.All(lists, list => Assert.Matches(@"^\d+$", list));
            listed.Set();
            started.Join();
            Assert.Single(lists.Distinct());
        }
        Assert.Equal(before, ThreadCpuLists.OfThisProcess().Distinct().ToList());
        Assert.Null(ThreadAffinity.PinTo(ThreadAffinity.AllowedCpuCount()!.Value));
    }
}
