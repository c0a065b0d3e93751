using System.IO.Compression;
using System.Security.Cryptography;
using Adaptive.Core.Workloads;
using Adaptive.Experiments.Workloads;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Workloads;

public sealed class WorkloadTests
{
    static readonly Lazy<int[]> Trace = new(() => TwitterTrace.Load(TwitterTrace.DefaultPath));

    [Fact]
    public void The_shipped_trace_is_the_published_one()
    {
        using (var gzip = new GZipStream(File.OpenRead(TwitterTrace.DefaultPath), CompressionMode.Decompress))
            Assert.Equal("2285592cbc653db1e495f4587edd38af43915b4724cc83ee4c3d13346e1e6055", Convert.ToHexStringLower(SHA256.HashData(gzip)));
        var trace = Trace.Value;
        Assert.Equal(1_899_061, trace.Length);
        Assert.Equal(0, trace.Min());
        Assert.Equal(388, trace.Max());
        Assert.Equal(63.6, trace.Average(), 1);
    }

    [Fact]
    public void The_ipa_window_is_twenty_minutes_divided_by_eight()
    {
        var window = WorkloadPatterns.Window(Trace.Value, WorkloadPatterns.IpaWindowStart, WorkloadPatterns.IpaWindowSeconds, WorkloadPatterns.IpaDamping);
        Assert.Equal(1200, window.Seconds);
        Assert.Equal(Trace.Value[WorkloadPatterns.IpaWindowStart] / 8.0, window.RatePerSecond[0]);
        Assert.Equal(Trace.Value[WorkloadPatterns.IpaWindowStart + 1199] / 8.0, window.RatePerSecond[^1]);
        Assert.Contains("twitter[1301160+1200]/8", window.Name);
        Assert.Throws<ArgumentOutOfRangeException>(() => WorkloadPatterns.Window(Trace.Value, 1_899_000, 1200, 8));
        Assert.Throws<ArgumentOutOfRangeException>(() => WorkloadPatterns.Window(Trace.Value, 0, 10, 0));
    }

    [Fact]
    public void Synthetic_patterns_have_their_shape_and_repeat_with_their_seed()
    {
        Assert.All(WorkloadPatterns.Steady(20, 60).RatePerSecond, r => Assert.Equal(20, r));

        var fluctuating = WorkloadPatterns.Fluctuating(50, 20, 120, 1200, seed: 3);
        Assert.InRange(fluctuating.Mean, 45, 55);
        Assert.InRange(fluctuating.Peak, 65, 77);
        Assert.Equal(fluctuating.RatePerSecond, WorkloadPatterns.Fluctuating(50, 20, 120, 1200, seed: 3).RatePerSecond);
        Assert.NotEqual(fluctuating.RatePerSecond, WorkloadPatterns.Fluctuating(50, 20, 120, 1200, seed: 4).RatePerSecond);

        var bursty = WorkloadPatterns.Bursty(10, 60, 0.01, 1200, seed: 1);
        Assert.Equal([10.0, 60.0], bursty.RatePerSecond.Distinct().Order());
        Assert.InRange(bursty.RatePerSecond.Count(r => r == 60), 60, 400);

        var spike = WorkloadPatterns.Spike(10, 80, 300, 60, 1200);
        Assert.Equal(60, spike.RatePerSecond.Count(r => r == 80));
        Assert.Equal(80, spike.RatePerSecond[300]);
        Assert.Equal(10, spike.RatePerSecond[360]);

        Assert.Throws<ArgumentOutOfRangeException>(() => WorkloadPatterns.Steady(-1, 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => WorkloadPatterns.Steady(1, 0));
    }

    [Fact]
    public void A_missing_or_corrupt_trace_is_reported_by_path()
    {
        Assert.Contains("does not exist", Assert.Throws<FileNotFoundException>(() => TwitterTrace.Load("/nonexistent/trace.gz")).Message);
        string bad = Path.Combine(Directory.CreateTempSubdirectory("adaptive-trace-").FullName, "bad.txt.gz");
        using (var gzip = new StreamWriter(new GZipStream(File.Create(bad), CompressionLevel.Fastest))) gzip.Write("1 2 x 3");
        Assert.Contains("'x' after 2 counts", Assert.Throws<InvalidDataException>(() => TwitterTrace.Load(bad)).Message);
        Directory.Delete(Path.GetDirectoryName(bad)!, recursive: true);
    }
}
