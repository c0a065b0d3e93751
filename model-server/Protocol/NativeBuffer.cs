using System.Buffers;
using System.Runtime.InteropServices;

namespace Adaptive.ModelServer.Protocol;

/// <summary>
/// Bytes in native memory, growing as they are appended and freed when disposed: a large part of a request
/// body kept while it is read goes back to the operating system as soon as it has been parsed, not whenever
/// the garbage collector next compacts.
/// </summary>
public sealed class NativeBuffer : IDisposable
{
    unsafe byte* data;
    long capacity;

    public long Length { get; private set; }

    public unsafe ReadOnlySpan<byte> Span => data is null ? [] : new(data, checked((int)Length));

    public unsafe void Append(ReadOnlySequence<byte> bytes)
    {
        long needed = Length + bytes.Length;
        if (needed > capacity)
        {
            long grown = Math.Max(Math.Max(2 * capacity, needed), 4096);
            data = (byte*)NativeMemory.Realloc(data, (nuint)grown);
            capacity = grown;
        }
        bytes.CopyTo(new Span<byte>(data + Length, checked((int)bytes.Length)));
        Length = needed;
    }

    public unsafe void Dispose()
    {
        if (data is null) return;
        NativeMemory.Free(data);
        data = null;
        capacity = Length = 0;
    }
}
