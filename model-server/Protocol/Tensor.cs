namespace Adaptive.ModelServer.Protocol;

/// <summary>
/// A named tensor: row-major data in a typed array (float[], double[], int[] or long[]) whose length is
/// the product of the shape. The first dimension is the batch dimension.
/// </summary>
public sealed record Tensor(string Name, TensorDataType DataType, long[] Shape, Array Data)
{
    public long Rows => Shape.Length == 0 ? 1 : Shape[0];

    public static long ElementCount(IReadOnlyList<long> shape)
    {
        long count = 1;
        foreach (long dim in shape) count = checked(count * dim);
        return count;
    }

    public static string FormatShape(IEnumerable<long> shape) => $"[{string.Join(",", shape)}]";

    /// <summary>The tensor's elements as raw little-endian bytes, as the binary data extension carries them; writable, to fill it from them. Not for BYTES.</summary>
    public Span<byte> Bytes => BytesOf(Data);

    /// <summary>The bytes the binary data extension carries for the tensor: its raw elements, or for BYTES each element's length and bytes.</summary>
    public ReadOnlySpan<byte> BinaryData()
    {
        if (DataType.HasFixedSize()) return Bytes;
        var elements = (byte[][])Data;
        var encoded = new byte[BytesElements.EncodedLength(elements)];
        BytesElements.Encode(elements, encoded);
        return encoded;
    }

    /// <summary>The bytes of an array of a primitive type.</summary>
    public static Span<byte> BytesOf(Array data) => System.Runtime.InteropServices.MemoryMarshal.CreateSpan(
        ref System.Runtime.InteropServices.MemoryMarshal.GetArrayDataReference(data), Buffer.ByteLength(data));
}

/// <summary>A model input or output as the model declares it; -1 marks a dynamic dimension.</summary>
public sealed record TensorSpec(string Name, TensorDataType DataType, long[] Shape);

/// <summary>An output the client asks for; <paramref name="Binary"/> overrides the request's binary_data_output.</summary>
public sealed record RequestedOutput(string Name, bool? Binary);

/// <summary>
/// An inference request: inputs, the outputs the client wants (all when null), and whether outputs
/// should come back as raw bytes (the binary tensor data extension) rather than JSON numbers.
/// </summary>
public sealed record InferRequest(string? Id, IReadOnlyList<Tensor> Inputs, IReadOnlyList<RequestedOutput>? RequestedOutputs, bool BinaryDataOutput = false)
{
    public long Rows => Inputs.Count == 0 ? 0 : Inputs[0].Rows;
}

/// <summary>Why a request is refused, whatever the transport: the REST and gRPC front ends each map it to their own status.</summary>
public enum ErrorKind
{
    /// <summary>Malformed, or not what the model takes (400, INVALID_ARGUMENT).</summary>
    InvalidArgument,
    /// <summary>No such model or version (404, NOT_FOUND).</summary>
    NotFound,
    /// <summary>Larger than the server accepts (413, RESOURCE_EXHAUSTED).</summary>
    TooLarge,
}

/// <summary>A request the server refuses; the message names the offending field or value.</summary>
public sealed class ProtocolException(ErrorKind kind, string message) : Exception(message)
{
    public ErrorKind Kind { get; } = kind;

    public static ProtocolException Invalid(string message) => new(ErrorKind.InvalidArgument, message);
}
