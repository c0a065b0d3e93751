using System.Text.Json;
using Adaptive.ModelServer.Hosting;

namespace Adaptive.Tests.Serving;

public sealed class LargeBlockMemoryPoolTests
{
    [Fact]
    public void Blocks_are_64_KB_reused_and_kept_only_up_to_the_bound()
    {
        var pool = new LargeBlockMemoryPool();
        var first = pool.Rent(100);
        Assert.Equal(LargeBlockMemoryPool.BlockSize, first.Memory.Length);
        var memory = first.Memory;
        first.Dispose();
        Assert.Equal(1, pool.RetainedBlocks);
        var again = pool.Rent();
        Assert.True(again.Memory.Span == memory.Span, "a returned block is handed out again");
        Assert.Equal(0, pool.RetainedBlocks);

        var many = Enumerable.Range(0, LargeBlockMemoryPool.MaxRetainedBlocks + 10).Select(_ => pool.Rent()).ToList();
        many.ForEach(b => b.Dispose());
        Assert.Equal(LargeBlockMemoryPool.MaxRetainedBlocks, pool.RetainedBlocks);
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Rent(LargeBlockMemoryPool.BlockSize + 1));
    }

    /// <summary>
    /// The server process runs with workstation GC and keeps 600 KB image arrays off the large object heap
    /// (see model-server/ServerGc.props).
    /// </summary>
    [Fact]
    public void The_server_runs_with_its_gc_settings()
    {
        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "adaptive-server.runtimeconfig.json")));
        var properties = config.RootElement.GetProperty("runtimeOptions").GetProperty("configProperties");
        Assert.False(properties.GetProperty("System.GC.Server").GetBoolean());
        Assert.True(properties.GetProperty("System.GC.LOHThreshold").GetInt32() >= 1 << 20);
    }
}
