using System.Buffers;
using System.Collections.Concurrent;
using Microsoft.AspNetCore.Connections;

namespace Adaptive.ModelServer.Hosting;

/// <summary>
/// Kestrel's socket and pipe buffers in 64 KB blocks instead of its default 4 KB. Kestrel reads a
/// socket into one block at a time, so a 600 KB image tensor arrives in about 10 reads and pipe hand-offs
/// instead of 150; on loopback that took reading and parsing a 224×224 ResNet-18 request from 0.8–1.1 ms
/// to 0.3–0.6 ms at p50 (<c>adaptive bench server</c>, "HTTP + parse").
/// Blocks are pinned, because Kestrel hands them to the socket, and reused. At most
/// <see cref="MaxRetainedBlocks"/> free blocks are kept; blocks returned beyond that go to the GC.
/// </summary>
public sealed class LargeBlockMemoryPool : MemoryPool<byte>
{
    public const int BlockSize = 64 * 1024;
    /// <summary>8 MB: a few connections' worth of full request buffers (Kestrel pauses a connection at 1 MB buffered).</summary>
    public const int MaxRetainedBlocks = 128;

    readonly ConcurrentQueue<Block> free = new();
    int retained;

    public override int MaxBufferSize => BlockSize;

    /// <summary>How many free blocks wait for reuse.</summary>
    public int RetainedBlocks => Volatile.Read(ref retained);

    public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(minBufferSize, BlockSize);
        if (free.TryDequeue(out var block))
        {
            Interlocked.Decrement(ref retained);
            return block;
        }
        return new Block(this);
    }

    void Return(Block block)
    {
        if (Interlocked.Increment(ref retained) <= MaxRetainedBlocks) free.Enqueue(block);
        else Interlocked.Decrement(ref retained);
    }

    /// <summary>Kestrel disposes the pools it created when it stops; the free blocks simply go to the GC with this pool.</summary>
    protected override void Dispose(bool disposing) { }

    sealed class Block(LargeBlockMemoryPool pool) : IMemoryOwner<byte>
    {
        readonly byte[] array = GC.AllocateUninitializedArray<byte>(BlockSize, pinned: true);

        public Memory<byte> Memory => array;

        public void Dispose() => pool.Return(this);
    }
}

/// <summary>
/// Gives Kestrel's socket transport <see cref="LargeBlockMemoryPool"/>: in .NET 10 the transport takes its
/// pools from the <see cref="IMemoryPoolFactory{T}"/> service. Every pool it asks for is the same one, so
/// the retention bound holds for the whole process, however many I/O queues the transport has.
/// </summary>
public sealed class LargeBlockMemoryPoolFactory : IMemoryPoolFactory<byte>
{
    public LargeBlockMemoryPool Pool { get; } = new();

    public MemoryPool<byte> Create(MemoryPoolOptions? options = null) => Pool;
}
