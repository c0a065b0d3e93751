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
}

/// <summary>An inference request: inputs, and optionally the outputs the client wants (all when null).</summary>
public sealed record InferRequest(string? Id, IReadOnlyList<Tensor> Inputs, IReadOnlyList<string>? RequestedOutputs)
{
    public long Rows => Inputs.Count == 0 ? 0 : Inputs[0].Rows;
}

/// <summary>A request the server refuses; <see cref="StatusCode"/> is the HTTP status of the answer.</summary>
public sealed class ProtocolException(int statusCode, string message) : Exception(message)
{
    public int StatusCode { get; } = statusCode;
}
